"""Hard mismatched pairs: part of the "wrong" captions are mined near the real caption in the cached embedding
space, so that D must judge the fine attributes (centre colour, petal count), not just the petal colour that
almost every random other caption already gets wrong.

For step s (a pure function of (seed, s), like the batch sampler, so prefetching and resuming stay exact):
  - a pool of `pool` caption rows is drawn at random from the usable images' captions;
  - each batch element is chosen with probability `share`; for it, the pool captions of OTHER images whose
    cosine with the real condition lies in [low, high] are candidates, and one is drawn uniformly;
  - an element with no candidate keeps its random mismatched caption (counted in `stats`).
The band's upper bound keeps out near-duplicates, which may describe the image equally well (false negatives).
No labels are used: only the cached vectors.
"""
from __future__ import annotations

import numpy as np


class HardNegatives:
    def __init__(self, vectors: np.ndarray, caption_image: np.ndarray, usable_images: np.ndarray, share: float,
                 low: float, high: float, pool: int, seed: int):
        """vectors [N, D] (any float dtype); caption_image [N]; usable_images [M'] image rows the sampler uses."""
        v = np.asarray(vectors, np.float32)
        self.unit = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float16)  # [N, D]
        self.caption_image = np.asarray(caption_image, np.int64)
        self.candidates = np.flatnonzero(np.isin(self.caption_image, usable_images))  # caption rows of usable images
        self.share, self.low, self.high = share, low, high
        self.pool, self.seed = min(pool, len(self.candidates)), seed
        self.stats = {"mined": 0, "no_candidate": 0}

    def mine(self, step: int, cond: np.ndarray, images: np.ndarray, wrong_rows: np.ndarray) -> np.ndarray:
        """cond [B, D] float32 real conditions; images [B] their image rows; wrong_rows [B, k] random mismatched
        caption rows -> [B, k] with the chosen elements' rows replaced by one mined row (repeated k times)."""
        rng = np.random.default_rng([self.seed, 4, step])
        chosen = np.flatnonzero(rng.random(len(images)) < self.share)  # [b']
        pool = self.candidates[rng.integers(0, len(self.candidates), self.pool)]  # [P]
        if len(chosen) == 0:
            return wrong_rows
        c = cond[chosen] / np.maximum(np.linalg.norm(cond[chosen], axis=1, keepdims=True), 1e-12)  # [b', D]
        cos = c @ self.unit[pool].astype(np.float32).T  # [b', P]
        ok = (cos >= self.low) & (cos <= self.high) & (self.caption_image[pool][None, :] != images[chosen, None])
        keys = np.where(ok, rng.random(ok.shape), -1.0)  # uniform choice among the candidates
        pick, found = keys.argmax(axis=1), ok.any(axis=1)  # [b']
        out = wrong_rows.copy()
        out[chosen[found]] = pool[pick[found]][:, None]
        self.stats["mined"] += int(found.sum())
        self.stats["no_candidate"] += int((~found).sum())
        return out
