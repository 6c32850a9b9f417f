"""The cache behind the embedding service: its stored vectors looked up by exact text, and its own encoder for
the rest, one encoder call per micro-batch.

    engine = EmbedEngine.open("cache/synthetic-flowers-minilm.h5")
    (out,), stats = engine.run_batch([EmbedJob(("a red flower", "a caption the cache lacks"))])
    out.vectors, out.cached     # float32 [2, D], bool [2]: the stored row where the cache holds the text

A cached text gets its stored row exactly (float16 caches: that row widened to float32); any other text gets
what `EmbeddingCache.build_encoder()` gives. The encoder is rebuilt from the file once, at start, and checked
against the stored vectors (cache.checked_encoder). Every method but info() runs h5py or the encoder
(TensorFlow for most): the service calls run_batch from the batcher's one worker thread only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class EmbedJob:
    texts: tuple[str, ...]  # [T] as sent: lookup and encoder see the exact text

    @property
    def rows(self) -> int:  # what the job adds to a micro-batch (tools/serve/batcher.py)
        return len(self.texts)


@dataclass
class Embedded:
    vectors: np.ndarray  # float32 [T, D], row i for texts[i]
    cached: np.ndarray  # bool [T]: row i is the cache file's stored vector


@dataclass
class EmbedStats:
    encoded: int  # distinct texts of the batch the encoder computed
    reused: int  # distinct texts served from the cache file
    ms: float


class EmbedEngine:
    def __init__(self, cache):
        self.cache = cache
        self.encoder = cache.checked_encoder()  # UserError if it does not reproduce the stored vectors
        cache.lookup([])  # builds the text -> row index now, not on the first request

    @classmethod
    def open(cls, path) -> "EmbedEngine":
        from cache.reader import EmbeddingCache

        cache = EmbeddingCache.open(Path(path))
        try:
            return cls(cache)
        except BaseException:
            cache.close()
            raise

    def info(self) -> dict:
        c = self.cache
        return dict(encoder=c.encoder_spec, dim=c.dim, dtype=c.dtype, fingerprint=c.fingerprint, file=c.path.name,
                    dataset=c.dataset_name, captions=c.num_captions, unique_captions=c.num_unique, versions=c.versions)

    def run_batch(self, jobs: list[EmbedJob]) -> tuple[list[Embedded], EmbedStats]:
        """One lookup and at most one encoder call for the batch's distinct texts; each job gets its own rows."""
        t0 = time.perf_counter()
        distinct = list(dict.fromkeys(t for job in jobs for t in job.texts))
        vectors, found = self.cache.lookup(distinct)  # [U, D] float32 (zeros where not found), [U] bool
        missing = np.flatnonzero(~found)
        if missing.size:
            vectors[missing] = np.asarray(self.encoder.encode([distinct[i] for i in missing]), np.float32)
        index = {t: i for i, t in enumerate(distinct)}
        out = []
        for job in jobs:
            rows = [index[t] for t in job.texts]
            out.append(Embedded(vectors[rows], found[rows]))
        return out, EmbedStats(encoded=int(missing.size), reused=int(found.sum()), ms=1e3 * (time.perf_counter() - t0))

    def close(self) -> None:
        self.cache.close()
