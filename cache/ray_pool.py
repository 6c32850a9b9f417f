"""Distributed precompute on Ray: many workers, one HDF5 cache, the same file a single-process build writes.

    python precompute_embeddings.py --data data/cub --encoder minilm --workers 8          # a local Ray
    python precompute_embeddings.py --data /shared/coco --ray-address 10.0.0.5:6379      # an existing cluster

How a build runs (library entry point: `build_cache_ray`):
1. The driver checks the cache as cache/writer.py does (up to date -> nothing to do; other inputs -> --force),
   then writes FILE.h5 with everything but the vectors through the writer's own `_create`. A fitted encoder
   (tfidf) is fitted there, once, on the driver; a rerun loads the fitted state back from FILE.h5.
2. The distinct captions (the writer's unique order) are cut into contiguous shards of whole chunks
   (cache/shards.py). Each Ray actor builds the encoder once from (config, fitted state) and encodes shards chunk
   by chunk, exactly as the single-process loop does, then writes its shard atomically (tmp, fsync, rename,
   done marker) into FILE.h5.shards/. A rerun encodes only the shards without a valid done marker.
3. A worker that dies mid-shard (killed, out of memory, node lost) leaves at most a tmp file, which is never
   read; the shard goes back to the queue for a fresh worker (up to MAX_ATTEMPTS times).
4. The driver alone merges: the writer's `_encode_chunks` scatters every chunk into FILE.h5 and advances
   `chunks_done`, reading vectors from the shards instead of an encoder, so layout, attributes, fingerprint and
   resumability are the writer's. Then FILE.h5.shards/ is removed.

Ray is optional (requirements-ray.txt). A local Ray binds to 127.0.0.1 only, runs no dashboard, reports no
usage stats and writes no auth token; its session folder is a private temp folder removed at shutdown.
On a cluster every node needs this repository, its virtual environment and the cache directory at the same
paths (a shared filesystem): workers import the code from the driver's sys.path and write shards next to FILE.h5.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache import layout as L
from cache import tokens as T
from cache import writer as W
from cache.reader import open_hdf5
from cache.fingerprint import cache_fingerprint
from cache.shards import SHARD_CHUNKS, ShardLayout, ShardStore, ShardVectors, build_key
from tools.errors import UserError

RAY_PIP = "pip install -r requirements-ray.txt (ray==2.60.0 and its pinned dependencies)"
LOCAL_RAY_ENV = {  # set before `import ray` for a Ray this process starts on this host (docs/distributed.md)
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node address = 127.0.0.1, never the host's external address
    "RAY_AUTH_MODE": "disabled",  # loopback only, so no token; none is written to ~/.ray
    "RAY_USAGE_STATS_ENABLED": "0",  # offline: no usage report
}
FORWARDED_ENV = ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME",
                 "TFHUB_CACHE_DIR", "CUDA_VISIBLE_DEVICES")  # settings that can change vectors or downloads
OBJECT_STORE_BYTES = 256 << 20  # local Ray: shards carry only caption texts through the object store
MAX_ATTEMPTS = 3  # tries per shard when its worker dies
KILL_ENV = "T2I_RAY_TEST_KILL"  # test-only: "shards:K" = the driver SIGKILLs itself once K shards are done
WORKER_DIE_ENV = "T2I_RAY_TEST_WORKER_DIE"  # test-only: "S" = the first worker to write shard S dies halfway


@dataclass
class RayBuildReport(W.BuildReport):
    """BuildReport plus what the pool did."""

    workers: int = 0
    num_shards: int = 0
    shards_before: int = 0  # shards found finished (a resumed run)
    shards_encoded: int = 0  # shards encoded by this run's workers
    retried: int = 0  # shard attempts lost to a dying worker and run again
    partials_removed: int = 0  # tmp shard files of dead workers/drivers deleted, never merged
    encode_s: float = 0.0  # wall time of the pool (workers starting + encoding)
    merge_s: float = 0.0  # the single writer's merge into FILE.h5

    def pool_summary(self) -> str:
        rate = self.encoded_unique / max(self.encode_s, 1e-9)
        return (f"ray: {self.workers} workers, {self.num_shards} shards ({self.shards_before} already done, "
                f"{self.shards_encoded} encoded, {self.retried} retried), encoding {self.encode_s:.1f} s "
                f"({rate:.0f} distinct captions/s across workers), merge {self.merge_s:.2f} s "
                f"({1e6 * self.merge_s / self.num_captions:.1f} us/caption)")


def shard_chunks_from_flags(workers, address, worker_cpus, shard_size) -> int | None:
    """Chunks per shard for a distributed build (None: not distributed); bad flags and a missing Ray are
    one-line UserErrors, raised before any data or model is loaded."""
    for flag, value in (("workers", workers), ("worker-cpus", worker_cpus), ("shard-size", shard_size)):
        if value is not None and value <= 0:
            raise UserError(f"--{flag} {value} must be a positive integer")
    chunk = W.CHUNK_UNIQUE
    if shard_size is not None and shard_size % chunk:
        raise UserError(f"--shard-size {shard_size} must be a multiple of {chunk} (whole cache chunks), "
                        f"e.g. {max(1, round(shard_size / chunk)) * chunk}")
    if not (workers or address):
        return None
    check_ray_installed()
    if address:
        _check_reachable(address)
    return shard_size // chunk if shard_size else SHARD_CHUNKS


def check_ray_installed() -> None:
    """One-line UserError naming the pip install when Ray is missing (before any data or model is loaded)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UserError(f"--workers/--ray-address run on Ray, which is not installed: {RAY_PIP}")


def is_loopback(address: str | None) -> bool:
    """A local Ray (None) or an address on this host's loopback ("127.0.0.1:6379", "localhost:6379")."""
    host = (address or "127.0.0.1").removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _check_reachable(address: str) -> None:
    """Fail in one line now rather than after Ray's minutes of connection retries."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise UserError(f"--ray-address {address}: no Ray head answers there ({e}); give HOST:PORT of a running "
                        "head (ray start --head ... prints it; ray status checks it)") from None


def import_ray(local: bool):
    """`ray`, imported with LOCAL_RAY_ENV set first when the cluster is on this host (local=True)."""
    if local:
        if "ray" in sys.modules and sys.modules["ray"]._private.ray_constants.ENABLE_RAY_CLUSTER:
            raise RuntimeError("ray was imported before cache.ray_pool could set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0; "
                               "a local Ray would bind the host's external address")
        for key, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    check_ray_installed()
    import ray

    return ray


@contextmanager
def ray_session(num_cpus: int | None = None, address: str | None = None):
    """Yield `ray`, connected: to `address`, or to a new local Ray with `num_cpus` on 127.0.0.1. A session the
    caller already holds (ray.is_initialized()) is used as it is and left running."""
    ray = import_ray(local=is_loopback(address))  # 127.0.0.1 stays 127.0.0.1 (Ray would swap in the host's IP)
    if ray.is_initialized():
        yield ray
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    temp = None
    try:
        if address:
            _check_reachable(address)
            try:
                ray.init(address=address, **quiet)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise UserError(f"--ray-address {address}: cannot connect to a Ray cluster there "
                                f"({' '.join(str(e).split())[:200]}); check the address (ray status)") from None
        else:
            temp = tempfile.mkdtemp(prefix="t2i-ray-")  # session logs and sockets; removed below
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=OBJECT_STORE_BYTES, _temp_dir=temp, **quiet)
        yield ray
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


class ShardWorker:
    """A Ray actor (wrapped with ray.remote at run time): one encoder, built once, encoding whole shards."""

    def __init__(self, config: dict, state: dict, out: str, key: str, layout: tuple, batch_size: int,
                 token_length: int | None = None):
        from embeddings.registry import encoder_from_config

        self.encoder = encoder_from_config(config, state)
        self.store = ShardStore(Path(out), key, ShardLayout(*layout))
        self.batch = {"batch_size": batch_size} if batch_size else {}
        self.token_length = token_length  # None: sentence vectors only

    def encode_shard(self, s: int, texts: list[str]) -> tuple[int, int]:
        """Encode shard s (texts = its distinct captions) chunk by chunk and write it; return (s, captions)."""
        layout = self.store.layout
        base = layout.shard_range(s)[0]
        parts = [W._encode_checked(self.encoder, texts[lo - base : hi - base], lo, self.batch, self.token_length)
                 for lo, hi in layout.shard_chunk_ranges(s)]  # [(vectors [hi-lo, D], token rows or None)]
        tokens = None
        if self.token_length is not None:  # (states [rows, L, D] float16, lengths [rows], ids [rows, L])
            tokens = tuple(np.concatenate([p[1][i] for p in parts]) for i in range(3))
        self.store.write(s, np.concatenate([p[0] for p in parts]), die_halfway=self._die_here(s), tokens=tokens)
        return s, len(texts)

    def _die_here(self, s: int) -> bool:
        if os.environ.get(WORKER_DIE_ENV) != str(s):
            return False
        flag = self.store.dir / f"died-on-{s}"  # only the first attempt dies
        if flag.exists():
            return False
        flag.touch()
        return True


def build_cache_ray(dataset, encoder, out_path, *, workers: int | None = None, address: str | None = None,
                    worker_cpus: int = 1, dtype: str = "float32", force: bool = False, progress: bool = False,
                    batch_size: int | None = None, chunk_size: int = W.CHUNK_UNIQUE,
                    shard_chunks: int = SHARD_CHUNKS, tokens: int | str | None = None, log=print) -> RayBuildReport:
    """`cache.writer.build_cache_report`, with the encoding spread over Ray actors (module docstring).

    workers: actors to run (default: one per `worker_cpus` CPUs of the cluster); address: an existing Ray
    cluster (None: start a local one with workers x worker_cpus CPUs, unless this process already holds one).
    """
    log = log or (lambda *_: None)
    out, start = Path(out_path), time.perf_counter()
    if dtype not in W.DTYPES:
        raise UserError(f"--dtype {dtype!r} is not supported; choose one of: {', '.join(W.DTYPES)}")
    if dataset.num_captions == 0:
        raise UserError(f"dataset {dataset.name!r} at {dataset.root} has no captions; nothing to encode")
    plan = W.UniquePlan.from_captions(dataset.captions)
    token_config = None if tokens is None else T.plan_tokens(encoder, plan.texts, tokens, log)
    fingerprint = cache_fingerprint(dataset, encoder.config(), dtype, T.fingerprint_part(token_config))
    done = W._check_existing(out, fingerprint, force, token_config)  # None: new/--force, -1: complete, k: k merged
    if done is None or done < 0:  # shards without their incomplete FILE.h5 are stale (or were merged already)
        ShardStore(out, "", ShardLayout(0, 1, 1)).remove()
    if done is not None and done < 0:
        report = W.build_cache_report(dataset, encoder, out, dtype=dtype, tokens=tokens, log=None)
        log(f"cache is up to date: {out} ({report.num_captions} captions, dim {report.dim}) — use --force to rebuild")
        return RayBuildReport(**vars(report))
    if done is None:
        W._create(out, dataset, plan, encoder, fingerprint, dtype=dtype, chunk_size=chunk_size,
                  batch_size=batch_size or 0, tokens=token_config, log=log)
        first_chunk = 0
    else:
        W._load_fitted_state(out, encoder, log)
        first_chunk = done
    with open_hdf5(out, "r") as f:  # a resumed file keeps the chunk and batch size it was started with
        chunk_size, batch_size = int(f.attrs[L.ATTR_CHUNK_SIZE]), int(f.attrs[L.ATTR_BATCH_SIZE])
        token_length = (T.file_config(f) or {}).get("length")
    store = ShardStore.open(out, build_key(fingerprint, encoder), len(plan.texts), chunk_size, shard_chunks, log)
    needed = store.layout.shards_from_chunk(first_chunk)
    pending = [s for s in needed if not store.is_done(s)]
    if len(pending) < len(needed):
        log(f"resuming {store.dir}: {len(needed) - len(pending)} of {len(needed)} shards already encoded")
    report = RayBuildReport(out, False, dataset.num_captions, len(plan.texts), int(encoder.dim), dtype,
                            resumed_unique=0, encoded_unique=0, seconds=0.0, num_shards=store.layout.num_shards,
                            shards_before=len(needed) - len(pending), tokens=token_config)
    if pending:
        t0 = time.perf_counter()
        _run_pool(report, store, plan.texts, encoder, pending, workers, address, worker_cpus, batch_size, progress,
                  log, token_length)
        report.encode_s = time.perf_counter() - t0
    report.partials_removed = store.sweep_partials()
    t0 = time.perf_counter()
    W._encode_chunks(out, ShardVectors(store, encoder.spec, int(encoder.dim), first_chunk), plan, progress=False)
    report.merge_s = time.perf_counter() - t0
    store.remove()
    report.encoded_unique = sum(store.layout.shard_size(s) for s in pending)
    report.resumed_unique = len(plan.texts) - report.encoded_unique
    report.seconds = time.perf_counter() - start
    return report


def _run_pool(report, store, texts, encoder, pending, workers, address, worker_cpus, batch_size, progress, log,
              token_length=None):
    """Encode the pending shards on Ray actors, a fresh actor replacing any that dies; fills report's counts."""
    from tqdm import tqdm

    with ray_session(None if address else (workers or 1) * worker_cpus, address) as ray:
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // worker_cpus))  # actors that fit at once
        if workers and workers > slots:
            log(f"the Ray cluster has room for {slots} workers of {worker_cpus} CPU(s); running {slots}, not {workers}")
        workers = min(workers or slots, slots, len(pending))
        report.workers = workers
        env = {k: os.environ[k] for k in FORWARDED_ENV + (WORKER_DIE_ENV,) if k in os.environ}
        env.update(TF_NUM_INTRAOP_THREADS=str(worker_cpus), TF_NUM_INTEROP_THREADS=str(worker_cpus),
                   OMP_NUM_THREADS=str(worker_cpus))
        actor = ray.remote(ShardWorker).options(num_cpus=worker_cpus, max_restarts=0, max_task_retries=0,
                                                runtime_env={"env_vars": env})
        args = (encoder.config(), encoder.state(), str(store.out), store.key,
                (store.layout.num_unique, store.layout.chunk_size, store.layout.shard_chunks), batch_size, token_length)

        def new_actor():
            return actor.remote(*args)

        pool = [new_actor() for _ in range(workers)]
        queue, attempts, running = deque(pending), Counter(), {}  # running: task ref -> (actor slot, shard)
        total = sum(store.layout.shard_size(s) for s in pending)
        bar = tqdm(total=total, unit="cap", desc=f"encoding on {workers} Ray workers", disable=not progress,
                   dynamic_ncols=True, file=sys.stderr)

        def submit(slot: int) -> None:
            if queue:
                s = queue.popleft()
                lo, hi = store.layout.shard_range(s)
                running[pool[slot].encode_shard.remote(s, texts[lo:hi])] = (slot, s)

        try:
            for slot in range(workers):
                submit(slot)
            while running:
                (ref,), _ = ray.wait(list(running), num_returns=1)
                slot, s = running.pop(ref)
                try:
                    _, n = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    _worker_died(e, s, attempts, report, slot, log)
                    pool[slot] = new_actor()
                    queue.appendleft(s)
                except ray.exceptions.RayTaskError as e:  # the encoder raised: the same input fails again
                    raise (e.cause if isinstance(e.cause, UserError) else e) from None
                else:
                    report.shards_encoded += 1
                    bar.update(n)
                    bar.set_postfix_str(f"shards {report.shards_before + report.shards_encoded}/{report.num_shards}")
                    if os.environ.get(KILL_ENV) == f"shards:{report.shards_encoded}":
                        os.kill(os.getpid(), signal.SIGKILL)
                submit(slot)
        finally:
            bar.close()
            for a in pool:  # free the CPUs of a session the caller keeps
                ray.kill(a)


def _worker_died(error, s: int, attempts: Counter, report: RayBuildReport, slot: int, log) -> None:
    first = " ".join(str(error).split())[:300]
    if getattr(error, "actor_init_failed", False):
        raise UserError(f"Ray worker could not start (building the encoder failed): {first}")
    attempts[s] += 1
    report.retried += 1
    if attempts[s] >= MAX_ATTEMPTS:
        raise UserError(f"shard {s} lost its worker {attempts[s]} times (last: {first}); finished shards are kept, "
                        "re-run the same command to resume")
    log(f"worker {slot} died on shard {s}; retrying it on a fresh worker (attempt {attempts[s] + 1} of {MAX_ATTEMPTS})")
