"""Distributed precompute on a real local Ray (2 CPUs): the cache equals the single-process one, a killed driver
resumes with only the missing shards, a worker that dies mid-shard is retried and its partial shard never merged.

CLI runs and the dying worker use glove (no TensorFlow, so workers start fast) on 10 522 distinct captions =
6 shards of 2048; the fitted-encoder path uses tfidf in-process with small chunks. One Ray session (module fixture) serves the
in-process test and the `--ray-address` runs; the `--workers 2` run starts and stops its own.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

if importlib.util.find_spec("ray") is None:  # not importorskip: importing ray first would defeat its loopback setting
    pytest.skip("Ray is optional: pip install -r requirements-ray.txt", allow_module_level=True)

from cache import layout as L  # noqa: E402
from cache.shards import ShardLayout, ShardStore, shard_dir  # noqa: E402
from fixtures_datasets import make_manifest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
COLORS = ["red", "yellow", "white", "pink", "purple", "orange", "blue", "green"]
SHAPES = ["round", "pointed", "ruffled", "long", "wide", "thin"]
SIZES = ["large", "small", "tiny", "tall", "short", "drooping"]
SHARDS = 6  # 10 522 distinct captions / 2048 per shard, rounded up


def caption_rows(images: int, per_image: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(images):
        captions = []
        for _ in range(per_image):
            (c1, c2), shape, size = rng.choice(COLORS, 2), rng.choice(SHAPES), rng.choice(SIZES)
            captions.append(f"a {size} {c1} flower with {int(rng.integers(3, 13))} {shape} petals and a {c2} center")
        rows.append({"image_id": f"{i:05d}", "image_path": f"images/{i:05d}.png", "captions": captions})
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset root, glove file): 280 images x 50 captions, 10 522 distinct; a vector for every word."""
    root = tmp_path_factory.mktemp("ray-data")
    rows = caption_rows(280, 50)
    make_manifest(root / "ds", rows)
    words = sorted({w for r in rows for c in r["captions"] for w in c.split()})
    glove = root / "glove.tiny.txt"
    glove.write_text("".join(f"{w} {i / 7:.3f} {len(w) / 3:.3f} {np.sin(i):.4f} -1.5\n" for i, w in enumerate(words)))
    return root / "ds", glove


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", **env}
    return subprocess.run([sys.executable, "precompute_embeddings.py", "--no-progress", *args], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The single-process cache, built by the CLI as a user would."""
    root, glove = data
    out = tmp_path_factory.mktemp("ray-ref") / "single.h5"
    run = run_cli("--data", str(root), "--encoder", f"glove:{glove}", "--out", str(out))
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray (2 CPUs, 127.0.0.1) for this module: in-process builds use it, CLI runs connect to it."""
    from cache.ray_pool import ray_session

    with ray_session(num_cpus=2) as ray:
        yield ray


def assert_same_cache(a: Path, b: Path) -> str:
    """Same texts, order, indices, image lists, fitted state and every attribute; vectors equal to float
    tolerance. Returns a one-line description of what was compared."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert dict(fa.attrs) == dict(fb.attrs)
        names, names_b = [], []
        fa.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        fb.visititems(lambda name, obj: names_b.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert names == names_b
        for name in names:
            if name == L.CAPTION_EMBEDDING:
                np.testing.assert_allclose(fa[name][()], fb[name][()], rtol=0, atol=1e-6)
            else:
                np.testing.assert_array_equal(fa[name][()], fb[name][()])
        assert fa.attrs[L.ATTR_COMPLETE] and len(fa[L.CAPTION_TEXT]) > 0
        return f"{len(fa[L.CAPTION_TEXT])} captions, {len(names)} datasets, {len(fa.attrs)} attributes equal"


def ray_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("t2i-ray-*")}


def stray_ray_processes(known: set[str]) -> list[str]:
    """Command lines of live processes of a Ray session started by cache.ray_pool outside the `known` folders."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "t2i-ray-" in cmd and not any(d in cmd for d in known):
            found.append(cmd[:120])
    return found


def test_workers_2_equals_single_process_and_leaves_nothing(data, reference, tmp_path):
    root, glove = data
    out = tmp_path / "ray.h5"
    dirs_before, token = ray_dirs(), Path.home() / ".ray" / "auth_token"
    token_before = token.exists()
    run = run_cli("--data", str(root), "--encoder", f"glove:{glove}", "--out", str(out), "--workers", "2",
                  "--shard-size", "2048")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-2].startswith(f"wrote {out}: 14000 captions (10522 unique), dim 4 float32")
    assert lines[-1].startswith(f"ray: 2 workers, {SHARDS} shards (0 already done, {SHARDS} encoded, 0 retried)")
    print(assert_same_cache(out, reference))
    assert not shard_dir(out).exists()
    assert ray_dirs() == dirs_before and stray_ray_processes(dirs_before) == []  # Ray shut down, folder removed
    assert token.exists() == token_before  # no auth token written


def test_listens_on_loopback_only(ray_cluster):
    """Every listening TCP socket of the session's processes is on 127.0.0.1 (no dashboard, no external bind)."""
    inodes = set()
    for cmd_pid in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (cmd_pid / "cmdline").read_bytes()
            if b"t2i-ray-" not in cmd and int(cmd_pid.name) != os.getpid():
                continue
            for fd in (cmd_pid / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                listening.append(fields[1])
    assert len(listening) >= 3  # gcs, raylet, object manager, ...
    loopback = ("0100007F:", "0000000000000000FFFF00000100007F:", "00000000000000000000000001000000:")
    assert all(addr.startswith(loopback) for addr in listening), listening
    assert ray_cluster.get_runtime_context().gcs_address.startswith("127.0.0.1:")


def test_killed_driver_resumes_only_missing_shards(data, reference, ray_cluster, tmp_path):
    root, glove = data
    out = tmp_path / "resumed.h5"
    args = ["--data", str(root), "--encoder", f"glove:{glove}", "--out", str(out), "--shard-size", "2048",
            "--ray-address", ray_cluster.get_runtime_context().gcs_address, "--workers", "2"]
    killed = run_cli(*args, T2I_RAY_TEST_KILL="shards:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    from cache.writer import UniquePlan

    with h5py.File(out, "r") as f:  # the incomplete cache, as the writer leaves it before any vector
        assert not f.attrs[L.ATTR_COMPLETE] and int(f.attrs[L.ATTR_CHUNKS_DONE]) == 0
    plan = json.loads((shard_dir(out) / "plan.json").read_text())
    store = ShardStore(out, plan["key"], ShardLayout(plan["num_unique"], plan["chunk_size"], plan["shard_chunks"]))
    done_before = [s for s in range(SHARDS) if store.is_done(s)]
    assert 2 <= len(done_before) < SHARDS and store.layout.num_shards == SHARDS
    assert plan["num_unique"] == len(UniquePlan.from_captions(caption_texts(root)).texts) == 10522

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    missing = SHARDS - len(done_before)
    assert f"{len(done_before)} of {SHARDS} shards already encoded" in again.stdout
    assert again.stdout.strip().splitlines()[-1].startswith(
        f"ray: 2 workers, {SHARDS} shards ({len(done_before)} already done, {missing} encoded, 0 retried)")
    print(f"driver killed after {len(done_before)} of {SHARDS} shards; rerun encoded {missing}:",
          assert_same_cache(out, reference))
    assert not shard_dir(out).exists()


def caption_texts(root: Path) -> list[str]:
    return [c for line in (root / "manifest.jsonl").read_text().splitlines() for c in json.loads(line)["captions"]]


def test_tfidf_fitted_once_on_driver(ray_cluster, tmp_path, monkeypatch):
    """tfidf is fitted on the driver; the workers get its config and fitted state, and the cache equals the
    single-process one (small chunks: one shard per 64 distinct captions)."""
    from cache.ray_pool import build_cache_ray
    from cache.writer import build_cache_report
    from embeddings.registry import get_encoder
    from tools.datasets import load_dataset

    make_manifest(tmp_path / "ds", caption_rows(24, 25, seed=1))
    dataset = load_dataset(tmp_path / "ds")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    single = build_cache_report(dataset, get_encoder("tfidf"), tmp_path / "single.h5", chunk_size=64, log=None)
    encoder = get_encoder("tfidf")
    report = build_cache_ray(dataset, encoder, tmp_path / "ray.h5", workers=2, chunk_size=64, shard_chunks=1,
                             log=None)
    assert report.num_shards == -(-single.num_unique // 64) >= 5 and report.workers == 2
    assert (report.shards_encoded, report.retried, report.partials_removed) == (report.num_shards, 0, 0)
    with h5py.File(tmp_path / "ray.h5", "r") as f:
        assert f["encoder_state/vocabulary"].asstr()[()].tolist() == encoder.state()["vocabulary"].tolist()
    print("tfidf:", assert_same_cache(tmp_path / "ray.h5", tmp_path / "single.h5"))


def test_dead_worker_retried_partial_never_merged(data, ray_cluster, tmp_path, monkeypatch):
    """Shard 2's first worker dies halfway through writing it (os._exit after half a file of zeros): the shard is
    encoded again by a fresh worker, the half-written file is deleted, never merged, and the cache is correct."""
    from cache.ray_pool import WORKER_DIE_ENV, build_cache_ray
    from cache.writer import build_cache_report
    from embeddings.registry import get_encoder
    from tools.datasets import load_dataset

    root, glove = data
    dataset = load_dataset(root)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build_cache_report(dataset, get_encoder(f"glove:{glove}"), tmp_path / "single.h5", log=None)
    monkeypatch.setenv(WORKER_DIE_ENV, "2")
    logged = []
    report = build_cache_ray(dataset, get_encoder(f"glove:{glove}"), tmp_path / "ray.h5", workers=2,
                             shard_chunks=1, log=logged.append)
    assert (report.num_shards, report.shards_encoded, report.retried, report.partials_removed) == (SHARDS, SHARDS, 1, 1)
    died = [m for m in logged if "died" in m]
    assert len(died) == 1 and re.fullmatch(r"worker [01] died on shard 2; retrying it on a fresh worker "
                                           r"\(attempt 2 of 3\)", died[0]), logged
    print("worker killed mid-shard:", assert_same_cache(tmp_path / "ray.h5", tmp_path / "single.h5"))


def test_shard_files_are_checked(tmp_path):
    """Chunk-aligned contiguous shards; a marker of another build, a truncated or altered .npy is not finished."""
    layout = ShardLayout(num_unique=1000, chunk_size=64, shard_chunks=3)
    ranges = [layout.shard_range(s) for s in range(layout.num_shards)]
    assert ranges[0] == (0, 192) and ranges[-1] == (960, 1000) and layout.num_shards == 6
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert layout.shard_chunk_ranges(5) == [(960, 1000)] and list(layout.shards_from_chunk(7)) == [2, 3, 4, 5]
    out = tmp_path / "x.h5"
    store = ShardStore.open(out, "key-a", 1000, 64, 3, log=None)
    vectors = np.arange(192 * 4, dtype=np.float32).reshape(192, 4)
    store.write(0, vectors)
    assert store.is_done(0) and not store.is_done(1)
    np.testing.assert_array_equal(store.read(0, 4), vectors)
    assert not ShardStore(out, "key-b", layout).is_done(0)  # another build's shard
    data = store.npy(0).read_bytes()
    store.npy(0).write_bytes(data[:-4] + b"\0\0\0\1")  # same size, altered content
    with pytest.raises(Exception, match="damaged"):
        store.read(0, 4)
    store.npy(0).write_bytes(data[:-8])
    assert not store.is_done(0)
    (store.dir / "shard-00001.npy.tmp-host-1").write_bytes(b"half")
    assert store.sweep_partials() == 1
    assert ShardStore.open(out, "key-c", 1000, 64, 3, log=lambda *_: None).is_done(0) is False


def test_one_line_errors_before_loading(tmp_path):
    """Ray missing: one line naming the pip install; a bad shard size or an address where no head answers: one
    line each, before any data or model is loaded (the --data folder does not even exist)."""
    argv = ["precompute_embeddings.py", "--workers", "2", "--data", str(tmp_path / "nowhere")]
    code = (f"import runpy, sys; sys.modules['ray'] = None; sys.argv = {argv!r}; "
            "runpy.run_path('precompute_embeddings.py', run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "error: --workers/--ray-address run on Ray, which is not installed: pip install -r requirements-ray.txt "
        "(ray==2.60.0 and its pinned dependencies)")
    bad = run_cli("--workers", "2", "--shard-size", "3000", "--data", str(tmp_path))
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: --shard-size 3000 must be a multiple of 2048 (whole cache chunks), e.g. 2048")
    nobody = run_cli("--ray-address", "127.0.0.1:9", "--data", str(tmp_path / "nowhere"))
    assert nobody.returncode == 1
    assert nobody.stderr.strip().splitlines()[-1].startswith(
        "error: --ray-address 127.0.0.1:9: no Ray head answers there")
    from cache.ray_pool import is_loopback

    assert [is_loopback(a) for a in (None, "127.0.0.1:6379", "localhost:1", "[::1]:6379", "10.0.0.5:6379")] == [
        True, True, True, True, False]
