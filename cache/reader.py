"""Read an embedding cache written by cache/writer.py (its docstring documents the layout).

    with EmbeddingCache.open("cache/synthetic-flowers-minilm.h5") as cache:
        vectors = cache.embeddings()          # [N, D] float32, row i for cache.texts()[i]
        images = cache.image_index()          # [N] int64 rows in cache.image_paths()
        encoder = cache.build_encoder()       # the same encoder, for new text
        tokens = cache.tokens()               # token states (--tokens caches; else None): cache/tokens.py

Unreadable files (not HDF5, truncated, missing parts) and incomplete ones are one-line UserErrors naming the
file and the command that fixes it.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from cache import layout as L
from tools.errors import UserError

REQUIRED_DATASETS = (L.CAPTION_TEXT, L.CAPTION_IMAGE_INDEX, L.CAPTION_EMBEDDING, L.CAPTION_UNIQUE_INDEX,
                     L.IMAGE_ID, L.IMAGE_PATH)
REQUIRED_ATTRS = (L.ATTR_ENCODER, L.ATTR_ENCODER_CONFIG, L.ATTR_DIM, L.ATTR_FINGERPRINT, L.ATTR_COMPLETE,
                  L.ATTR_DTYPE, L.ATTR_NUM_UNIQUE, L.ATTR_CHUNK_SIZE, L.ATTR_NUM_CHUNKS, L.ATTR_CHUNKS_DONE, L.ATTR_BATCH_SIZE)
READ_ROWS = 256  # rows per scattered HDF5 read
IDENTITY_PROBES = 4  # cached captions re-encoded to prove a rebuilt encoder is the cache's encoder
IDENTITY_MIN_COSINE = 0.9999
CHECKED_ENCODERS_KEPT = 2  # rebuilt, checked encoders kept per process (evaluating runs of two caches in turn)
_checked_encoders: dict[tuple, object] = {}  # (resolved path, mtime_ns, fingerprint) -> encoder, oldest first


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def open_hdf5(path: Path, mode: str, **kw) -> h5py.File:
    """h5py.File, with a file locked by another process turned into a one-line UserError (HDF5 locks a file
    open for writing; its own message reads like damage)."""
    try:
        return h5py.File(path, mode, **kw)
    except OSError as e:
        if "unable to lock file" in str(e):
            raise UserError(f"{path} is open in another process (a precompute_embeddings.py still writing it?): "
                            "wait for that process or stop it (a stopped build resumes), then run this again") from None
        raise


def _rebuild_hint(path: Path) -> str:
    return f"rebuild it: python precompute_embeddings.py --data DATA --encoder SPEC --out {shlex.quote(str(path))} --force"


class EmbeddingCache:
    """An open cache file. Use `EmbeddingCache.open(path)`; close it (or use `with`) when done."""

    def __init__(self, path: Path, file: h5py.File):
        self.path = path
        self._f = file
        self._rows_by_text: dict[str, int] | None = None
        self._tokens = None  # cache.tokens.TokenStates kept by encode_tokens

    @classmethod
    def open(cls, path, require_complete: bool = True) -> "EmbeddingCache":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"embedding cache not found: {path}; build it with "
                            f"python precompute_embeddings.py --data DATA --encoder SPEC --out {shlex.quote(str(path))}")
        try:
            f = open_hdf5(path, "r")
        except OSError as e:
            raise UserError(f"{path} is not a readable HDF5 embedding cache ({_one_line(e)}); "
                            f"{_rebuild_hint(path)}") from None
        cache = cls(path, f)
        try:
            cache._validate(require_complete)
        except BaseException:
            f.close()
            raise
        return cache

    def _validate(self, require_complete: bool) -> None:
        try:
            missing = [n for n in REQUIRED_DATASETS if n not in self._f]
            missing += [f"attribute {a}" for a in REQUIRED_ATTRS if a not in self._f.attrs]
            if missing:
                raise UserError(f"{self.path} is not an embedding cache written by precompute_embeddings.py "
                                f"(missing {missing[0]}); {_rebuild_hint(self.path)}")
            n, shape = self.num_captions, self._f[L.CAPTION_EMBEDDING].shape
            if len(self._f[L.CAPTION_IMAGE_INDEX]) != n or shape != (n, self.dim):
                raise UserError(f"{self.path}: inconsistent shapes (captions {n}, embedding {shape}, dim "
                                f"{self.dim}); {_rebuild_hint(self.path)}")
        except (OSError, KeyError, ValueError) as e:  # damaged metadata inside an HDF5 file
            raise UserError(f"{self.path} is damaged ({_one_line(e)}); {_rebuild_hint(self.path)}") from None
        if require_complete and not self.complete:
            command = ["python", "precompute_embeddings.py", "--data", self.dataset_root, "--layout",
                       self.dataset_layout, "--encoder", self.encoder_spec, "--out", str(self.path)]
            raise UserError(f"{self.path} is incomplete ({self.chunks_done} of {self.num_chunks} chunks encoded; "
                            f"its build was interrupted); re-run {shlex.join(command)} to finish it")

    # --- attributes -------------------------------------------------------------------------------
    def _attr(self, name: str, default=None):
        value = self._f.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    @property
    def encoder_spec(self) -> str:
        return str(self._attr(L.ATTR_ENCODER))

    @property
    def encoder_config(self) -> dict:
        return json.loads(self._attr(L.ATTR_ENCODER_CONFIG))

    @property
    def dim(self) -> int:
        return int(self._attr(L.ATTR_DIM))

    @property
    def dtype(self) -> str:
        return str(self._attr(L.ATTR_DTYPE))

    @property
    def fingerprint(self) -> str:
        return str(self._attr(L.ATTR_FINGERPRINT))

    @property
    def complete(self) -> bool:
        return bool(self._attr(L.ATTR_COMPLETE))

    @property
    def chunks_done(self) -> int:
        return int(self._attr(L.ATTR_CHUNKS_DONE))

    @property
    def num_chunks(self) -> int:
        return int(self._attr(L.ATTR_NUM_CHUNKS))

    @property
    def num_unique(self) -> int:
        return int(self._attr(L.ATTR_NUM_UNIQUE))

    @property
    def dataset_name(self) -> str:
        return str(self._attr(L.ATTR_DATASET_NAME, ""))

    @property
    def dataset_root(self) -> str:
        return str(self._attr(L.ATTR_DATASET_ROOT, ""))

    @property
    def dataset_layout(self) -> str:
        return str(self._attr(L.ATTR_DATASET_LAYOUT, ""))

    @property
    def versions(self) -> dict:
        return json.loads(self._attr(L.ATTR_VERSIONS, "{}"))

    @property
    def created(self) -> str:
        return str(self._attr(L.ATTR_CREATED, ""))

    @property
    def num_captions(self) -> int:
        return len(self._f[L.CAPTION_TEXT])

    @property
    def token_config(self) -> dict | None:
        """The `tokens` attribute (cache/tokens.py) of a cache built with --tokens, else None."""
        from cache.tokens import file_config

        return file_config(self._f)

    @property
    def has_tokens(self) -> bool:
        return self.token_config is not None and L.TOKENS_STATES in self._f

    def tokens(self):
        """cache.tokens.TokenStates (its own open handle: close it, or use `with`), or None without token states."""
        from cache.tokens import TokenStates

        return TokenStates(self.path) if self.has_tokens else None

    def require_tokens(self):
        """tokens(), or a one-line UserError naming the rebuild when the cache has no token states."""
        from cache.tokens import TokenStates

        return TokenStates(self.path)

    @property
    def num_images(self) -> int:
        return len(self._f[L.IMAGE_ID])

    # --- datasets ---------------------------------------------------------------------------------
    def _strings(self, name: str) -> list[str]:
        return self._f[name].asstr()[()].tolist()

    def texts(self) -> list[str]:
        return self._strings(L.CAPTION_TEXT)

    def image_index(self) -> np.ndarray:
        return self._f[L.CAPTION_IMAGE_INDEX][()].astype(np.int64, copy=False)

    def unique_index(self) -> np.ndarray:
        return self._f[L.CAPTION_UNIQUE_INDEX][()].astype(np.int64, copy=False)

    def image_ids(self) -> list[str]:
        return self._strings(L.IMAGE_ID)

    def image_paths(self) -> list[str]:
        return self._strings(L.IMAGE_PATH)

    def test_ids(self) -> list[str] | None:
        return self._strings(L.TEST_ID) if L.TEST_ID in self._f else None

    def test_texts(self) -> list[str] | None:
        return self._strings(L.TEST_TEXT) if L.TEST_TEXT in self._f else None

    def labels(self) -> tuple[np.ndarray, list[str]] | None:
        """(class id [M] int64, class names [K]) of a labelled cache; None when the dataset had no labels."""
        if L.IMAGE_LABEL not in self._f:
            return None
        return self._f[L.IMAGE_LABEL][()].astype(np.int64, copy=False), self._strings(L.LABEL_NAME)

    @property
    def label_source(self) -> str:
        """"class" or the attribute grouping of a labelled cache; "" without labels."""
        return str(self._attr(L.ATTR_LABELS, ""))

    def embeddings(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """float32 [N, D], or [len(rows), D] for the given caption rows (any order, repeats allowed)."""
        data = self._f[L.CAPTION_EMBEDDING]
        if rows is None:
            return data[()].astype(np.float32, copy=False)
        rows = np.asarray(rows, dtype=np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_captions):
            raise IndexError(f"caption rows must lie in [0, {self.num_captions}); got {rows.min()}..{rows.max()}")
        wanted, inverse = np.unique(rows, return_inverse=True)
        if wanted.size == 0:
            return np.empty((0, self.dim), np.float32)
        lo, hi = int(wanted[0]), int(wanted[-1]) + 1
        if hi - lo <= 4 * wanted.size:  # dense enough: one contiguous read
            block = data[lo:hi][wanted - lo]
        else:  # HDF5 point selections slow down past a few hundred rows: read in pieces
            block = np.concatenate([data[wanted[i : i + READ_ROWS]] for i in range(0, wanted.size, READ_ROWS)])
        return block[inverse.ravel()].astype(np.float32, copy=False)

    def lookup(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Cached vectors for texts that are captions in this cache: ([len, D] float32 with zero rows where
        not found, [len] bool found). Generation encodes only the rest."""
        if self._rows_by_text is None:
            self._rows_by_text = {}
            for row, text in enumerate(self.texts()):
                self._rows_by_text.setdefault(text, row)
        rows = np.array([self._rows_by_text.get(t, -1) for t in texts], dtype=np.int64)
        found = rows >= 0
        vectors = np.zeros((len(rows), self.dim), np.float32)
        if found.any():
            vectors[found] = self.embeddings(rows[found])
        return vectors, found

    def encoder_state(self) -> dict[str, np.ndarray]:
        state = {}
        for key, data in self._f[L.ENCODER_STATE].items():
            if h5py.check_string_dtype(data.dtype):
                state[key] = np.asarray(data.asstr()[()], dtype=object).astype(str)
            else:
                state[key] = np.asarray(data[()])
        return state

    def build_encoder(self):
        """The encoder that made this cache (fitted state included), for encoding new text identically."""
        from embeddings.registry import encoder_from_config

        return encoder_from_config(self.encoder_config, self.encoder_state())

    def check_encoder(self, encoder, probes: int = IDENTITY_PROBES) -> float:
        """Re-encode a few cached captions; refuse (UserError) an encoder that does not reproduce the cached
        vectors — new text must land where the GAN's training vectors are. Returns the lowest cosine."""
        rows = np.unique(np.linspace(0, self.num_captions - 1, min(probes, self.num_captions)).astype(np.int64))
        texts = self.texts()
        stored = self.embeddings(rows)
        fresh = np.asarray(encoder.encode([texts[i] for i in rows]), np.float32)
        if fresh.shape != stored.shape:
            raise UserError(
                f"{self.path}: encoder {encoder.spec} built here gives {fresh.shape[1]}-d vectors but the cache's "
                f"{self.encoder_spec} vectors are {stored.shape[1]}-d, so it does not reproduce the cache's vectors"
            )
        num = np.sum(stored * fresh, axis=1)
        den = np.linalg.norm(stored, axis=1) * np.linalg.norm(fresh, axis=1)
        cos = float(np.min(np.where(den > 1e-9, num / np.maximum(den, 1e-12), 1.0)))
        if cos < IDENTITY_MIN_COSINE:
            versions = ", ".join(f"{k} {v}" for k, v in sorted(self.versions.items()))
            raise UserError(
                f"{self.path}: encoder {self.encoder_spec} built here does not reproduce the cache's vectors "
                f"(min cosine {cos:.5f} < {IDENTITY_MIN_COSINE}); install the library versions it was built with ({versions})"
            )
        return cos

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """float32 [N, D] for any texts: the stored vector where the cache holds the caption, elsewhere the
        cache's own encoder (rebuilt, and checked by check_encoder). Returns (vectors, how many were reused)."""
        vectors, found = self.lookup(texts)
        missing = np.flatnonzero(~found)
        if len(missing):
            encoder = self.checked_encoder()
            vectors[missing] = np.asarray(encoder.encode([texts[i] for i in missing]), np.float32)
        return vectors, int(found.sum())

    def encode_tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vectors float32 [n, D], states float16 [n, L, D], lengths int32 [n]) for any texts at the cache's L:
        stored rows where the cache holds the caption, elsewhere the cache's own checked encoder, one pass.
        The token reader is opened once per open cache (a server calls this for every batch) and closed with it."""
        if self._tokens is None:
            self._tokens = self.require_tokens()
        tokens = self._tokens
        vectors, found = self.lookup(texts)
        states = np.zeros((len(texts), tokens.length, tokens.dim), np.float16)
        lengths = np.zeros(len(texts), np.int32)
        hit = np.flatnonzero(found)
        if len(hit):
            states[hit], lengths[hit] = tokens.rows(np.array([self._rows_by_text[texts[i]] for i in hit]))
        missing = np.flatnonzero(~found)
        if len(missing):
            new = self.checked_encoder().encode_tokens([texts[i] for i in missing], tokens.length)
            vectors[missing], lengths[missing] = new[0], new[2]
            states[missing] = new[1].astype(np.float16)
        return vectors, states, lengths

    def checked_encoder(self):
        """build_encoder() that passed check_encoder(), built once per process for this file: generating and
        evaluating several runs of one cache reuse it instead of reloading the weights each time. A rewritten
        file (new mtime or fingerprint) gets a fresh one."""
        key = (str(self.path.resolve()), self.path.stat().st_mtime_ns, self.fingerprint)
        encoder = _checked_encoders.pop(key, None)
        if encoder is None:
            encoder = self.build_encoder()
            self.check_encoder(encoder)
        _checked_encoders[key] = encoder  # most recently used last
        while len(_checked_encoders) > CHECKED_ENCODERS_KEPT:
            _checked_encoders.pop(next(iter(_checked_encoders)))
        return encoder

    # --- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        if self._tokens is not None:
            self._tokens.close()
            self._tokens = None
        if self._f:
            self._f.close()

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"EmbeddingCache({str(self.path)!r}, {self.num_captions} captions, encoder {self.encoder_spec!r}, "
                f"dim {self.dim}, {self.dtype})")
