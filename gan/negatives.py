"""Hard mismatched pairs: part of the "wrong" captions are mined near the real caption in the cached embedding
space, so that D must judge the fine attributes (centre colour, petal count), not just the petal colour that
almost every random other caption already gets wrong.

For step s (a pure function of (seed, s), like the batch sampler, so prefetching and resuming stay exact):
  - a pool of `pool` caption rows is drawn at random from the usable images' captions;
  - each batch element is chosen with probability `share`; for it, the pool captions of OTHER images whose
    cosine with the real condition lies in [low, high] are candidates, and one is drawn uniformly;
  - an element with no candidate keeps its random mismatched caption (counted in `stats`).
The band's upper bound keeps out near-duplicates, which may describe the image equally well (false negatives).
Inside the band a caption of another image still often names only what the two images share (measured on the
synthetic flowers, bench/negatives_band.py: ~20 % of the 0.80-0.95 band). With `margin` > 0 a candidate w of image
b must also be closer to b than to the real image a, by at least `margin`, in cosine with each image's caption
centroid (the normalised mean of its unit caption vectors): cos(w, centroid b) - cos(w, centroid a) >= margin.
A caption that fits both images sits near both centroids and is dropped; one that names what a lacks is kept.
No labels are used: only the cached vectors.
"""
from __future__ import annotations

import numpy as np
from threadpoolctl import ThreadpoolController


class HardNegatives:
    def __init__(self, vectors: np.ndarray, caption_image: np.ndarray, usable_images: np.ndarray, share: float,
                 low: float, high: float, pool: int, seed: int, margin: float = 0.0, blas_threads: int | None = 1):
        """vectors [N, D] (any float dtype); caption_image [N]; usable_images [M'] image rows the sampler uses;
        margin: the centroid margin above (0: off); blas_threads: BLAS threads of the miner's product (None: the
        library's default, all cores)."""
        v = np.asarray(vectors, np.float32)
        unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # [N, D]
        self.unit = unit.astype(np.float16)
        self.caption_image = np.asarray(caption_image, np.int64)
        self.margin = margin
        self.centroid = self.own = None
        if margin > 0:
            self.centroid = image_centroids(unit, self.caption_image).astype(np.float16)  # [M, D]
            self.own = np.concatenate([  # [N] cos(w, its image's centroid), in row chunks: no [N, D] copies
                np.einsum("nd,nd->n", self.unit[k:k + 65536].astype(np.float32),
                          self.centroid[self.caption_image[k:k + 65536]].astype(np.float32))
                for k in range(0, len(self.unit), 65536)]) if len(self.unit) else np.zeros(0, np.float32)
        self.candidates = np.flatnonzero(np.isin(self.caption_image, usable_images))  # caption rows of usable images
        self.share, self.low, self.high = share, low, high
        self.pool, self.seed = min(pool, len(self.candidates)), seed
        self.stats = {"mined": 0, "no_candidate": 0}
        # the miner runs in the input pipeline beside the TF step: a multi-threaded BLAS there spins against TF's
        # own threads on a 2-core machine (bench/train_step.py's pipeline table measures it), so one thread
        self._blas, self.blas_threads = ThreadpoolController(), blas_threads

    def mine(self, step: int, cond: np.ndarray, images: np.ndarray, wrong_rows: np.ndarray) -> np.ndarray:
        """cond [B, D] float32 real conditions; images [B] their image rows; wrong_rows [B, k] random mismatched
        caption rows -> [B, k] with the chosen elements' rows replaced by one mined row (repeated k times)."""
        rng = np.random.default_rng([self.seed, 4, step])
        chosen = np.flatnonzero(rng.random(len(images)) < self.share)  # [b']
        pool = self.candidates[rng.integers(0, len(self.candidates), self.pool)]  # [P]
        if len(chosen) == 0:
            return wrong_rows
        c = cond[chosen] / np.maximum(np.linalg.norm(cond[chosen], axis=1, keepdims=True), 1e-12)  # [b', D]
        if self.centroid is not None:  # one product for both: [real captions; real images' centroids] · pool
            c = np.concatenate([c, self.centroid[images[chosen]].astype(np.float32)])  # [2b', D]
        with self._blas.limit(limits=self.blas_threads, user_api="blas"):
            prod = c @ self.unit[pool].astype(np.float32).T  # [b' or 2b', P]
        cos = prod[: len(chosen)]
        ok = (cos >= self.low) & (cos <= self.high) & (self.caption_image[pool][None, :] != images[chosen, None])
        if self.centroid is not None:
            ok &= self.own[pool][None, :] - prod[len(chosen):] >= self.margin
        keys = np.where(ok, rng.random(ok.shape), -1.0)  # uniform choice among the candidates
        pick, found = keys.argmax(axis=1), ok.any(axis=1)  # [b']
        out = wrong_rows.copy()
        out[chosen[found]] = pool[pick[found]][:, None]
        self.stats["mined"] += int(found.sum())
        self.stats["no_candidate"] += int((~found).sum())
        return out

    def centroid_margin(self, rows: np.ndarray, images: np.ndarray) -> np.ndarray:
        """rows [P] caption rows; images [b] image rows -> [b, P]: cos(w, centroid of w's image) - cos(w, centroid
        of the image), as mine() computes it (margin > 0 only)."""
        w = self.unit[rows].astype(np.float32)  # [P, D]
        return self.own[rows][None, :] - self.centroid[images].astype(np.float32) @ w.T


def image_centroids(unit: np.ndarray, caption_image: np.ndarray) -> np.ndarray:
    """unit [N, D] unit caption vectors; caption_image [N] -> [M, D]: each image's normalised mean caption vector
    (zero rows for images without captions), M = max image row + 1."""
    m = int(caption_image.max()) + 1 if len(caption_image) else 0
    total = np.zeros((m, unit.shape[1]), np.float32)
    np.add.at(total, caption_image, unit)
    return total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)
