"""Shard files of a distributed cache build (cache/ray_pool.py): where they live, how they are written
atomically, which ones are finished, and how the single writer reads them back in chunk order.

    FILE.h5.shards/
        plan.json           {key, num_unique, chunk_size, shard_chunks}: a rerun reuses this cut
        shard-00003.npy     float32 [rows, D]: the vectors of distinct captions [lo, hi) in the unique order
        shard-00003.tokens.npz  only with --tokens: states float16 [rows, L, D], lengths int32, ids int32
        shard-00003.done    JSON {key, shard, lo, hi, dim, bytes, sha256 (+ tokens_bytes, tokens_sha256)}: written
                            after the .npy (and .tokens.npz) are in place
        shard-00003.npy.tmp-<host>-<pid>   a shard being written (or left by a worker that died)

A shard is `shard_chunks` whole chunks of the cache (cache/writer.py CHUNK_UNIQUE distinct captions each), so
every chunk is encoded as the single-process build encodes it: the same texts in one `encoder.encode` call,
length-sorted batches inside. A shard counts as finished only when its done marker names this build's key
(the cache fingerprint + a hash of the fitted encoder) and its .npy has the recorded size; the merge also
checks the sha256. Temporary files are never read: a worker killed mid-shard leaves only a tmp file.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.errors import UserError

SHARD_CHUNKS = 1  # chunks per shard: 2048 distinct captions, ~5-10 s of MiniLM on one core. Workers take shards
#                   as they finish, so small shards balance (4096-caption shards left one of 2 workers idle for
#                   half the run on 4 784 captions); per-shard overhead (a task, a 3 MB file, its sha256) is ~10 ms
TMP_MARK = ".tmp-"


def shard_dir(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + ".shards")


def build_key(fingerprint: str, encoder) -> str:
    """Fingerprint of the inputs + sha256 of the fitted encoder's config and state: shards made under another
    fit (or another dataset/encoder/dtype) are never mixed in."""
    h = hashlib.sha256(fingerprint.encode())
    h.update(json.dumps(encoder.config(), sort_keys=True).encode())
    for name, value in sorted(encoder.state().items()):
        value = np.asarray(value)
        if value.dtype.kind in "UOS":  # strings (tfidf vocabulary): length-prefixed UTF-8
            blobs = [str(v).encode("utf-8") for v in value.ravel()]
            value = np.array([len(b) for b in blobs], "<i8").tobytes() + b"".join(blobs)
        else:
            value = np.ascontiguousarray(value).tobytes() + str((value.dtype.str, value.shape)).encode()
        h.update(name.encode() + b"\0" + value)
    return h.hexdigest()


@dataclass(frozen=True)
class ShardLayout:
    """Distinct captions [0, U) cut into chunks of `chunk_size` and shards of `shard_chunks` chunks."""

    num_unique: int
    chunk_size: int
    shard_chunks: int

    @property
    def num_chunks(self) -> int:
        return -(-self.num_unique // self.chunk_size)

    @property
    def num_shards(self) -> int:
        return -(-self.num_chunks // self.shard_chunks)

    def chunk_range(self, k: int) -> tuple[int, int]:
        return k * self.chunk_size, min((k + 1) * self.chunk_size, self.num_unique)

    def shard_range(self, s: int) -> tuple[int, int]:
        return s * self.shard_chunks * self.chunk_size, min((s + 1) * self.shard_chunks * self.chunk_size,
                                                             self.num_unique)

    def shard_size(self, s: int) -> int:
        lo, hi = self.shard_range(s)
        return hi - lo

    def shard_chunk_ranges(self, s: int) -> list[tuple[int, int]]:
        """[(lo, hi)] of the chunks in shard s, in distinct-caption rows."""
        first = s * self.shard_chunks
        return [self.chunk_range(k) for k in range(first, min(first + self.shard_chunks, self.num_chunks))]

    def shards_from_chunk(self, chunk: int) -> range:
        """Shards holding chunk `chunk` or a later one (what a merge resumed at that chunk still needs)."""
        return range(chunk // self.shard_chunks, self.num_shards)


class ShardStore:
    """The FILE.h5.shards/ folder of one build (identified by `key`)."""

    def __init__(self, out: Path, key: str, layout: ShardLayout):
        self.out, self.dir, self.key, self.layout = Path(out), shard_dir(out), key, layout

    @classmethod
    def open(cls, out: Path, key: str, num_unique: int, chunk_size: int, shard_chunks: int, log) -> "ShardStore":
        """The store for this build; shards of another build are discarded, a rerun keeps the recorded cut."""
        folder = shard_dir(out)
        plan = _read_json(folder / "plan.json")
        if plan and (plan.get("key"), plan.get("num_unique"), plan.get("chunk_size")) == (key, num_unique, chunk_size):
            shard_chunks = int(plan["shard_chunks"])
        elif folder.exists():
            log(f"discarding {folder}: its shards belong to another build of {out.name}")
            shutil.rmtree(folder)
        store = cls(out, key, ShardLayout(num_unique, chunk_size, shard_chunks))
        if not plan or not folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(folder / "plan.json", json.dumps(
                {"key": key, "num_unique": num_unique, "chunk_size": chunk_size, "shard_chunks": shard_chunks},
                sort_keys=True).encode())
        return store

    def npy(self, s: int) -> Path:
        return self.dir / f"shard-{s:05d}.npy"

    def marker(self, s: int) -> Path:
        return self.dir / f"shard-{s:05d}.done"

    def tokens_npz(self, s: int) -> Path:
        return self.dir / f"shard-{s:05d}.tokens.npz"

    def is_done(self, s: int) -> bool:
        done = _read_json(self.marker(s))
        lo, hi = self.layout.shard_range(s)
        tokens_ok = "tokens_bytes" not in done or (self.tokens_npz(s).is_file()
                                                    and self.tokens_npz(s).stat().st_size == done["tokens_bytes"])
        return (bool(done) and done.get("key") == self.key and (done.get("lo"), done.get("hi")) == (lo, hi)
                and self.npy(s).is_file() and self.npy(s).stat().st_size == done.get("bytes") and tokens_ok)

    def write(self, s: int, vectors: np.ndarray, die_halfway: bool = False, tokens: tuple | None = None) -> None:
        """Write shard s atomically: tmp file, fsync, rename to .npy (and tokens (states, lengths, ids) to
        .tokens.npz the same way), then the done marker (also atomic)."""
        lo, hi = self.layout.shard_range(s)
        if vectors.shape[0] != hi - lo or vectors.dtype != np.float32:
            raise RuntimeError(f"shard {s}: got {vectors.shape} {vectors.dtype}, expected ({hi - lo}, D) float32")
        if not self.dir.is_dir():
            raise UserError(f"shard folder {self.dir} is not visible on worker host {socket.gethostname()}: on a Ray "
                            "cluster the cache directory must be on a filesystem every node mounts at the same path")
        tmp = self.npy(s).with_name(f"{self.npy(s).name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}")
        with open(tmp, "wb") as f:
            if die_halfway:  # test hook (ray_pool.WORKER_DIE_ENV): a worker killed while writing its shard
                np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(vectors))
                f.write(np.zeros_like(vectors[: len(vectors) // 2]).tobytes())
                f.flush()
                os._exit(1)
            np.save(f, vectors)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.npy(s))
        data = self.npy(s).read_bytes()
        record = {"key": self.key, "shard": s, "lo": lo, "hi": hi, "dim": int(vectors.shape[1]), "bytes": len(data),
                  "sha256": hashlib.sha256(data).hexdigest()}
        if tokens is not None:
            import io

            buffer = io.BytesIO()
            np.savez(buffer, states=tokens[0], lengths=tokens[1], ids=tokens[2])
            blob = buffer.getvalue()
            _write_atomic(self.tokens_npz(s), blob)
            record.update(tokens_bytes=len(blob), tokens_sha256=hashlib.sha256(blob).hexdigest())
        _write_atomic(self.marker(s), json.dumps(record, sort_keys=True).encode())

    def read(self, s: int, dim: int) -> np.ndarray:
        """float32 [hi - lo, dim] of a finished shard, checked against its marker's size and sha256."""
        done = _read_json(self.marker(s))
        data = self.npy(s).read_bytes() if self.is_done(s) else b""
        if not data or hashlib.sha256(data).hexdigest() != done.get("sha256"):
            raise UserError(f"{self.npy(s)} is missing or damaged (size/sha256 differ from its done marker); delete "
                            f"{self.marker(s)} and re-run the same command to encode that shard again")
        import io

        vectors = np.load(io.BytesIO(data), allow_pickle=False)
        lo, hi = self.layout.shard_range(s)
        if vectors.shape != (hi - lo, dim) or vectors.dtype != np.float32:
            raise UserError(f"{self.npy(s)} holds {vectors.shape} {vectors.dtype}, expected ({hi - lo}, {dim}) "
                            f"float32; delete {self.marker(s)} and re-run to encode it again")
        return vectors

    def read_tokens(self, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(states float16 [rows, L, D], lengths int32 [rows], ids int32 [rows, L]) of a finished shard, checked
        against its marker's sha256."""
        done = _read_json(self.marker(s))
        data = self.tokens_npz(s).read_bytes() if self.is_done(s) and "tokens_sha256" in done else b""
        if not data or hashlib.sha256(data).hexdigest() != done.get("tokens_sha256"):
            raise UserError(f"{self.tokens_npz(s)} is missing or damaged (size/sha256 differ from its done marker); "
                            f"delete {self.marker(s)} and re-run the same command to encode that shard again")
        import io

        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return z["states"], z["lengths"], z["ids"]

    def sweep_partials(self) -> int:
        """Delete temporary shard files (from workers or drivers that died mid-write); return how many."""
        partials = [p for p in self.dir.glob(f"*{TMP_MARK}*")] if self.dir.is_dir() else []
        for p in partials:
            p.unlink(missing_ok=True)
        return len(partials)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class ShardVectors:
    """Stands in for the encoder in `cache.writer._encode_chunks`, which asks for each chunk's vectors in chunk
    order from `first_chunk` on: it answers from the finished shard files (one shard in memory at a time), so
    the merge reuses the writer's own scatter/flush/progress code and writes the same file."""

    def __init__(self, store: ShardStore, spec: str, dim: int, first_chunk: int):
        self.store, self.spec, self.dim, self.next_chunk = store, spec, dim, first_chunk
        self._shard, self._vectors, self._tokens = -1, None, None

    def _next(self, texts, tokens: bool) -> tuple[slice, bool]:
        layout, k = self.store.layout, self.next_chunk
        lo, hi = layout.chunk_range(k)
        if len(texts) != hi - lo:
            raise RuntimeError(f"merge asked for {len(texts)} vectors at chunk {k}, which holds {hi - lo}")
        s = k // layout.shard_chunks
        if s != self._shard:
            self._shard, self._vectors = s, self.store.read(s, self.dim)
            self._tokens = self.store.read_tokens(s) if tokens else None
        base = layout.shard_range(s)[0]
        self.next_chunk += 1
        return slice(lo - base, hi - base)

    def encode(self, texts, **_batch) -> np.ndarray:
        rows = self._next(texts, tokens=False)  # loads the shard first
        return self._vectors[rows]

    def encode_tokens(self, texts, length: int, **_batch):
        """(vectors, states, lengths, ids) of the next chunk, as HFEncoder.encode_tokens gave them on a worker."""
        rows = self._next(texts, tokens=True)
        states, lengths, ids = (part[rows] for part in self._tokens)
        if states.shape[1] != length:
            raise UserError(f"{self.store.dir}: shard {self._shard} holds token states of length {states.shape[1]}, "
                            f"the cache wants {length}; delete that folder and re-run the same command")
        return self._vectors[rows], states, lengths, ids


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
