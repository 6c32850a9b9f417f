"""Token states in the embedding cache (`--tokens`): their config, the choice of L, writing them, reading rows.

A cache built with `precompute_embeddings.py --tokens` holds, besides the sentence vectors, the last-layer token
states of every DISTINCT caption, in the cache's unique order (captions/unique_index maps caption rows to them):

    tokens/states   [U, L, D] float16   token states, right-padded, zeros beyond each length; HDF5 chunks of one
                                        row, so a random row costs one chunk read
    tokens/lengths  [U]       int32     tokens stored per row (special tokens included, at most L)
    tokens/ids      [U, L]    int32     the tokenizer's ids, pad id beyond the length
    root attribute `tokens`   JSON {"length": L, "layer": "last", "dtype": "float16", "padding": "right",
                              "pooling": the encoder's pooling, "length_rule": how L was chosen,
                              "truncated": distinct captions longer than L (their states keep the first L tokens)}

The config minus "truncated" and "length_rule" enters the cache fingerprint (cache/fingerprint.py): a cache with
other L, padding, dtype, layer or pooling is refused, never reused; how L was found does not change the states.

    with EmbeddingCache.open(path) as cache:
        tokens = cache.tokens()                       # TokenStates, or None for a sentence-only cache
        states, lengths = tokens.rows(caption_rows)   # [n, L, D] float16, [n] int32; reads only those rows
"""
from __future__ import annotations

import json

import h5py
import numpy as np

from cache import layout as LA
from tools.errors import UserError

TOKEN_ENCODERS = "minilm, mpnet, hf:<name-or-dir>"  # the encoders with token states (embeddings/hf.py HFEncoder)
AUTO_PERCENTILE = 99  # auto L: this percentile of the distinct captions' token counts ...
LENGTH_MULTIPLE = 8  # ... rounded up to a multiple of this
UNHASHED = ("truncated", "length_rule")  # config keys left out of the fingerprint


# --- build side -------------------------------------------------------------------------------------
def require_token_encoder(encoder) -> None:
    """One-line UserError unless the encoder can give token states."""
    if not callable(getattr(encoder, "encode_tokens", None)):
        raise UserError(f"--tokens needs a transformer encoder with token states ({TOKEN_ENCODERS}); "
                        f"{encoder.spec} gives sentence vectors only — drop --tokens or pick one of those")


def parse_length(value) -> int | str:
    """--token-length: "auto" or a positive integer (capped at the encoder's max_length later)."""
    if value is None or str(value).strip().lower() == "auto":
        return "auto"
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n <= 0:
        raise UserError(f"--token-length {value!r} must be a positive integer or auto (default auto: the "
                        f"{AUTO_PERCENTILE}th percentile of the captions' token counts, "
                        f"a multiple of {LENGTH_MULTIPLE})")
    return n


def plan_tokens(encoder, texts: list[str], requested="auto", log=print) -> dict:
    """The `tokens` config for these distinct captions: L (auto or given), and how many captions it cuts."""
    require_token_encoder(encoder)
    requested = parse_length(requested)
    counts = encoder.token_lengths(texts)  # [U] int32, special tokens included, cut at max_length
    cap = int(encoder.max_length)
    if requested == "auto":
        pct = int(np.ceil(np.percentile(counts, AUTO_PERCENTILE))) if len(counts) else 1
        length = min(cap, -(-pct // LENGTH_MULTIPLE) * LENGTH_MULTIPLE)
        rule = (f"auto: p{AUTO_PERCENTILE} of the distinct captions' token counts incl. special tokens = {pct}, "
                f"rounded up to a multiple of {LENGTH_MULTIPLE} (cap: max_length {cap})")
    else:
        length, rule = min(int(requested), cap), f"--token-length {requested} (cap: max_length {cap})"
    truncated = int(np.sum(counts > length))
    if log:
        mean = float(counts.mean()) if len(counts) else 0.0
        log(f"token states: L = {length} ({rule}); token counts mean {mean:.1f}, max "
            f"{int(counts.max()) if len(counts) else 0}; {truncated} of {len(texts)} distinct captions truncated")
    return {"length": int(length), "layer": "last", "dtype": "float16", "padding": "right",
            "pooling": str(getattr(encoder, "pooling", "mean")), "length_rule": rule, "truncated": truncated}


def fingerprint_part(config: dict | None) -> dict | None:
    """What of the tokens config enters the cache fingerprint (None: no tokens)."""
    return None if config is None else {k: v for k, v in config.items() if k not in UNHASHED}


def describe(config: dict | None) -> str:
    if config is None:
        return "no token states"
    return ", ".join(f"{k} {config[k]}" for k in ("length", "layer", "dtype", "padding", "pooling") if k in config)


def mismatch(file_config: dict | None, wanted: dict | None) -> str | None:
    """A one-line reason when a file's token states differ from what a build asks for (None: same)."""
    if fingerprint_part(file_config) == fingerprint_part(wanted):
        return None
    if file_config is None:
        return "it was built without --tokens (no token states)"
    if wanted is None:
        return (f"it holds token states ({describe(file_config)}) and this build asks for none; add --tokens "
                f"--token-length {file_config['length']} to use it")
    return f"its token states are {describe(file_config)}, this build asks for {describe(wanted)}"


def create_datasets(f: h5py.File, num_unique: int, config: dict, dim: int) -> None:
    """Allocate tokens/ in full now (like captions/embedding), so later chunk writes never change metadata."""
    length = int(config["length"])
    for name, shape, dtype, chunks in (
            (LA.TOKENS_STATES, (num_unique, length, dim), "float16", (1, length, dim)),  # one row per chunk
            (LA.TOKENS_LENGTHS, (num_unique,), "int32", (min(num_unique, 1 << 16),)),
            (LA.TOKENS_IDS, (num_unique, length), "int32", (min(num_unique, 1 << 12), length))):
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, dcpl=dcpl)
    f.attrs[LA.ATTR_TOKENS] = json.dumps(config, sort_keys=True)


def check_chunk(spec: str, texts: list[str], offset: int, length: int, dim: int, states, lengths, ids):
    """The encoder's token output for one chunk as stored: (float16 [n, L, D], int32 [n], int32 [n, L])."""
    n = len(texts)
    if states.shape != (n, length, dim) or lengths.shape != (n,) or ids.shape != (n, length):
        raise RuntimeError(f"encoder {spec} returned token shapes {states.shape}, {lengths.shape}, {ids.shape} for "
                           f"{n} texts at L={length}, expected ({n}, {length}, {dim}), ({n},), ({n}, {length})")
    low = np.asarray(states).astype(np.float16)
    if not np.isfinite(low).all():  # a state beyond float16's range (65504) would be stored as inf
        bad = int(np.flatnonzero(~np.isfinite(low).all(axis=(1, 2)))[0])
        raise RuntimeError(f"encoder {spec}: token states of {texts[bad]!r} (unique caption {offset + bad}) are not "
                           "finite in float16")
    return low, np.asarray(lengths, np.int32), np.asarray(ids, np.int32)


def write_chunk(f: h5py.File, lo: int, states: np.ndarray, lengths: np.ndarray, ids: np.ndarray) -> None:
    """Unique rows [lo, lo + n) of tokens/ (contiguous in the unique order, like the chunk of captions)."""
    hi = lo + len(lengths)
    f[LA.TOKENS_STATES][lo:hi] = states
    f[LA.TOKENS_LENGTHS][lo:hi] = lengths
    f[LA.TOKENS_IDS][lo:hi] = ids


def file_config(f: h5py.File) -> dict | None:
    """The `tokens` attribute of an open cache file (None: a sentence-only cache)."""
    raw = f.attrs.get(LA.ATTR_TOKENS)
    if raw is None:
        return None
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


# --- read side --------------------------------------------------------------------------------------
class TokenStates:
    """Token rows of one cache, read by caption row. Keeps its own h5py handle open: cheap to call per training
    step (e.g. inside tf.numpy_function); close() it (or use `with`) when done."""

    def __init__(self, path, file: h5py.File | None = None):
        self.path = path
        self._f = file if file is not None else h5py.File(path, "r")
        self.config = file_config(self._f)
        if self.config is None or LA.TOKENS_STATES not in self._f:
            self._f.close()
            raise UserError(f"{path} holds no token states (built without --tokens); rebuild it with "
                            f"python precompute_embeddings.py --data DATA --encoder SPEC --tokens --out {path} --force")
        self._states, self._lengths = self._f[LA.TOKENS_STATES], self._f[LA.TOKENS_LENGTHS]
        self.length, self.dim = int(self._states.shape[1]), int(self._states.shape[2])
        self.num_unique = int(self._states.shape[0])
        self._unique = self._f[LA.CAPTION_UNIQUE_INDEX][()].astype(np.int64)  # [N]: 8 bytes a caption, in memory
        self._all_lengths = self._lengths[()]  # [U] int32, 4 bytes a distinct caption
        # the writer's layout (one unfiltered little-endian row per chunk) lets a row be read as its raw chunk: ~25x
        # faster than a selection (bench/token_cache.py); any other layout is read through h5py's selections
        plist = self._states.id.get_create_plist()
        self._raw_rows = (self._states.chunks == (1, self.length, self.dim) and plist.get_nfilters() == 0
                          and self._states.dtype == np.dtype("<f2"))

    @property
    def num_captions(self) -> int:
        return len(self._unique)

    def unique_rows(self, caption_rows) -> np.ndarray:
        rows = np.asarray(caption_rows, dtype=np.int64).ravel()
        if rows.size and (rows.min() < 0 or rows.max() >= len(self._unique)):
            raise IndexError(f"caption rows must lie in [0, {len(self._unique)}); got {rows.min()}..{rows.max()}")
        return self._unique[rows]

    def rows(self, caption_rows) -> tuple[np.ndarray, np.ndarray]:
        """(states float16 [n, L, D], lengths int32 [n]) of the given caption rows (any order, repeats allowed);
        reads only the distinct rows they need, in ascending order, one HDF5 chunk each."""
        return self.unique(self.unique_rows(caption_rows))

    def unique(self, unique_rows) -> tuple[np.ndarray, np.ndarray]:
        """rows() by row of the unique order."""
        unique_rows = np.asarray(unique_rows, dtype=np.int64).ravel()
        wanted, inverse = np.unique(unique_rows, return_inverse=True)  # h5py wants increasing indices
        block = np.empty((len(wanted), self.length, self.dim), np.float16)
        if wanted.size and (wanted[0] < 0 or wanted[-1] >= self.num_unique):
            raise IndexError(f"unique rows must lie in [0, {self.num_unique}); got {wanted[0]}..{wanted[-1]}")
        read_chunk = self._states.id.read_direct_chunk
        for i, row in enumerate(wanted):  # one chunk per row
            if self._raw_rows:
                block[i] = np.frombuffer(read_chunk((int(row), 0, 0))[1], np.float16).reshape(self.length, self.dim)
            else:
                self._states.read_direct(block, np.s_[row : row + 1], np.s_[i : i + 1])
        return block[inverse.ravel()], self._all_lengths[unique_rows]

    def close(self) -> None:
        if self._f:
            self._f.close()

    def __enter__(self) -> "TokenStates":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TokenStates({str(self.path)!r}, {self.num_unique} distinct captions, L {self.length}, dim {self.dim})"
