"""Draw one synthetic flower: textured dark background, n petals, centre disc on top, optional stem.

Everything is drawn at 4x with PIL ImageDraw and downsampled with LANCZOS (anti-aliasing). The geometry is specified
at 64x64 and scaled to `size` (64, 128, 256): the same rng gives the same flower at every size. The palette, jitter,
shading and geometry limits come from `spec`; each is kept by construction (see the comments on the budgets).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw

from tools.synthetic import spec

SUPERSAMPLE = 4  # draw at 4x, downsample with LANCZOS (after a 2x box pre-reduction)
PETAL_JITTER = 9  # per-channel jitter of the whole petal colour ...
DOT_JITTER = 3  # ... plus the centre speckles' own offset: 9 + 3 <= spec.MAX_JITTER
# Shading budget (product must stay within 1 +- spec.MAX_SHADE): radial gradient base->tip in [1-s, 1+s] with
# s <= RADIAL_SHADE, times a per-petal tone in [PETAL_TONE, 1], times the midrib/outline tone EDGE_TONE.
RADIAL_SHADE = (0.05, 0.08)
PETAL_TONE = 0.97
EDGE_TONE = 0.955
assert (1 - RADIAL_SHADE[1]) * PETAL_TONE * EDGE_TONE >= 1 - spec.MAX_SHADE
assert PETAL_JITTER + DOT_JITTER <= spec.MAX_JITTER
BG_CAP = 118  # textured background is capped below spec.BG_MAX, leaving room for filter ringing
LOW_RES = 16  # background colour field resolution before upsampling
STEM_PROB = 0.55

# dark foliage greens, dusky grey-blues, dark soil browns (all well under spec.BG_MAX)
BACKGROUNDS = (
    ((32, 70, 30), (52, 92, 42), (24, 56, 38), (62, 84, 34)),
    ((52, 62, 84), (42, 52, 72), (66, 76, 92), (48, 66, 72)),
    ((74, 54, 34), (58, 44, 30), (84, 64, 44), (66, 58, 40)),
)


def sample_attributes(rng: np.random.Generator) -> dict:
    """The four attributes, uniform and independent (all 224 combinations appear)."""
    pc, cc, n, sh = rng.integers((len(spec.PETAL_COLORS), len(spec.CENTER_COLORS), len(spec.PETAL_COUNTS),
                                  len(spec.PETAL_SHAPES))).tolist()
    return {
        "petal_color": list(spec.PETAL_COLORS)[pc],
        "center_color": list(spec.CENTER_COLORS)[cc],
        "petal_count": spec.PETAL_COUNTS[n],
        "petal_shape": spec.PETAL_SHAPES[sh],
    }


def render_flower(attrs: dict, rng: np.random.Generator, size: int = 64, return_masks: bool = False):
    """Render `attrs` (petal_color, center_color, petal_count, petal_shape) as a [size, size, 3] uint8 image.

    With return_masks=True also returns {"petal", "center", "stem"}: [size, size] float32 coverage in [0, 1]
    (petal = visible petal area, i.e. without the disc on top; stem = stem and leaf, partly hidden behind the
    petals). Same rng state -> same pixels.
    """
    k = size / 64.0  # geometry is specified at 64x64
    S = size * SUPERSAMPLE
    u = k * SUPERSAMPLE  # canvas px per spec px
    bg = _background(rng, size)  # [size, size, 3] float
    geo = _geometry(attrs, rng, u, S)
    layer = Image.new("RGBa", (S, S), (0, 0, 0, 0))  # premultiplied; every shape is opaque
    draw = ImageDraw.Draw(layer)
    stem = Image.new("L", (S, S), 0)
    if rng.random() < STEM_PROB:
        _draw_stem(draw, ImageDraw.Draw(stem), geo, rng, u, S)
    pmask = Image.new("L", (S, S), 0)
    cmask = Image.new("L", (S, S), 0)
    _draw_petals(draw, ImageDraw.Draw(pmask), geo, attrs, rng, u)
    _draw_center(draw, ImageDraw.Draw(pmask), ImageDraw.Draw(cmask), geo, attrs, rng, u)

    # box 2x then Lanczos 2x (reducing_gap=2): same look as a plain Lanczos 4x, 2.4x faster
    fg = np.asarray(layer.resize((size, size), Image.LANCZOS, reducing_gap=2.0), np.float32)  # [s, s, 4]
    pcov, ccov, scov = (np.asarray(m.reduce(SUPERSAMPLE), np.float32) / 255.0 for m in (pmask, cmask, stem))
    alpha = fg[..., 3] / 255.0  # [s, s]
    # radial shading of the petals only, applied at output size (it is smooth): [s, s]
    yy, xx = _pixel_centres(size)
    r = np.hypot(xx - geo["cx"] / SUPERSAMPLE, yy - geo["cy"] / SUPERSAMPLE)
    rc, L = geo["rc"] / SUPERSAMPLE, geo["length"] / SUPERSAMPLE
    fac = geo["shade"] * (2.0 * np.clip((r - rc) / (L - rc), 0.0, 1.0) - 1.0)  # in [-shade, shade]
    gain = 1.0 + fac * np.minimum(pcov / np.maximum(alpha, 1e-3), 1.0)  # petal share of the foreground
    rgb = fg[..., :3] * gain[..., None] + bg * (1.0 - alpha)[..., None]
    np.clip(rgb, 0.0, 255.0, out=rgb)
    # pixels no petal/centre touches are background (or stem): keep max(R,G,B) <= BG_MAX despite filter ringing
    peak = rgb.max(axis=-1)
    over = (peak > spec.BG_MAX) & ((pcov + ccov) == 0)
    if over.any():
        rgb[over] *= (spec.BG_MAX / peak[over])[:, None]
    img = (rgb + 0.5).astype(np.uint8)
    if return_masks:
        return img, {"petal": pcov, "center": ccov, "stem": scov}
    return img


@functools.lru_cache(maxsize=4)
def _pixel_centres(size: int) -> np.ndarray:
    return np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # [2, size, size] (y, x)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency textured dark background, [size, size, 3] float, max channel <= BG_CAP.

    The colour field is composed at 16x16 (two family colours mixed, blotchy light and shade, a leafy
    mid-frequency layer), upsampled bicubic in one go, and given a little pixel noise.
    """
    family = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    i, j = rng.permutation(len(family))[:2]
    a = np.asarray(family[i], np.float32) + rng.integers(-8, 9, 3)
    b = np.asarray(family[j], np.float32)
    g = int(rng.integers(3, 6))
    mix = 0.7 * _smooth(rng.random((g, g)), LOW_RES)[..., None]  # where the second colour shows through
    lum = 0.65 + 0.6 * _smooth(rng.random((g + 2, g + 2)), LOW_RES)  # blotchy light and shade
    leafy = 0.88 + 0.24 * rng.random((LOW_RES, LOW_RES))  # mid-frequency texture
    low = (a * (1.0 - mix) + b * mix) * (lum * leafy)[..., None]  # [16, 16, 3]
    peak = low.max(axis=-1, keepdims=True)
    low = np.where(peak > BG_CAP - 6, low * ((BG_CAP - 6) / np.maximum(peak, 1.0)), low)
    up = Image.fromarray(np.clip(low + 0.5, 0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    bg = np.asarray(up, np.float32) + _spec_noise(rng, size)  # bicubic overshoot + noise <= 6
    return np.clip(bg, 0.0, BG_CAP)


def _spec_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Pixel noise in [-3, 3] drawn on the spec's 64x64 grid and repeated to `size` ([size, size, 1]).

    Drawn at 64 whatever the size, so the rng stream after it (geometry, colours, stem) is the same at every size:
    a 128 or 256 px render is the 64 px one's flower (same placement, rotation, jitter), drawn at more pixels."""
    noise = rng.integers(-3, 4, (64, 64, 1))
    if size == 64:
        return noise
    if size % 64 == 0:
        k = size // 64
        return np.repeat(np.repeat(noise, k, axis=0), k, axis=1)
    idx = (np.arange(size) * 64) // size  # any other size: nearest cell of the 64 grid
    return noise[idx][:, idx]


def _smooth(grid: np.ndarray, size: int) -> np.ndarray:
    """Upsample a small [g, g] grid in [0, 1] to a smooth [size, size] field (bicubic)."""
    im = Image.fromarray(grid.astype(np.float32), mode="F").resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(im), 0.0, 1.0)


def _geometry(attrs: dict, rng: np.random.Generator, u: float, S: int) -> dict:
    """Flower placement and sizes in canvas px."""
    length = rng.uniform(*spec.PETAL_LENGTH) * u
    lo, hi = spec.ROUND_WIDTH if attrs["petal_shape"] == "round" else spec.POINTED_WIDTH
    return {
        "cx": S / 2 + rng.uniform(-spec.CENTER_OFFSET, spec.CENTER_OFFSET) * u,
        "cy": S / 2 + rng.uniform(-spec.CENTER_OFFSET, spec.CENTER_OFFSET) * u,
        "length": length,
        "rc": rng.uniform(*spec.CENTER_RADIUS) * length,
        "width": rng.uniform(lo, hi) * length,
        "peak": rng.uniform(0.35, 0.5),  # where a pointed petal is widest, as a fraction of its length
        "rot": rng.uniform(0.0, 2.0 * math.pi),
        "shade": rng.uniform(*RADIAL_SHADE),
    }


def petal_outline(shape: str, length: float, width: float, peak: float = 0.4, m: int = 24) -> np.ndarray:
    """Petal polygon in petal coordinates, [2m, 2] (x along the petal from base 0 to tip `length`, y across).

    round: an ellipse of the given width; pointed: lanceolate, h(t) = w/2 sin(pi t^p), widest at `peak`,
    with a sharp tip (the sides meet at t=1 with non-zero slope).
    """
    phi = np.linspace(0.0, math.pi, m)
    t = (1.0 - np.cos(phi)) / 2.0  # denser near base and tip
    if shape == "round":
        h = width / 2.0 * np.sqrt(np.clip(1.0 - (2.0 * t - 1.0) ** 2, 0.0, 1.0))
    else:
        p = math.log(0.5) / math.log(peak)
        h = width / 2.0 * np.sin(math.pi * t**p)
    x = t * length
    return np.concatenate([np.stack([x, h], 1), np.stack([x[::-1], -h[::-1]], 1)])


def _place(pts: np.ndarray, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    x = cx + pts[:, 0] * c - pts[:, 1] * s
    y = cy + pts[:, 0] * s + pts[:, 1] * c
    return list(zip(x.tolist(), y.tolist()))


def _jitter(rgb, rng: np.random.Generator, amount: int) -> tuple[float, float, float]:
    j = rng.integers(-amount, amount + 1, 3).tolist()
    return tuple(min(255.0, max(0.0, c + d)) for c, d in zip(rgb, j))


def _rgba(rgb, tone: float = 1.0) -> tuple[int, int, int, int]:
    r, g, b = (min(255, max(0, int(c * tone + 0.5))) for c in rgb)
    return r, g, b, 255


def _draw_petals(draw, pdraw, geo: dict, attrs: dict, rng: np.random.Generator, u: float) -> None:
    """n evenly spaced petals with a random global rotation; per-petal tone and a midrib/outline in EDGE_TONE."""
    n = attrs["petal_count"]
    base = _jitter(spec.PETAL_COLORS[attrs["petal_color"]], rng, PETAL_JITTER)
    pts = petal_outline(attrs["petal_shape"], geo["length"], geo["width"], geo["peak"])
    tones = rng.uniform(PETAL_TONE, 1.0, n).tolist()
    e = 0.9 * u  # outline width in canvas px
    inner = petal_outline(attrs["petal_shape"], geo["length"] - 2 * e, max(geo["width"] - 2 * e, e), geo["peak"])
    inner[:, 0] += e
    rib = np.array([[geo["rc"], 0.0], [0.7 * geo["length"], 0.0]])
    rib_w = max(1, int(round(0.6 * u)))
    for i in range(n):
        angle = geo["rot"] + 2.0 * math.pi * i / n
        poly = _place(pts, angle, geo["cx"], geo["cy"])
        edge = _rgba(base, tones[i] * EDGE_TONE)
        draw.polygon(poly, fill=edge)  # the outline shows where petals overlap
        draw.polygon(_place(inner, angle, geo["cx"], geo["cy"]), fill=_rgba(base, tones[i]))
        draw.line(_place(rib, angle, geo["cx"], geo["cy"]), fill=edge, width=rib_w)
        pdraw.polygon(poly, fill=255)


def _draw_center(draw, pdraw, cdraw, geo: dict, attrs: dict, rng: np.random.Generator, u: float) -> None:
    """The centre disc on top of the petals, speckled within the jitter budget."""
    base = _jitter(spec.CENTER_COLORS[attrs["center_color"]], rng, PETAL_JITTER)
    cx, cy, rc = geo["cx"], geo["cy"], geo["rc"]
    box = [cx - rc, cy - rc, cx + rc, cy + rc]
    draw.ellipse(box, fill=_rgba(base))
    pdraw.ellipse(box, fill=0)
    cdraw.ellipse(box, fill=255)
    n_dots = int(rng.integers(8, 16))
    rad = rc * 0.75 * np.sqrt(rng.random(n_dots))
    ang = rng.uniform(0, 2 * math.pi, n_dots)
    offs = rng.integers(-DOT_JITTER, DOT_JITTER + 1, (n_dots, 3))
    d = 0.35 * u
    for r, a, o in zip(rad, ang, offs):
        x, y = cx + r * math.cos(a), cy + r * math.sin(a)
        draw.ellipse([x - d, y - d, x + d, y + d], fill=_rgba([c + oc for c, oc in zip(base, o.tolist())]))


def _draw_stem(draw, sdraw, geo: dict, rng: np.random.Generator, u: float, S: int) -> None:
    """A dark green curved stem (and maybe a leaf) from just below the disc to the bottom edge."""
    green = rng.integers((36, 96, 28), (64, 120, 52)).tolist()
    w = rng.uniform(1.4, 2.4) * u
    x0, y0 = geo["cx"], geo["cy"] + geo["rc"] + w + 2.0 * u  # starts clear of the centre disc
    x1 = x0 + rng.uniform(-10, 10) * u
    bend = rng.uniform(-6, 6) * u
    t = np.linspace(0.0, 1.0, 16)
    xs = x0 + (x1 - x0) * t + bend * 4.0 * t * (1.0 - t)
    ys = y0 + (S + w - y0) * t
    pts = list(zip(xs.tolist(), ys.tolist()))
    for d in (draw, sdraw):
        d.line(pts, fill=_rgba(green) if d is draw else 255, width=int(round(w)), joint="curve")
    if rng.random() < 0.7:
        j = int(rng.integers(9, 13))  # leaf joins the stem in its lower part, below most petals
        side = 1.0 if rng.random() < 0.5 else -1.0
        angle = -math.pi / 2 + side * rng.uniform(0.6, 1.1)  # up and out
        leaf = petal_outline("pointed", rng.uniform(12, 17) * u, rng.uniform(4.5, 6.0) * u, 0.45)
        poly = _place(leaf, angle, xs[j], ys[j])
        if min(math.hypot(x - geo["cx"], y - geo["cy"]) for x, y in poly) < geo["rc"] + 2.0 * u:
            return  # a leaf never touches the centre disc
        draw.polygon(poly, fill=_rgba(green, rng.uniform(0.85, 1.05)))
        sdraw.polygon(poly, fill=255)
