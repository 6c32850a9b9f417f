"""Exchanged-colour mismatched captions: part of D's wrong captions are the image's own with two colour words exchanged.

A random other image's caption is wrong about many things at once; a hard negative (gan/negatives.py) about one
attribute. Neither is wrong only in which part has which colour, so D never has to read the binding, and measured
on real flowers it barely does (bench/results/d-swaps-2026-12-06.md: the sentence arm prefers the true caption to
its exchanged twin 57 % of the time, the word arm 89 % but by 0.09 logits). `--set exchanged_cache=FILE` names a
cache of exchanged captions (tools/exchanged_captions.py, then precompute_embeddings.py with the run's encoder and,
for --arch dfgan-words, --tokens); for step s, each batch element whose image has one is chosen with probability
`exchanged_share`, and its mismatched caption becomes one of its image's exchanged captions, drawn uniformly. Keyed
by (seed, s) like the batch sampler, so prefetching and resuming stay exact.

The exchanged captions' rows follow the training cache's: row N + j is exchanged caption j (N training captions),
so the batch function gathers both kinds by one row index (`ExchangedNegatives.take`, `StackedTokens`) without
copying the training vectors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gan.data import group_rows
from tools.errors import UserError


class StackedTokens:
    """Token rows of two caches as one: rows [0, N) from `first`, [N, N + E) from `second` (same L and width)."""

    def __init__(self, first, second):
        if (first.length, first.dim) != (second.length, second.dim):
            raise UserError(f"{second.path}: token states of L {second.length} x {second.dim}, the training cache's are "
                            f"L {first.length} x {first.dim}; rebuild it with --tokens --token-length {first.length}")
        self.first, self.second = first, second
        self.length, self.dim, self.offset = first.length, first.dim, first.num_captions

    def rows(self, caption_rows) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(caption_rows, np.int64).ravel()
        states = np.empty((len(rows), self.length, self.dim), np.float16)
        lengths = np.empty(len(rows), np.int32)
        for part, tokens, shift in ((rows < self.offset, self.first, 0), (rows >= self.offset, self.second, self.offset)):
            if part.any():
                states[part], lengths[part] = tokens.rows(rows[part] - shift)
        return states, lengths


class ExchangedNegatives:
    """The exchanged captions of a run: their vectors (and token states), and which image each belongs to."""

    def __init__(self, path, info, image_ids: list[str], share: float, seed: int, tokens: bool):
        """path: the exchanged-caption cache; info: the training cache's CacheInfo; image_ids [M] its image ids;
        tokens: read their token states too (an arch that reads words)."""
        from cache.reader import EmbeddingCache

        self.path = str(Path(path).resolve())
        with EmbeddingCache.open(path) as cache:
            why = self._mismatch(cache, info, tokens)
            if why:
                raise UserError(f"--set exchanged_cache={path}: {why}")
            self.vectors = cache.embeddings().astype(np.float16)  # [E, D]
            own = cache.image_ids()
            caption_image = cache.image_index()
            self.tokens = cache.tokens() if tokens else None
        row_of = {image_id: i for i, image_id in enumerate(image_ids)}
        unknown = [i for i in own if i not in row_of]
        if unknown:
            raise UserError(f"--set exchanged_cache={path}: {len(unknown)} of its images are not in the training cache "
                            f"(e.g. {unknown[0]!r}); make it from the same dataset (tools/exchanged_captions.py --data)")
        image = np.array([row_of[i] for i in own], np.int64)[caption_image]  # [E] training image row of each
        self.order, self.count, self.start = group_rows(image, len(image_ids))  # exchanged rows by training image
        self.offset = info.num_captions  # row N + j is exchanged caption j
        self.share, self.seed = share, seed

    @staticmethod
    def _mismatch(cache, info, tokens: bool) -> str | None:
        if cache.encoder_spec != info.encoder or cache.encoder_config != info.encoder_config:
            return (f"encoded with {cache.encoder_spec}, the training cache with {info.encoder} (or another config of "
                    f"it); rebuild it with the training cache's encoder")
        if cache.dim != info.dim:
            return f"dim {cache.dim}, the training cache's is {info.dim}"
        if tokens and not cache.has_tokens:
            return "built without token states, which an arch that reads words needs; rebuild it with --tokens"
        if tokens and cache.token_config["length"] != info.token_length:
            return (f"token length {cache.token_config['length']}, the training cache's is {info.token_length}; "
                    f"rebuild it with --tokens --token-length {info.token_length}")
        return None

    @property
    def num_captions(self) -> int:
        return len(self.vectors)

    @property
    def num_images(self) -> int:
        return int((self.count > 0).sum())

    def replace(self, step: int, images: np.ndarray, wrong_rows: np.ndarray) -> np.ndarray:
        """images [B] image rows of the batch; wrong_rows [B, k] mismatched caption rows -> [B, k] with the chosen
        elements' rows replaced by one exchanged caption of their own image (row N + j, repeated k times)."""
        rng = np.random.default_rng([self.seed, 5, step])
        count = self.count[images]
        chosen = (rng.random(len(images)) < self.share) & (count > 0)  # [B]
        pos = (rng.random(len(images)) * count).astype(np.int64)  # uniform among the image's exchanged captions
        out = wrong_rows.copy()
        out[chosen] = (self.order[self.start[images[chosen]] + pos[chosen]] + self.offset)[:, None]
        return out

    def take(self, vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """vectors [N, D] the training cache's; rows [...] of the stacked order -> [..., D] (vectors' dtype): row r < N
        from `vectors`, row N + j exchanged caption j."""
        out = np.empty(rows.shape + vectors.shape[1:], vectors.dtype)
        mine = rows >= self.offset
        out[~mine] = vectors[rows[~mine]]
        out[mine] = self.vectors[rows[mine] - self.offset]
        return out

    def describe(self) -> str:
        return (f"exchanged-colour negatives: {self.share:.0%} of the mismatched captions of the {self.num_images} "
                f"images that have one ({self.num_captions} captions, {self.path})")
