"""Image decoding: any file Pillow reads -> uint8 RGB, square, resized; bad files become counted skips.

    from tools.images import load_rgb, decode_images
    rgb = load_rgb("jpg/image_00001.jpg", size=64)            # uint8 [64, 64, 3]
    imgs, ok = decode_images(paths, 64, dataset.skips)         # uint8 [M, 64, 64, 3], bool [M]
    rgb = decode_bytes(png_bytes, size=64, name=url)           # the same steps on bytes in memory

An image reference is a file path, or `SHARD.tar#MEMBER` for an image inside a WebDataset shard
(tools/datasets/shards.py). This module is the one place that opens references: `decode_images` reads each
shard once, front to back, decoding the members it was asked for as they pass; `load_rgb` of a single
member streams its shard up to that member.

Decisions (the image cache and every tool rely on these):
- Transparency (RGBA, LA, PA, P with a transparent colour) is composited on WHITE, the way browsers and
  viewers show it; cut-out objects on white look like ordinary photos, while black would add dark halos to
  datasets whose backgrounds are not dark. Pixels under full transparency often hold junk colour, so alpha is
  never just dropped.
- 16-bit grey (I;16*, and I, which is how older Pillow opens 16-bit PNG/TIFF) is scaled to 8 bit with
  round(v / 257) so 65535 -> 255 and the full range survives; Pillow's own convert("L") clips at 255 instead.
  Float images (F) are taken as [0, 1] when their maximum is <= 1, else divided by their maximum.
- CMYK (and YCbCr, LAB, HSV, 1, L, P) use Pillow's conversion to RGB; Adobe-inverted CMYK JPEGs are handled
  by Pillow's decoder.
- The EXIF orientation is applied first, as a viewer would.
- Non-square images (Oxford-102, CUB, COCO) are centre-cropped to the largest centred square and resized to
  `size` with Lanczos (ImageOps.fit): the subject is usually centred, and squashing would distort shapes. JPEGs
  are first DCT-downscaled (`draft`) to no less than 2x the target, which is much faster on large photos and
  invisible at 64 px.
- Corrupt and truncated files raise `ImageError` (a UserError naming the file); Pillow's
  `ImageFile.LOAD_TRUNCATED_IMAGES` is forced off while decoding so truncation is never filled in silently.
"""
from __future__ import annotations

import functools
import io
import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tools.dataset import SkipReport
from tools.errors import UserError

BACKGROUND = 255  # value alpha is composited onto (white)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageError(UserError):
    """An image file that cannot be decoded; `path` and `reason` are kept for skip reports."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"{self.path}: cannot decode image ({reason}); re-save it as JPEG/PNG or remove it "
            f"(without --strict such images are skipped and counted)"
        )


def _open_fully(path: str | os.PathLike, draft_size: int | None, data: bytes | None = None) -> Image.Image:
    """Open and fully decode (the file, or `data` when given, named `path`), so damage surfaces here."""
    if data is None and not os.path.isfile(path):
        raise ImageError(path, "file not found")
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img = Image.open(path if data is None else io.BytesIO(data))
        if draft_size and img.format == "JPEG":
            img.draft(img.mode, (draft_size, draft_size))  # DCT downscale, keeps both sides >= draft_size
        img.load()
        return img
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not a format Pillow can identify") from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, EOFError, struct.error, ... for bad bytes
        raise ImageError(path, f"{type(e).__name__}: {e}") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grey -> 8-bit L by scaling (not clipping)."""
    a = np.asarray(img)
    if img.mode == "F":
        a = a.astype(np.float64)
        top = float(np.nanmax(a)) if a.size else 1.0
        scale = 255.0 if top <= 1.0 else 255.0 / top
        return Image.fromarray(np.clip(np.rint(np.nan_to_num(a) * scale), 0, 255).astype(np.uint8), "L")
    a = a.astype(np.int64)
    top = int(a.max()) if a.size else 0
    # I;16* is 16-bit by definition; mode I comes from 16-bit PNG/TIFF unless values say otherwise
    divisor = 257.0 if top <= 65535 else top / 255.0
    return Image.fromarray(np.clip(np.rint(a / divisor), 0, 255).astype(np.uint8), "L")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, compositing transparency on BACKGROUND."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_bit_depth_to_l(img)
    if img.mode in _ALPHA_MODES:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)  # [H, W, 4]
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + BACKGROUND * (1.0 - alpha)
        return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_rgb(path: str | os.PathLike, size: int | None = 64) -> np.ndarray:
    """Decode one image (a path or a SHARD#MEMBER reference) to uint8 [size, size, 3] (centre square,
    resized), or [H, W, 3] with size=None.

    Raises ImageError for missing, corrupt or truncated files.
    """
    from tools.datasets.shards import split_ref, stream_members

    parts = split_ref(path)
    if parts is None:
        return _decoded(_open_fully(path, 2 * size if size else None), size)
    shard, member = parts
    if not os.path.isfile(shard):
        raise ImageError(path, "file not found")
    for _, data in stream_members(shard, lambda name: name == member, on_truncated=lambda reason: None):
        if data is not None:
            return decode_bytes(data, size, path)
    raise ImageError(path, "file not found")


def decode_bytes(data: bytes, size: int | None = 64, name: str = "<bytes>") -> np.ndarray:
    """load_rgb for encoded image bytes in memory (a shard member, a download); errors name `name`."""
    return _decoded(_open_fully(name, 2 * size if size else None, data), size)


def _decoded(img: Image.Image, size: int | None) -> np.ndarray:
    """EXIF orientation, RGB, centre square resized: uint8 [size, size, 3] (or [H, W, 3] with size=None)."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block is no reason to lose a decodable image
        pass
    img = _to_rgb(img)
    if size is not None and img.size != (size, size):
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return np.asarray(img, dtype=np.uint8)


def decode_images(
    paths: Sequence[str | os.PathLike], size: int, skips: SkipReport, *, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Decode many images; bad ones are counted in `skips` ("missing image" / "corrupt image") and left zero.

    Returns (uint8 [M, size, size, 3], bool [M] valid mask). With skips.strict the first bad image raises.
    """
    from tools.datasets.shards import split_ref

    out = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    valid = np.zeros(len(paths), dtype=bool)
    files: list[int] = []
    in_shards: dict[str, dict[str, list[int]]] = {}  # shard -> member -> rows asking for it
    for i, path in enumerate(paths):
        parts = split_ref(path)
        if parts is None:
            files.append(i)
        else:
            in_shards.setdefault(parts[0], {}).setdefault(parts[1], []).append(i)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="decode images", unit="img")

    def decode(rows: list[int], load) -> None:
        try:
            out[rows] = load()  # [size, size, 3] into each row
            valid[rows] = True
        except ImageError as e:
            _count_bad(e, skips)
        if bar is not None:
            bar.update(len(rows))

    for i in files:
        decode([i], lambda: load_rgb(paths[i], size))
    for shard, members in in_shards.items():
        for rows, load in _shard_loaders(shard, members, size):
            decode(rows, load)
    if bar is not None:
        bar.close()
    return out, valid


def _shard_loaders(shard: str, members: dict[str, list[int]], size: int):
    """(rows, load) for each member asked for, in archive order (one pass); load() decodes or raises ImageError."""
    from tools.datasets.shards import member_ref, stream_members

    left = dict(members)
    truncated: list[str] = []
    if os.path.isfile(shard):
        for name, data in stream_members(shard, lambda n: n in left, on_truncated=truncated.append):
            if data is not None:
                yield left.pop(name), functools.partial(decode_bytes, data, size, member_ref(shard, name))
                if not left:
                    break  # the rest of the shard holds nothing we need
    reason = f"shard ends before it ({truncated[0]})" if truncated else "file not found"
    for name, rows in left.items():
        yield rows, functools.partial(_raise, ImageError(member_ref(shard, name), reason))


def _raise(error: Exception):
    raise error


def _count_bad(e: ImageError, skips: SkipReport) -> None:
    missing = e.reason == "file not found"
    skips.add(
        "missing image" if missing else "corrupt image",
        where=f"{e.path}" + ("" if missing else f" ({e.reason})"),
        fix="restore the file or remove it from the dataset" if missing else "re-save it as JPEG/PNG",
    )


def area_downsample(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, S, S, 3] -> [N, size, size, 3] by area averaging: each output pixel is the rounded mean of its
    (S/size)² input pixels (S a multiple of size; S == size returns the input). How a 128 or 256 px image
    becomes 64 px for the DataLab Cup files and for the 64 px judges of tools/evaluation (the same in both)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[1] % size:
        raise ValueError(f"area_downsample: want [N, S, S, C] with S a multiple of {size}, got {list(images.shape)}")
    k = images.shape[1] // size
    if k == 1:
        return images
    n, _, _, c = images.shape
    blocks = images.reshape(n, size, k, size, k, c).astype(np.float32)  # [N, size, k, size, k, C]
    return np.clip(np.rint(blocks.mean(axis=(2, 4))), 0, 255).astype(np.uint8)
