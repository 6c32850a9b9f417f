"""Figures of generated images: the report's "captions × noise samples" grid, with each caption beside its row."""
from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PAD = 4  # px between tiles and around the figure
TEXT_WIDTH = 260  # px of the caption column
FONT_SIZE = 13


def caption_grid(images: np.ndarray, captions: list[str], scale: int = 2, labels: list[str] | None = None) -> Image.Image:
    """images: uint8 [C, K, H, W, 3] (C captions × K noise samples) -> one RGB figure.

    Row c shows caption c's K samples, its text (wrapped) in a column to the left, prefixed by labels[c]
    (e.g. the caption id) when given.
    """
    if images.ndim != 5 or images.shape[-1] != 3:
        raise ValueError(f"caption_grid wants uint8 [C, K, H, W, 3], got shape {images.shape}")
    n_cap, n_noise, h, w, _ = images.shape
    if len(captions) != n_cap:
        raise ValueError(f"{len(captions)} captions for {n_cap} image rows")
    th, tw = h * scale, w * scale
    font = ImageFont.load_default(size=FONT_SIZE)
    fig = Image.new("RGB", (PAD + TEXT_WIDTH + (tw + PAD) * n_noise, PAD + (th + PAD) * n_cap), "white")
    draw = ImageDraw.Draw(fig)
    loc = tile_location(n_cap, n_noise, h, w, scale)
    chars = max(8, TEXT_WIDTH // int(FONT_SIZE * 0.55))  # rough characters per line for this font
    max_lines = max(1, th // (FONT_SIZE + 2))
    for c in range(n_cap):
        y = int(loc[c, 0, 1])
        text = f"{labels[c]}: {captions[c]}" if labels else captions[c]
        lines = textwrap.wrap(text, chars)
        if len(lines) > max_lines:  # keep the row height; mark the cut
            lines = lines[:max_lines]
            lines[-1] = lines[-1][: chars - 1] + "…"
        draw.multiline_text((PAD, y), "\n".join(lines), fill="black", font=font, spacing=2)
        for k in range(n_noise):
            tile = Image.fromarray(images[c, k]).resize((tw, th), Image.NEAREST)
            fig.paste(tile, tuple(int(v) for v in loc[c, k]))
    return fig


def tile_location(n_cap: int, n_noise: int, h: int, w: int, scale: int = 2):
    """Top-left pixel of every tile as [C, K, 2] (x, y) — the layout caption_grid uses (for tests/tools)."""
    th, tw = h * scale, w * scale
    loc = np.zeros((n_cap, n_noise, 2), dtype=np.int64)
    for c in range(n_cap):
        for k in range(n_noise):
            loc[c, k] = (PAD + TEXT_WIDTH + k * (tw + PAD), PAD + c * (th + PAD))
    return loc
