"""Diversity across noise samples: for one caption and K z draws, how different are the K images?

Mean pairwise distance among the K samples of each caption, averaged over captions, in two spaces:
the attribute classifier's feature space (semantic) and pixel space (RMS over pixels, values in [0, 1]).
A collapsed generator (the same image for every z) scores ~0 in both.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def mean_pairwise_distance(x: np.ndarray) -> float:
    """x: [K, F] -> mean Euclidean distance over the K(K-1)/2 pairs (0 for K < 2; exactly 0 for equal rows)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    i, j = np.triu_indices(len(x), k=1)  # K is a handful of noise samples: explicit differences are cheap
    return float(np.mean(np.linalg.norm(x[i] - x[j], axis=1))) if len(i) else 0.0


def pixel_distance(images: np.ndarray) -> float:
    """uint8 [K, H, W, 3] -> mean pairwise RMS pixel difference, pixels scaled to [0, 1]."""
    images = np.asarray(images, dtype=np.float64) / 255.0
    n_pix = images[0].size
    return mean_pairwise_distance(images.reshape(len(images), -1)) / np.sqrt(n_pix)


def diversity(
    images_by_caption: list[np.ndarray], feature_fn: Callable[[np.ndarray], np.ndarray] | None = None
) -> dict:
    """images_by_caption: one uint8 [K, H, W, 3] per caption (K >= 2 counted; others skipped).

    Returns {"captions": how many had K >= 2, "samples_per_caption": mean K, "pixel": mean RMS distance,
    "feature": mean feature distance (None without feature_fn)}; values are None with no caption to measure.
    """
    groups = [g for g in images_by_caption if len(g) >= 2]
    out = {"captions": len(groups), "samples_per_caption": float(np.mean([len(g) for g in groups])) if groups else 0.0}
    out.update(pixel=None, feature=None)
    if not groups:
        return out
    out["pixel"] = float(np.mean([pixel_distance(g) for g in groups]))
    if feature_fn is not None:
        sizes = [len(g) for g in groups]
        feats = feature_fn(np.concatenate(groups))  # one batched pass: [sum K, F]
        parts = np.split(feats, np.cumsum(sizes)[:-1])
        out["feature"] = float(np.mean([mean_pairwise_distance(p) for p in parts]))
    return out
