"""`glove:<path to glove.*.txt>` — the seed notebooks' encoder: the average of a caption's GloVe word vectors.

Tokens: lowercased runs of letters/digits (`[^\\W_]+`, so "flower's" -> "flower", "s"); words not in the file are
skipped; a caption with no known word gives the zero vector. dim is read from the file.
config() records the absolute path, the file size and the sha256 of the WHOLE file: the file is read in full
to load the vectors anyway, so hashing in the same pass costs ~1 s per GB and makes a later
`encoder_from_config` refuse a different or edited file (a first-MB hash would miss edits further in).
"""
from __future__ import annotations

import hashlib
import os
import re

import numpy as np

from embeddings.common import BatchedEncoder, Option, canonical_spec, resolve_options
from tools.errors import UserError

OPTIONS = {"normalize": Option(False, "L2-normalise each averaged vector (the notebooks did not)")}
_WORD = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def read_glove(path: str) -> tuple[dict[str, int], np.ndarray, str]:
    """(word -> row, vectors float32 [V, D], sha256 hex of the file). The first occurrence of a word wins;
    words may contain spaces (glove.840B), so the vector is the last D fields of a line."""
    digest, words, rows, dim = hashlib.sha256(), {}, [], None
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            digest.update(raw)
            parts = raw.decode("utf-8", errors="replace").rstrip().split(" ")
            if dim is None:
                dim = len(parts) - 1
                if dim < 1:
                    raise UserError(f"glove: '{path}' line 1 has no vector — expected 'word v1 v2 ... vD' per line")
            if len(parts) < dim + 1:
                if len(parts) == 1 and not parts[0]:
                    continue  # blank line
                raise UserError(f"glove: '{path}' line {lineno} has {len(parts) - 1} values, expected {dim}")
            word = " ".join(parts[:-dim])
            if word not in words:
                words[word] = len(rows)
                rows.append(np.asarray(parts[-dim:], dtype=np.float32))
    if not rows:
        raise UserError(f"glove: '{path}' is empty — expected 'word v1 v2 ... vD' per line")
    return words, np.stack(rows), digest.hexdigest()


class GloveEncoder(BatchedEncoder):
    batch_size = 4096  # cheap numpy averaging

    def __init__(self, path: str, options: dict):
        self.path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(self.path):
            raise UserError(f"glove: file '{path}' does not exist — download e.g. glove.6B.zip from "
                            "https://nlp.stanford.edu/projects/glove/, unzip it, and pass glove:/path/glove.6B.300d.txt")
        self.options = resolve_options("glove", OPTIONS, options)
        self.normalize = self.options["normalize"]
        self.spec = canonical_spec("glove", self.path, self.options, OPTIONS)
        self.size = os.path.getsize(self.path)
        self.words, self.vectors, self.sha256 = read_glove(self.path)  # vectors [V, D]
        self.dim = int(self.vectors.shape[1])

    def _prepare(self, texts):
        rows = [[self.words[w] for w in tokenize(t) if w in self.words] for t in texts]
        return rows, [len(r) for r in rows]

    def _run_batch(self, items, compiled) -> np.ndarray:
        out = np.zeros((len(items), self.dim), dtype=np.float32)  # all-unknown -> zero vector
        for i, rows in enumerate(items):
            if rows:
                out[i] = self.vectors[rows].mean(axis=0)
        return out

    def config(self) -> dict:
        return {"spec": self.spec, "family": "glove", "arg": self.path, "options": dict(self.options),
                "dim": self.dim, "size": self.size, "sha256": self.sha256, "vocabulary": len(self.words)}


def build_glove(arg: str, options: dict) -> GloveEncoder:
    if not arg:
        raise UserError("glove: name the vectors file, e.g. glove:/data/glove.6B.300d.txt")
    return GloveEncoder(arg, options)
