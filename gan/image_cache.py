"""The uint8 image cache: every image of an embedding cache decoded and resized ONCE, next to it.

    images, valid, path = load_or_build_image_cache("cache/flowers-minilm.h5", image_paths, 64, dataset_name="flowers")

File `<dataset>-<paths hash>.images64.h5` beside the embedding cache, so every encoder's cache of the same
images (flowers-minilm.h5, flowers-tfidf.h5, ...) shares one image cache:
    images  [M, s, s, 3] uint8   row i for the embedding cache's images/path[i] (zeros where invalid)
    valid   [M] bool             False for missing/corrupt images (masked out of training)
    attrs   paths_hash (sha256 of size + paths), size, num_images, num_invalid, skipped (summary), complete
It is reused while its paths hash matches, and rebuilt otherwise (the dataset moved, images were added, or
the size changed). Decoding is tools.images.decode_images, so bad images are counted and reported, not fatal.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np

FORMAT = 1


def image_cache_path(embedding_cache: str | os.PathLike, image_paths: Sequence[str], size: int = 64,
                     dataset_name: str = "") -> Path:
    p = Path(embedding_cache)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset_name).strip("-.") or p.stem
    return p.with_name(f"{stem}-{paths_hash(list(image_paths), size)[:12]}.images{size}.h5")


def paths_hash(paths: Sequence[str], size: int) -> str:
    h = hashlib.sha256(f"t2i-image-cache-v{FORMAT}\0size={size}\0n={len(paths)}\0".encode())
    for p in paths:
        h.update(p.encode("utf-8") + b"\0")
    return h.hexdigest()


def _read(path: Path, expected_hash: str, size: int):
    """(images, valid, skipped) if `path` is a complete cache for these paths and size, else None."""
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            if not a.get("complete") or a.get("paths_hash") != expected_hash or int(a.get("size", -1)) != size:
                return None
            skipped = a.get("skipped", "")
            return f["images"][()], f["valid"][()].astype(bool), skipped.decode() if isinstance(skipped, bytes) else skipped
    except (OSError, KeyError):
        return None


def _write(path: Path, images: np.ndarray, valid: np.ndarray, digest: str, size: int, skipped: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("images", data=images, chunks=(1, size, size, 3) if len(images) else None)
        f.create_dataset("valid", data=valid)
        f.attrs.update(dict(paths_hash=digest, size=size, num_images=len(images),
                            num_invalid=int((~valid).sum()), skipped=skipped, format=FORMAT, complete=True))
    os.replace(tmp, path)  # atomic: a killed build never leaves a half file under the real name


def load_or_build_image_cache(embedding_cache: str | os.PathLike, image_paths: Sequence[str], size: int = 64,
                              log: Callable[[str], None] = print, progress: bool = True, dataset_name: str = ""):
    """Returns (images uint8 [M, s, s, 3], valid bool [M], path of the image cache)."""
    from tools.dataset import SkipReport
    from tools.images import decode_images

    path = image_cache_path(embedding_cache, image_paths, size, dataset_name)
    digest = paths_hash(list(image_paths), size)
    found = _read(path, digest, size) if path.exists() else None
    if found is not None:
        images, valid, skipped = found
        log(f"images: {path} ({len(images)} images at {size} px, {int((~valid).sum())} masked out)")
        return images, valid, path
    if path.exists():
        log(f"images: {path} does not match this cache's image paths/size; rebuilding it")
    skips = SkipReport()
    images, valid = decode_images(list(image_paths), size, skips, progress=progress)  # [M, s, s, 3], [M]
    log(f"images: decoded {int(valid.sum())}/{len(valid)} images at {size} px; {skips.summary()}")
    try:
        _write(path, images, valid, digest, size, skips.summary())
        log(f"images: wrote image cache {path} (reused by later runs)")
    except OSError as e:
        log(f"images: warning: could not write {path} ({e}); images kept in memory only")
    return images, valid, path
