"""uint8 RGB arrays -> PNG bytes, written directly (numpy + zlib) for the server's hot path.

At 64×64 Pillow 13 spends most of a PNG save on per-call overhead and adaptive filtering (1.7-3.4 ms per image
on the 2-core machine, even at compress level 0); this writer uses the Sub filter on every row and zlib
level 1: ~0.5 ms, the same size as Pillow's level 1, and zlib releases the GIL while it compresses.
Pillow decodes the result back to the identical array (tests/test_serve_api.py).
"""
from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_SUB = 1  # each byte minus the byte one pixel to its left (mod 256)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """uint8 [H, W, 3] RGB -> PNG (8-bit truecolour, no interlace)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    h, w, _ = image.shape
    rows = image.reshape(h, w * 3)
    diff = rows.copy()  # [H, 3W]
    diff[:, 3:] -= rows[:, :-3]  # uint8 arithmetic wraps mod 256, as the Sub filter wants
    scanlines = np.empty((h, 1 + 3 * w), np.uint8)
    scanlines[:, 0] = FILTER_SUB
    scanlines[:, 1:] = diff
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # bit depth 8, colour type 2 (RGB)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), level))
            + _chunk(b"IEND", b""))


def png_base64(image: np.ndarray) -> str:
    """uint8 [H, W, 3] -> base64 text of its PNG (what /api/generate returns per image)."""
    return base64.b64encode(encode_png(image)).decode("ascii")
