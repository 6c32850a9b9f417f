"""The cache fingerprint: one sha256 that changes whenever the cached vectors could change.

It covers the dataset's image ids, caption texts, caption -> image mapping, the test ids/texts (when the
dataset has them), the class labels with their names and source (when it has them: another grouping is another
cache), the encoder config (JSON with sorted keys, taken *before* a fitted encoder is fitted, so a fresh encoder
built from the same spec and options gives the same fingerprint), the stored dtype, and for a cache with token
states (`--tokens`) their config minus "truncated"/"length_rule" (cache/tokens.py). A sentence-only, unlabelled
cache hashes exactly what it hashed before token states and labels existed.
Image paths are deliberately left out: moving a dataset does not change its vectors.
"""
from __future__ import annotations

import hashlib
import json
from typing import Sequence

import numpy as np

FORMAT_TAG = b"t2i-embedding-cache-v1\0"  # bump if the hashed content or the file layout changes


def _update_strings(h: "hashlib._Hash", tag: str, items: Sequence[str]) -> None:
    """Length-prefixed, so no choice of texts can collide with another split into items."""
    blobs = [s.encode("utf-8") for s in items]
    h.update(f"{tag}:{len(blobs)}\0".encode())
    h.update(np.array([len(b) for b in blobs], dtype="<i8").tobytes())
    h.update(b"".join(blobs))


def encoder_config_json(config: dict) -> str:
    """The canonical JSON of an encoder config (sorted keys, no spaces) — hashed and stored as-is."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_fingerprint(dataset, encoder_config: dict, dtype: str, tokens: dict | None = None) -> str:
    """sha256 hex digest over what determines the cache's contents (see module docstring)."""
    h = hashlib.sha256(FORMAT_TAG)
    _update_strings(h, "image_ids", dataset.image_ids)
    _update_strings(h, "captions", dataset.captions)
    h.update(b"caption_image\0" + np.asarray(dataset.caption_image, dtype="<i8").tobytes())
    if dataset.test_ids is not None:
        _update_strings(h, "test_ids", dataset.test_ids)
        _update_strings(h, "test_texts", dataset.test_captions or [])
    labels = getattr(dataset, "labels", None)
    if labels is not None:  # only a labelled dataset: an unlabelled cache keeps the fingerprint it always had
        _update_strings(h, "labels:" + dataset.label_source, dataset.label_names)
        h.update(b"label_ids\0" + np.asarray(labels, dtype="<i8").tobytes())
    h.update(b"encoder\0" + encoder_config_json(encoder_config).encode("utf-8"))
    h.update(b"dtype\0" + str(dtype).encode())
    if tokens is not None:  # cache/tokens.fingerprint_part: L, layer, dtype, padding, pooling
        h.update(b"tokens\0" + json.dumps(tokens, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    return h.hexdigest()
