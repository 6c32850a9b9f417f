"""A dataset's real image–caption pairs as arrays, read from any embedding cache of it or from its folder.

    pairs = load_pairs(cache_path="cache/synthetic-flowers-minilm.h5")     # or dataset_dir="data/synthetic-flowers"
    pairs.images         # uint8 [M, 64, 64, 3], usable images only
    pairs.texts          # [N] their captions;  pairs.caption_image [N] row in images
    pairs.key            # the same for every encoder's cache of one dataset (and for its folder)

From a cache, images come from the shared image cache beside it (gan.image_cache: decoded once, also used by
training; built here when missing); from a folder they are decoded. Missing or corrupt images are dropped with
their captions and counted in the log line, never silently. These pairs train the R-precision matchers and give
the real reference (FID floor, IS, R-precision of real images) for datasets without attribute labels.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.errors import UserError

SIZE = 64


@dataclass
class RealPairs:
    name: str  # the dataset's name, e.g. "synthetic-flowers"
    source: str  # what the pairs were read from (a cache file or a dataset folder)
    images: np.ndarray  # uint8 [M, 64, 64, 3], usable images
    image_ids: list[str]  # [M]
    texts: list[str]  # [N] captions of those images
    caption_image: np.ndarray  # [N] int64 row in images
    caption_rows: np.ndarray  # [N] int64 row of each caption in the source's caption order
    key: str  # pairs_key of the source's full image ids and captions
    skipped: str  # summary of dropped images ("skipped: none" when every image decoded)


def pairs_key(image_ids, texts, caption_image) -> str:
    """sha256 of image ids, caption texts and caption -> image mapping: names a dataset whatever its encoder."""
    h = hashlib.sha256(b"t2i-pairs-v1\0")
    for s in image_ids:
        h.update(s.encode("utf-8") + b"\0")
    h.update(b"\1")
    for s in texts:
        h.update(s.encode("utf-8") + b"\0")
    h.update(np.asarray(caption_image, dtype="<i8").tobytes())
    return h.hexdigest()


def load_pairs(cache_path=None, dataset_dir=None, log=print) -> RealPairs:
    """The real pairs of an embedding cache (preferred: its images are already decoded) or a dataset folder."""
    if cache_path is not None:
        from cache.reader import EmbeddingCache
        from gan.image_cache import load_or_build_image_cache

        with EmbeddingCache.open(cache_path) as cache:
            name, ids, paths = cache.dataset_name, cache.image_ids(), cache.image_paths()
            texts, owner = cache.texts(), cache.image_index()
        images, valid, _ = load_or_build_image_cache(cache_path, paths, SIZE, log=log, dataset_name=name)
        skipped = f"{int((~valid).sum())} unusable images masked out (see the image cache's report)"
        source = str(cache_path)
    elif dataset_dir is not None:
        from tools.dataset import SkipReport
        from tools.datasets import load_dataset
        from tools.images import decode_images

        ds = load_dataset(dataset_dir)
        name, ids, texts, owner = ds.name, ds.image_ids, ds.captions, ds.caption_image
        skips = SkipReport()
        images, valid = decode_images(ds.image_paths, SIZE, skips, progress=len(ids) > 2000)
        skipped, source = skips.summary(), str(dataset_dir)
    else:
        raise UserError("real pairs need an embedding cache (--cache) or a dataset folder (--dataset)")
    return _usable(name, source, images, valid, list(ids), list(texts), np.asarray(owner, np.int64), skipped, log)


def _usable(name, source, images, valid, ids, texts, owner, skipped, log) -> RealPairs:
    """Keep the decodable images and their captions; renumber caption -> image rows."""
    key = pairs_key(ids, texts, owner)
    if not valid.all():
        log(f"real pairs of {source}: {skipped}")
    new_row = np.cumsum(valid) - 1  # [M] old image row -> row among the usable images
    rows = np.flatnonzero(valid[owner])  # captions whose image is usable
    if not len(rows):
        raise UserError(f"{source}: none of its {len(ids)} images could be decoded; check the image paths")
    return RealPairs(name=name, source=source, images=images[valid], image_ids=[i for i, v in zip(ids, valid) if v],
                     texts=[texts[r] for r in rows], caption_image=new_row[owner[rows]], caption_rows=rows, key=key,
                     skipped=skipped)


def reference_images(pairs: RealPairs, limit: int, seed: int) -> np.ndarray:
    """A seeded subset of at most `limit` real images, uint8 [R, 64, 64, 3], in source order."""
    if len(pairs.images) <= limit:
        return pairs.images
    return pairs.images[np.sort(np.random.default_rng(seed).choice(len(pairs.images), limit, replace=False))]


def resolve_dataset_dir(dataset_dir, cache_path) -> Path | None:
    """The synthetic-flowers folder that labels the real reference: the one given, else the cache's own dataset
    root when it holds attributes.jsonl, else None (an unlabelled dataset)."""
    if dataset_dir is not None:
        return Path(dataset_dir)
    if cache_path is None:
        return None
    from cache.reader import EmbeddingCache

    with EmbeddingCache.open(cache_path) as cache:
        root = Path(cache.dataset_root)
    root = root if root.is_dir() else root.parent
    return root if (root / "attributes.jsonl").is_file() else None
