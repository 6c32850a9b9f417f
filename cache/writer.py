"""Build (or resume) the HDF5 embedding cache: every distinct caption is encoded once, chunk by chunk.

Cache layout (one HDF5 file; names fixed in cache/layout.py, extras in cache/reader.py):

    captions/text          [N]    UTF-8 str   caption texts, in the dataset's order
    captions/image_index   [N]    int64       row in images/ of each caption's image
    captions/embedding     [N, D] float32     one vector per caption row (float16 with --dtype float16);
                                              duplicate captions hold byte-equal vectors
    captions/unique_index  [N]    int64       each caption's row in the *unique order*: the distinct
                                              captions sorted by (length, text) — the order they are encoded in
    images/id              [M]    UTF-8 str
    images/path            [M]    UTF-8 str   absolute paths
    test/id, test/text     [T]    UTF-8 str   only when the dataset has held-out test captions
    images/label           [M]    int64       class id of each image, only when the dataset has labels
    labels/name            [K]    UTF-8 str   class names (sorted) that images/label indexes
    encoder_state/         group             a fitted encoder's arrays (tfidf vocabulary, idf), else empty
    tokens/states, tokens/lengths, tokens/ids  only with --tokens: [U, L, D] float16 last-layer token states of
                                              the distinct captions in the unique order, [U] int32, [U, L] int32
                                              (cache/tokens.py documents them and their `tokens` attribute)

    root attributes
    encoder         spec string, e.g. "minilm"
    encoder_config  JSON (sorted keys) of the encoder's full config after fitting;
                    `embeddings.registry.encoder_from_config(config, state)` rebuilds the same encoder
    dim             D
    dtype           "float32" | "float16" (storage type of captions/embedding)
    fingerprint     sha256 over image ids, caption texts, caption->image mapping, test ids/texts, the
                    encoder config before fitting, and dtype (cache/fingerprint.py)
    complete        bool: False until every chunk is written; readers refuse incomplete files
    num_unique      U, the number of distinct captions
    chunk_size      distinct captions encoded per step (2048)
    batch_size      encoder batch size used (0 = the encoder's default); a resumed run reuses it, since
                    batch composition can move float results in the last bits
    num_chunks      ceil(U / chunk_size)
    chunks_done     progress: chunks encoded and flushed so far; a killed run resumes at this chunk
    cache_format    1 (a cache with token states is still format 1: readers that do not know tokens/ ignore it)
    tokens          only with --tokens: JSON {length, layer, dtype, padding, pooling, length_rule, truncated}
    dataset_name, dataset_root (absolute), dataset_layout
    versions        JSON {python, numpy, h5py, tensorflow, transformers (if loaded)}
    labels          only a labelled cache: "class" (the layout's own) or the attribute names grouped
    created         ISO-8601 UTC time of the first attempt (kept on resume; SOURCE_DATE_EPOCH overrides)
    precision_check only for a reduced-precision encoder (hf/minilm precision=bfloat16): JSON {precision,
                    against: "float32", texts, min_cosine} measured on up to 256 of the distinct captions
                    before anything is written; a build refuses to start below cosine 0.9999

How a build runs: the file is first written to FILE.partial with everything except the vectors (texts,
indices, fitted encoder state, attributes, and captions/embedding allocated in full, zero-filled), then
renamed to FILE. From then on HDF5 metadata never changes shape: each chunk of distinct captions is encoded
(the encoder length-sorts its batches inside the chunk), its vectors are scattered into every caption row
that uses them (with --tokens its token rows, from the same forward pass, are written too), the file is
flushed, and only then is `chunks_done` advanced in place. A run killed at any point (even kill -9) therefore
resumes at the first unfinished chunk, and the finished file is byte-identical to an uninterrupted run's.
Memory stays flat in N: one chunk of vectors (and token states) is held at a time.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from cache import layout as L
from cache import reader as R
from cache import tokens as T
from cache.fingerprint import cache_fingerprint, encoder_config_json
from tools.errors import UserError

CHUNK_UNIQUE = 2048  # distinct captions per encode call and per progress step
SCATTER_ROWS = 256  # caption rows per HDF5 write: HDF5 selections get slow beyond a few hundred rows
CHUNK_BYTES = 1 << 18  # target size of one HDF5 chunk of captions/embedding
DTYPES = ("float32", "float16")
ATTR_PRECISION_CHECK = "precision_check"
PRECISION_SAMPLE = 256  # distinct captions (spread over the length order) encoded both ways by the check
KILL_ENV = "T2I_CACHE_TEST_KILL"  # test-only: "chunk:K" = SIGKILL after chunk K is recorded,
#                                   "rows:K" = after chunk K's rows are written, before it is recorded


@dataclass
class BuildReport:
    """What `build_cache_report` did, for the CLI's summary line."""

    path: Path
    up_to_date: bool  # True: the file was already complete; nothing was done
    num_captions: int
    num_unique: int
    dim: int
    dtype: str
    resumed_unique: int  # distinct captions found already encoded (resume)
    encoded_unique: int  # distinct captions encoded by this run
    seconds: float
    tokens: dict | None = None  # the token states' config (cache/tokens.py), None for a sentence-only cache

    @property
    def file_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass
class UniquePlan:
    """The distinct captions in encoding order and each caption's row among them."""

    texts: list[str]  # [U] distinct captions sorted by (length, text): deterministic, and short ones batch well
    index: np.ndarray  # [N] int64, caption row -> row in texts

    @classmethod
    def from_captions(cls, captions: list[str]) -> "UniquePlan":
        first: dict[str, int] = {}
        seen = np.fromiter((first.setdefault(t, len(first)) for t in captions), np.int64, len(captions))
        distinct = list(first)
        order = sorted(range(len(distinct)), key=lambda j: (len(distinct[j]), distinct[j]))
        rank = np.empty(len(distinct), np.int64)
        rank[order] = np.arange(len(distinct))
        return cls([distinct[j] for j in order], rank[seen])


def build_cache(dataset, encoder, out_path, *, dtype: str = "float32", force: bool = False,
                progress: bool = False, batch_size: int | None = None, chunk_size: int = CHUNK_UNIQUE,
                tokens: int | str | None = None, log=print) -> Path:
    """Make `out_path` a complete cache of `dataset` under `encoder` (an unfitted TextEncoder); return its path.

    A complete file with the same fingerprint is left untouched (logged as up to date); an incomplete one is
    resumed; a different or unreadable one is a UserError unless force=True, which rebuilds from scratch.
    batch_size (None: the encoder's default) is passed to `encoder.encode`; log=None silences messages.
    tokens: None (sentence vectors only), "auto" or L: also store token states (cache/tokens.py).
    """
    return build_cache_report(dataset, encoder, out_path, dtype=dtype, force=force, progress=progress,
                              batch_size=batch_size, chunk_size=chunk_size, tokens=tokens, log=log).path


def build_cache_report(dataset, encoder, out_path, *, dtype: str = "float32", force: bool = False,
                       progress: bool = False, batch_size: int | None = None, chunk_size: int = CHUNK_UNIQUE,
                       tokens: int | str | None = None, log=print) -> BuildReport:
    """`build_cache`, returning a BuildReport instead of the path."""
    log = log or (lambda *_: None)
    out = Path(out_path)
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r} is not supported; choose one of: {', '.join(DTYPES)}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if dataset.num_captions == 0:
        raise UserError(f"dataset {dataset.name!r} at {dataset.root} has no captions; nothing to encode")
    start = time.perf_counter()
    plan = UniquePlan.from_captions(dataset.captions)
    token_config = None if tokens is None else T.plan_tokens(encoder, plan.texts, tokens, log)
    fingerprint = cache_fingerprint(dataset, encoder.config(), dtype, T.fingerprint_part(token_config))
    done = _check_existing(out, fingerprint, force, token_config)
    if done is None:
        _create(out, dataset, plan, encoder, fingerprint, dtype=dtype, chunk_size=chunk_size,
                batch_size=batch_size or 0, tokens=token_config, log=log)
    elif done < 0:  # complete
        with R.EmbeddingCache.open(out) as cache:
            log(f"cache is up to date: {out} ({cache.num_captions} captions, dim {cache.dim}) "
                f"— use --force to rebuild")
            return BuildReport(out, up_to_date=True, num_captions=cache.num_captions, num_unique=cache.num_unique,
                               dim=cache.dim, dtype=cache.dtype, resumed_unique=cache.num_unique,
                               encoded_unique=0, seconds=time.perf_counter() - start, tokens=cache.token_config)
    else:
        _load_fitted_state(out, encoder, log)
    encoded, resumed = _encode_chunks(out, encoder, plan, progress)
    return BuildReport(out, up_to_date=False, num_captions=dataset.num_captions, num_unique=len(plan.texts),
                       dim=int(encoder.dim), dtype=dtype, resumed_unique=resumed, encoded_unique=encoded,
                       seconds=time.perf_counter() - start, tokens=token_config)


def _check_existing(out: Path, fingerprint: str, force: bool, tokens: dict | None = None) -> int | None:
    """None: build from scratch; -1: complete and current; k >= 0: incomplete, k chunks already done.
    tokens: the token config this build asks for (None: none), to say how a differing file differs."""
    if not out.exists():
        return None
    if force:
        out.unlink()
        return None
    with R.EmbeddingCache.open(out, require_complete=False) as cache:  # unreadable -> UserError naming --force
        reason = T.mismatch(cache.token_config, tokens)
        if reason:
            raise UserError(f"{out} cannot be reused: {reason}; use --force to rebuild it or --out to write elsewhere")
        if cache.fingerprint != fingerprint:
            raise UserError(
                f"{out} was built from other inputs (fingerprint {cache.fingerprint[:16]} in the file, "
                f"{fingerprint[:16]} for this dataset/encoder/dtype); use --force to overwrite it or --out "
                f"to write elsewhere")
        return -1 if cache.complete else cache.chunks_done


def _create(out, dataset, plan, encoder, fingerprint, *, dtype, chunk_size, batch_size, log, tokens=None) -> None:
    """Fit the encoder if it needs it, then write FILE.partial with everything but the vectors; rename."""
    if encoder.needs_fit:
        log(f"fitting {encoder.spec} on {dataset.num_captions} captions")
        encoder.fit(dataset.captions)
    check = _precision_check(encoder, plan.texts)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.unlink(missing_ok=True)
    with h5py.File(tmp, "w") as f:
        _write_strings(f, L.CAPTION_TEXT, dataset.captions)
        _write_array(f, L.CAPTION_IMAGE_INDEX, dataset.caption_image.astype(np.int64))
        _write_array(f, L.CAPTION_UNIQUE_INDEX, plan.index)
        _write_strings(f, L.IMAGE_ID, dataset.image_ids)
        _write_strings(f, L.IMAGE_PATH, [str(p) for p in dataset.image_paths])
        if dataset.test_ids is not None:
            _write_strings(f, L.TEST_ID, dataset.test_ids)
            _write_strings(f, L.TEST_TEXT, dataset.test_captions or [])
        if getattr(dataset, "labels", None) is not None:
            _write_array(f, L.IMAGE_LABEL, np.asarray(dataset.labels, np.int64))
            _write_strings(f, L.LABEL_NAME, dataset.label_names)
        _write_state(f.create_group(L.ENCODER_STATE), encoder.state())
        _create_embedding(f, dataset.num_captions, int(encoder.dim), dtype)
        if tokens is not None:
            T.create_datasets(f, len(plan.texts), tokens, int(encoder.dim))
        attrs = {
            L.ATTR_ENCODER: encoder.spec,
            L.ATTR_ENCODER_CONFIG: encoder_config_json(encoder.config()),
            L.ATTR_DIM: np.int64(encoder.dim),
            L.ATTR_DTYPE: dtype,
            L.ATTR_FINGERPRINT: fingerprint,
            L.ATTR_COMPLETE: np.bool_(False),
            L.ATTR_NUM_UNIQUE: np.int64(len(plan.texts)),
            L.ATTR_CHUNK_SIZE: np.int64(chunk_size),
            L.ATTR_NUM_CHUNKS: np.int64(-(-len(plan.texts) // chunk_size)),
            L.ATTR_CHUNKS_DONE: np.int64(0),
            L.ATTR_BATCH_SIZE: np.int64(batch_size),
            L.ATTR_FORMAT: np.int64(1),
            L.ATTR_DATASET_NAME: dataset.name,
            L.ATTR_DATASET_ROOT: str(Path(dataset.root).resolve()),
            L.ATTR_DATASET_LAYOUT: dataset.layout,
            L.ATTR_VERSIONS: json.dumps(library_versions(), sort_keys=True),
            L.ATTR_CREATED: _created(),
        }
        if getattr(dataset, "labels", None) is not None:
            attrs[L.ATTR_LABELS] = dataset.label_source
        if check:
            attrs[ATTR_PRECISION_CHECK] = json.dumps(check, sort_keys=True)
        for key, value in attrs.items():
            f.attrs[key] = value
    os.replace(tmp, out)


def _precision_check(encoder, texts: list[str]) -> dict | None:
    """A bfloat16 encoder's cosine to float32 on a spread sample of the captions (UserError below 0.9999)."""
    check = getattr(encoder, "precision_check", None)
    if check is None:
        return None
    step = max(1, -(-len(texts) // PRECISION_SAMPLE))
    return check(texts[::step])


def _write_strings(f: h5py.File, name: str, items) -> None:
    data = np.array(list(items), dtype=object) if len(items) else np.empty(0, dtype=object)
    f.create_dataset(name, data=data, dtype=h5py.string_dtype(), chunks=True if len(data) else None)


def _write_array(f: h5py.File, name: str, data: np.ndarray) -> None:
    f.create_dataset(name, data=data, chunks=True if data.size else None)


def _write_state(group: h5py.Group, state: dict) -> None:
    for key in sorted(state):
        value = np.asarray(state[key])
        if value.dtype.kind in "UO":
            group.create_dataset(key, data=value.astype(object), dtype=h5py.string_dtype())
        else:
            group.create_dataset(key, data=value)


def _create_embedding(f: h5py.File, n: int, dim: int, dtype: str) -> None:
    """[N, D] allocated in full now (zero-filled), so later writes never change the file's metadata."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    rows = int(np.clip(CHUNK_BYTES // (dim * np.dtype(dtype).itemsize), 1, n))
    f.create_dataset(L.CAPTION_EMBEDDING, shape=(n, dim), dtype=dtype, chunks=(rows, dim), dcpl=dcpl)


def _load_fitted_state(out: Path, encoder, log) -> None:
    """Resume: a fitted encoder takes the state stored in the file instead of being fitted again."""
    with R.EmbeddingCache.open(out, require_complete=False) as cache:
        log(f"resuming {out}: {cache.chunks_done} of {cache.num_chunks} chunks already encoded")
        if encoder.needs_fit:
            encoder.load_state(cache.encoder_state())
        if int(encoder.dim) != cache.dim:
            raise UserError(f"{out}: encoder {encoder.spec} gives dim {encoder.dim} but the file has dim "
                            f"{cache.dim}; use --force to rebuild it")


def _encode_chunks(out: Path, encoder, plan: UniquePlan, progress: bool) -> tuple[int, int]:
    """Encode the unfinished chunks; return (distinct captions encoded now, distinct ones done before)."""
    from tqdm import tqdm

    by_unique = np.argsort(plan.index, kind="stable")  # caption rows grouped by their unique row
    sorted_unique = plan.index[by_unique]
    with R.open_hdf5(out, "r+", rdcc_nbytes=0) as f:  # no chunk cache: scattered rows go straight to disk
        size, total = int(f.attrs[L.ATTR_CHUNK_SIZE]), len(plan.texts)
        first = int(f.attrs[L.ATTR_CHUNKS_DONE])
        batch = {"batch_size": int(f.attrs[L.ATTR_BATCH_SIZE])} if f.attrs[L.ATTR_BATCH_SIZE] else {}
        embedding = f[L.CAPTION_EMBEDDING]
        token_length = (T.file_config(f) or {}).get("length")  # None: a sentence-only cache
        bar = tqdm(total=total, initial=min(first * size, total), unit="cap", desc="encoding unique captions",
                   disable=not progress, dynamic_ncols=True, file=sys.stderr)
        for k in range(first, -(-total // size)):
            lo, hi = k * size, min((k + 1) * size, total)
            vectors, token_rows = _encode_checked(encoder, plan.texts[lo:hi], lo, batch, token_length)  # [hi-lo, D]
            if token_rows is not None:
                T.write_chunk(f, lo, *token_rows)
            a, b = np.searchsorted(sorted_unique, [lo, hi])
            rows = np.sort(by_unique[a:b])  # caption rows whose text is in this chunk (HDF5 wants them sorted)
            for i in range(0, len(rows), SCATTER_ROWS):
                part = rows[i : i + SCATTER_ROWS]
                embedding[part] = vectors[plan.index[part] - lo].astype(embedding.dtype)
            _test_kill_hook("rows", k)
            f.flush()  # the vectors are on disk before progress says so
            f.attrs.modify(L.ATTR_CHUNKS_DONE, np.int64(k + 1))
            f.flush()
            _test_kill_hook("chunk", k)
            bar.update(hi - lo)
        bar.close()
        f.attrs.modify(L.ATTR_COMPLETE, np.bool_(True))
    resumed = min(first * size, total)
    return total - resumed, resumed


def _encode_checked(encoder, texts: list[str], offset: int, batch: dict, token_length: int | None = None):
    """(vectors float32 [n, D], None) or, with token_length, (vectors, (states f16 [n, L, D], lengths, ids)),
    checked for shape and finiteness."""
    token_rows = None
    if token_length is None:
        vectors = np.asarray(encoder.encode(texts, **batch))
    else:  # one forward pass gives both
        vectors, *rows = encoder.encode_tokens(texts, token_length, **batch)
        token_rows = T.check_chunk(encoder.spec, texts, offset, token_length, int(encoder.dim), *rows)
        vectors = np.asarray(vectors)
    if vectors.shape != (len(texts), int(encoder.dim)):
        raise RuntimeError(f"encoder {encoder.spec} returned shape {vectors.shape} for {len(texts)} texts, "
                           f"expected ({len(texts)}, {encoder.dim})")
    if not np.isfinite(vectors).all():
        bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise RuntimeError(f"encoder {encoder.spec} returned a non-finite vector for {texts[bad]!r} "
                           f"(unique caption {offset + bad})")
    return vectors.astype(np.float32, copy=False), token_rows


def _test_kill_hook(stage: str, chunk: int) -> None:
    if os.environ.get(KILL_ENV) == f"{stage}:{chunk}":
        os.kill(os.getpid(), signal.SIGKILL)


def library_versions() -> dict:
    """Versions that can change the vectors; tensorflow via metadata, so it is not imported for this."""
    from importlib import metadata

    versions = {"python": platform.python_version(), "numpy": np.__version__, "h5py": h5py.__version__}
    for name in ("tensorflow", "transformers"):
        if name == "tensorflow" or name in sys.modules:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                pass
    return versions


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible builds: a fixed time gives identical bytes
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return when.replace(microsecond=0).isoformat()
