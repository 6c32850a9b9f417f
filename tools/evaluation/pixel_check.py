"""Petal and centre colour read straight from the pixels of a synthetic flower: no trained judge, seconds on a CPU.

    colours = pixel_colours(images)            # {"petal_color": [N] class index (-1: nothing bright enough), ...}
    acc = pixel_accuracy(images, named)        # {"petal_color": {"accuracy", "count"}, "center_color": {...}}

The dataset's own rules (docs/synthetic_flowers.md, tools/synthetic/spec.py) make it exact on real images:
background pixels have max(R, G, B) <= 128 and every petal is brighter; the flower centre lies within 4 px of the
image centre; the centre disc's radius is 25-35 % of a petal length of 18-26 px (so 4.5-9.1 px), and petals reach
at least 18 px. So:
  - the flower centre is the centroid of the bright pixels (petals are evenly spaced around it), kept within
    4 px of the image centre;
  - the centre colour is the nearest centre-palette colour to the mean of the pixels within 3 px of it;
  - the petal colour is the nearest petal-palette colour to the median of the bright pixels 11-17 px from it
    (outside every centre disc, inside every petal).
This is the check the issue's own measurements used, and what `make demo` prints (tools/evaluate.py --pixel): the
attribute classifier (tools/evaluation/attribute_classifier.py) is the fuller judge (count, shape, FID) but must be
trained on first use. A generated image is scored as what its pixels show: a blob without a bright ring gets -1.
"""
from __future__ import annotations

import numpy as np

from tools.evaluation.real_data import ATTRIBUTE_VALUES, named_accuracy
from tools.synthetic import spec

ATTRIBUTES = ("petal_color", "center_color")
CENTRE_RADIUS = 3.0  # px: inside the smallest centre disc (4.5 px) around a centre found to ~1 px
PETAL_RING = (11.0, 17.0)  # px: outside the largest centre disc (9.1 px), inside the shortest petal (18 px)


# [K, 3] RGB in ATTRIBUTE_VALUES order, so a nearest-colour index is the attribute's class index
PETAL_PALETTE = np.array([spec.PETAL_COLORS[v] for v in ATTRIBUTE_VALUES["petal_color"]], np.float32)
CENTRE_PALETTE = np.array([spec.CENTER_COLORS[v] for v in ATTRIBUTE_VALUES["center_color"]], np.float32)


def pixel_colours(images: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 [N, 64, 64, 3] -> {attribute: int64 [N] class index in ATTRIBUTE_VALUES order, -1 when unreadable}."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (64, 64, 3):
        raise ValueError(f"expected uint8 [N, 64, 64, 3], got {images.dtype} {list(images.shape)}")
    x = images.astype(np.float32)  # [N, 64, 64, 3]
    bright = x.max(axis=3) > spec.BG_MAX  # [N, 64, 64]
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) + 0.5  # pixel centres
    mass = np.maximum(bright.sum(axis=(1, 2)), 1)
    lim = 32.0 + np.array([-spec.CENTER_OFFSET, spec.CENTER_OFFSET])
    cy = np.clip((bright * yy).sum(axis=(1, 2)) / mass, *lim)  # [N]
    cx = np.clip((bright * xx).sum(axis=(1, 2)) / mass, *lim)
    r = np.hypot(yy[None] - cy[:, None, None], xx[None] - cx[:, None, None])  # [N, 64, 64]
    petal = np.full(len(x), -1, np.int64)
    centre = np.full(len(x), -1, np.int64)
    for i in range(len(x)):
        disc = r[i] <= CENTRE_RADIUS
        centre[i] = _nearest(x[i][disc].mean(axis=0), CENTRE_PALETTE)
        ring = (r[i] >= PETAL_RING[0]) & (r[i] <= PETAL_RING[1]) & bright[i]
        if ring.any():
            petal[i] = _nearest(np.median(x[i][ring], axis=0), PETAL_PALETTE)
    return {"petal_color": petal, "center_color": centre}


def _nearest(rgb: np.ndarray, palette: np.ndarray) -> int:
    return int(np.argmin(((palette - rgb[None]) ** 2).sum(axis=1)))


def pixel_accuracy(images: np.ndarray, named_attributes: list[dict]) -> dict:
    """Per attribute (petal and centre colour): how often the pixels show the colour the caption names, over the
    captions that name it: {attribute: {"accuracy": float | None, "count": int}} (as attribute_accuracy)."""
    if len(images) != len(named_attributes):
        raise ValueError(f"{len(images)} images but {len(named_attributes)} attribute rows")
    pred = pixel_colours(images) if len(images) else {a: np.zeros(0, np.int64) for a in ATTRIBUTES}
    return named_accuracy(pred, named_attributes)
