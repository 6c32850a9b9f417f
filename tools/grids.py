"""Figures of generated images: the report's "captions × noise samples" grid, with each caption beside its row, and
the attribute-swap pairs side by side (swap_pair_grid)."""
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


def swap_pair_grid(images: dict[str, np.ndarray], captions: list[tuple[str, str]], scale: int = 2) -> Image.Image:
    """Attribute-swap pairs side by side: images {run label: uint8 [P, 2, K, H, W, 3]} (P pairs, members a and b,
    K noise samples; a and b share sample k) -> one RGB figure.

    Each pair is a block: its two captions above, then K rows; a row holds, for every run, member a's and member
    b's image drawn with that row's noise (so a row shows what the swap alone changes).
    """
    labels = list(images)
    first = images[labels[0]]
    if first.ndim != 6 or first.shape[1] != 2 or any(v.shape != first.shape for v in images.values()):
        raise ValueError(f"swap_pair_grid wants uint8 [P, 2, K, H, W, 3] per run, all alike, got "
                         f"{[v.shape for v in images.values()]}")
    n_pairs, _, k, h, w, _ = first.shape
    if len(captions) != n_pairs:
        raise ValueError(f"{len(captions)} caption pairs for {n_pairs} image pairs")
    loc, text_rows, size = swap_tile_location(n_pairs, k, len(labels), h, w, scale)
    font = ImageFont.load_default(size=FONT_SIZE)
    text_w = max(font.getlength(f"A: {t}") for pair in captions for t in pair) if captions else 0
    fig = Image.new("RGB", (max(size[0], int(text_w) + 2 * PAD), size[1]), "white")
    draw = ImageDraw.Draw(fig)
    for r, label in enumerate(labels):
        x = int(loc[0, r, 0, 0, 0])
        draw.text((x, PAD), f"{label}: A | B", fill="black", font=font)
    for p, (a, b) in enumerate(captions):
        draw.multiline_text((PAD, int(text_rows[p])), f"A: {a}\nB: {b}", fill="black", font=font, spacing=2)
        for r, label in enumerate(labels):
            for m in range(2):
                for j in range(k):
                    tile = Image.fromarray(images[label][p, m, j]).resize((w * scale, h * scale), Image.NEAREST)
                    fig.paste(tile, tuple(int(v) for v in loc[p, r, m, j]))
    return fig


def swap_tile_location(n_pairs: int, k: int, n_runs: int, h: int, w: int, scale: int = 2):
    """(top-left (x, y) of every tile as [P, R, 2, K, 2], y of each pair's caption lines [P], figure (width, height)):
    the layout swap_pair_grid uses (for tests/tools). A gap of 3 PAD separates the runs."""
    th, tw = h * scale, w * scale
    caption_h = 2 * (FONT_SIZE + 2) + PAD
    block = caption_h + k * (th + PAD) + PAD
    loc = np.zeros((n_pairs, n_runs, 2, k, 2), np.int64)
    text_y = np.zeros(n_pairs, np.int64)
    top = PAD + FONT_SIZE + 2 * PAD  # below the run labels
    for p in range(n_pairs):
        text_y[p] = top + p * block
        for r in range(n_runs):
            for m in range(2):
                for j in range(k):
                    x = PAD + r * (2 * (tw + PAD) + 3 * PAD) + m * (tw + PAD)
                    loc[p, r, m, j] = (x, text_y[p] + caption_h + j * (th + PAD))
    width = max(PAD + n_runs * (2 * (tw + PAD) + 3 * PAD), 2 * TEXT_WIDTH)
    return loc, text_y, (width, int(top + n_pairs * block))
