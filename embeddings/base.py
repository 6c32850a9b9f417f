"""The text-encoder interface every encoder family implements.

An encoder is fully described by `config()` (JSON-serialisable, includes "spec"); fitted encoders
(tfidf) also carry `state()` arrays, which the cache stores so new text encodes identically later.
`embeddings.registry.encoder_from_config(config, state)` rebuilds an identical encoder from those two.
"""
from __future__ import annotations

import abc
from typing import Sequence

import numpy as np


class TextEncoder(abc.ABC):
    spec: str  # registry spec string, e.g. "minilm", "hf:bert-base-uncased", "tfidf"
    dim: int  # output dimension D
    needs_fit: bool = False  # True for encoders fitted on the dataset's captions (tfidf)

    @abc.abstractmethod
    def config(self) -> dict:
        """JSON-serialisable dict that fully describes this encoder (always includes "spec")."""

    @abc.abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [N, D] vectors, row i for texts[i]. Implementations may sort by length internally
        but must return rows in input order, and must be deterministic for the same input list."""

    def fit(self, texts: Sequence[str]) -> None:  # only for needs_fit encoders
        raise NotImplementedError(f"{self.spec} is not a fitted encoder")

    def state(self) -> dict[str, np.ndarray]:
        """Fitted state to persist with the cache ({} for pretrained encoders)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if state:
            raise ValueError(f"{self.spec} takes no fitted state")
