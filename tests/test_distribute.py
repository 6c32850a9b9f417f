"""tf.distribute training for real on this CPU (gan/strategy.py): MirroredStrategy over two logical CPU devices, and
two local MultiWorkerMirroredStrategy workers talking over loopback ports, each compared with one-device training.

The strategies run in subprocesses (the CPU split and the cluster must exist before TensorFlow starts); the same
file is their entry point:
    python tests/test_distribute.py mirrored OUT_JSON CACHE RUN_PARENT ARCH   # 2 logical CPUs: none vs mirrored
    python tests/test_distribute.py train OUT_NPZ TRAIN_GAN_ARGS...           # train_gan.main, final weights -> npz
Cost: about 3 CPU-minutes in all, spread over up to four processes at once (2 cores: ~1.5 min of wall time).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# tiny runs: 2 replicas x 2 rows of a global batch of 4; float32 (no bf16 autopick on AVX512-BF16 CPUs)
TINY = dict(ngf=8, ndf=8, batch_size=4, z_dim=8, c_dim=8, preset="cpu", mixed_precision="off", augment=True,
            num_sample_captions=2, num_sample_z=2, log_every=1, sample_every=100, keep_checkpoints=10)
TINY_FLAGS = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
# |Δ| of a weight against the reference run, at most: one Adam step at dfgan's lr_g (1e-4; D steps 4e-4). A skipped
# or doubled update shows in the integer state (optimizer iterations) and a lost optimizer state on resume moves
# D's weights by up to lr_d; summing the gradient over replicas in another order moves the few weights whose
# gradient is near 0 (where Adam's step g/(|g| + eps) is sensitive) by a fraction of a step, which grows over steps
# since CA's μ head trains and its noise ε reaches G: 0.05 lr at step 1, 0.4 lr at step 5 (2026-12-05, Zen 4).
WEIGHT_TOL = 1e-4
TIMEOUT_S = 600  # a hung worker (a collective waiting for a dead peer) ends the test, not the suite (roomy: shared CPUs)


# --------------------------------------------------------------------------------------- subprocess side
def _mirrored_main(out_json, cache, parent, arch):
    """Two logical CPUs: the same `arch` run without a strategy (5 steps: also the multi-worker reference) and with
    MirroredStrategy (2 steps); plus the per-replica noise check."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from dataclasses import replace

    from gan import strategy as S
    from gan.config import resolve
    from gan.data import read_cache
    from gan.loop import train

    data = read_cache(cache)
    report = {}
    for name, steps in (("none", 5), ("mirrored", 2)):
        cfg = resolve(dict(embeddings=cache, run_dir=f"{parent}/{arch}-{name}", arch=arch, strategy=name,
                           steps=steps, ckpt_every=1, **TINY), gpu_available=False)
        t = time.process_time()
        report[name] = str(train(replace(cfg, cache=data.info), data, echo=False).run_dir)
        print(f"{arch} {name}: {time.process_time() - t:.1f} s CPU", file=sys.stderr)
    report["noise"] = _noise_check(S.distribution(cfg), S)
    Path(out_json).write_text(json.dumps(report))


def _noise_check(dist, S) -> dict:
    """Per-replica draws of a ReplicaSlicedGenerator vs one device's draw at the global batch."""
    import tensorflow as tf

    with dist.scope():
        gen = S.ReplicaSlicedGenerator.from_seed(7)
    per_replica = dist.strategy.run(tf.function(lambda: gen.normal([2, 3])))
    parts = [t.numpy() for t in dist.strategy.experimental_local_results(per_replica)]  # 2 x [2, 3]
    one_device = tf.random.Generator.from_seed(7).normal([4, 3]).numpy()
    return {"replicas": [p.tolist() for p in parts], "one_device": one_device.tolist()}


def _train_main(out_npz, argv):
    """train_gan.main(argv), saving every variable (models, optimizers, RNG) after the last step to out_npz."""
    import gan.loop as loop
    import train_gan

    run = loop.train

    def train(cfg, data=None, resume_dir=None, **kwargs):
        def dump(trainer, step):
            if step == cfg.steps:
                tensors = [v.numpy() for v in trainer.variables + trainer.d_optimizer.variables +
                           trainer.g_optimizer.variables] + [trainer.rng.state.numpy()]
                np.savez(out_npz, *tensors)

        return run(cfg, data, resume_dir, after_step=dump, **kwargs)

    loop.train = train  # train_gan.main imports it at call time
    return train_gan.main(argv)


# ------------------------------------------------------------------------------------------ pytest side
def _env(**extra) -> dict:
    # oneDNN as the caller has it (on by default); the tolerances hold with it (2026-12-06, Zen 4: weights 1.7e-7
    # dfgan and 5.2e-6 stackgan against 1e-4, slots_rel at most 1.9e-4 against 1e-3, worker spread 0)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", "TF_CPP_MIN_LOG_LEVEL": "2",
           "CUDA_VISIBLE_DEVICES": "", **extra}
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _run_all(procs: dict) -> dict:
    """{name: Popen} -> {name: (returncode, output)}; kills every process if one is still running at the deadline."""
    deadline, out = time.monotonic() + TIMEOUT_S, {}
    try:
        for name, p in procs.items():
            text, _ = p.communicate(timeout=max(deadline - time.monotonic(), 1))
            out[name] = (p.returncode, text)
    except subprocess.TimeoutExpired:
        for p in procs.values():
            p.kill()
        tails = {n: p.communicate()[0][-1500:] for n, p in procs.items()}
        raise AssertionError(f"distributed run still going after {TIMEOUT_S} s, killed: {tails}") from None
    for name, (code, text) in out.items():
        assert code == 0, f"{name} exited {code}:\n{text[-3000:]}"
    return out


def _start(args, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *map(str, args)], cwd=ROOT,
                            env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _ckpt(run: Path, step: int) -> dict:
    import tensorflow as tf

    path = str(run / "checkpoints" / f"ckpt-{step}")
    reader = tf.train.load_checkpoint(path)
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(path) if "CHECKPOINTABLE" not in n}


def _compare(a: dict, b: dict) -> dict:
    """Two checkpoints: largest |Δ| of the model weights (G, D, EMA); of the optimizer slots (Adam's m and v: after
    one step m = (1-β1)·g, v = (1-β2)·g², i.e. the gradients) relative to each slot's own scale; the ratio of slot
    norms (2 to 4 if the 1/R loss scaling were missing); whether integer state (steps, RNG) is equal."""
    assert a.keys() == b.keys() and len(a) > 50
    floats = [n for n in a if a[n].dtype.kind == "f"]
    slots = [n for n in floats if "_optimizer/_variables/" in n and a[n].ndim > 0 and np.abs(a[n]).max() > 0]
    weights = [n for n in floats if "_optimizer/_variables/" not in n]
    return dict(
        weights=max(float(np.abs(a[n] - b[n]).max()) for n in weights),
        weights_off=float(sum(np.sum(np.abs(a[n] - b[n]) > WEIGHT_TOL) for n in weights) /
                          sum(a[n].size for n in weights)),  # the share of weights a whole Adam step apart
        slots_rel=max(float(np.abs(a[n] - b[n]).max() / np.abs(a[n]).max()) for n in slots),
        slot_norm_ratio=float(np.sqrt(sum(np.square(b[n], dtype=np.float64).sum() for n in slots) /
                                      sum(np.square(a[n], dtype=np.float64).sum() for n in slots))),
        ints_equal=all(np.array_equal(a[n], b[n]) for n in a if a[n].dtype.kind != "f" and "save_counter" not in n),
    )


def _report(tag: str, values: dict) -> None:
    print(f"{tag}: " + " | ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()))


import pytest  # noqa: E402  (after the subprocess entry points, which do not need it)

from gan.config import GanConfig  # noqa: E402

ARCHS = tuple(dict.fromkeys([GanConfig.arch, "stackgan"]))  # the default arch; stackgan has batch norm


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_workers(tmp: Path, tag: str, args: list) -> tuple[dict, list[Path]]:
    """Two MultiWorkerMirroredStrategy workers (one CPU each) on free loopback ports: ({name: Popen}, dumps)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _ports(2)]}
    dumps = [tmp / f"{tag}-worker{i}.npz" for i in range(2)]
    procs = {f"worker {i}": _start(["train", dumps[i], *args, "--strategy", "multiworker"],
                                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
             for i in range(2)}
    return procs, dumps


def _spread(dumps: list[Path]) -> float:
    """Largest |Δ| between the two workers' final variables (models, optimizers, RNG)."""
    a, b = np.load(dumps[0]), np.load(dumps[1])
    assert a.files == b.files and len(a.files) > 50
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a.files)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from gan.data import read_cache
    from gan.image_cache import load_or_build_image_cache
    from test_gan_fixtures import make_cache

    tmp = tmp_path_factory.mktemp("dist")
    cache = make_cache(tmp)
    # the shared image cache, built once before four processes start that would each build it
    load_or_build_image_cache(cache, read_cache(cache).image_paths, 64, lambda *_: None, progress=False,
                              dataset_name="tiny-flowers")
    return tmp, cache


@pytest.fixture(scope="module")
def phase_one(work):
    """Started together (2 cores; tracing is mostly single-threaded): a mirrored-vs-none process per arch and the
    first multi-worker run (two workers, 3 steps). -> (reports per arch, worker outputs, worker dumps)"""
    tmp, cache = work
    procs = {arch: _start(["mirrored", tmp / f"{arch}.json", cache, tmp / "mirrored-runs", arch]) for arch in ARCHS}
    workers, dumps = _start_workers(tmp, "first", ["--embeddings", cache, "--steps", 3, "--run-dir", tmp / "mw-runs",
                                                   *TINY_FLAGS, "--ckpt-every", 3])
    out = _run_all({**procs, **workers})
    return {arch: json.loads((tmp / f"{arch}.json").read_text()) for arch in ARCHS}, out, dumps


@pytest.mark.parametrize("arch", ARCHS)
def test_mirrored_two_cpus_step_equals_one_device_step(phase_one, arch):
    one, two = Path(phase_one[0][arch]["none"]), Path(phase_one[0][arch]["mirrored"])
    for step in (1, 2):
        diff = _compare(_ckpt(one, step), _ckpt(two, step))
        _report(f"{arch} step {step}: mirrored 2 replicas x 2 rows vs one device x 4 rows", diff)
        assert diff["ints_equal"]  # step counters, optimizer iterations, RNG state: the same stream advanced
        assert diff["weights_off"] < 1e-3 and abs(diff["slot_norm_ratio"] - 1) < 1e-3
        if step == 1 or arch != "stackgan":
            # step 1 from equal weights (and every step of an arch without batch norm): the same gradients (Adam's
            # slots) and the same update
            assert diff["weights"] < WEIGHT_TOL  # Adam moves each weight by up to lr = 1e-4..4e-4 per step
            assert diff["slots_rel"] < 1e-3 and abs(diff["slot_norm_ratio"] - 1) < 1e-4  # the gradients
        # stackgan's step 2 starts from weights up to 1e-5 apart, and its batch norm over 4 rows (2 per replica,
        # synchronised) amplifies that into ~1 % gradient differences in a few G layers: there only the share of
        # weights a whole step apart (0.02 %) and the gradient norm (0.9995) are compared (2026-12-05, Zen 4)
    run = json.loads((two / "config.json").read_text())["run"]
    assert (run["strategy"], run["replicas"], run["workers"]) == ("mirrored", 2, 1)
    assert json.loads((one / "config.json").read_text())["run"]["strategy"] == "none"
    assert "strategy: mirrored | 2 replicas on 1 worker(s) | global batch 4 = 2 × 2" in (two / "train.log").read_text()


def test_replicas_draw_distinct_slices_of_the_one_device_noise(phase_one):
    noise = phase_one[0][ARCHS[0]]["noise"]
    a, b = np.array(noise["replicas"][0]), np.array(noise["replicas"][1])  # [2, 3] each
    assert np.abs(a - b).min() > 0  # distinct per replica ...
    np.testing.assert_allclose(np.concatenate([a, b]), noise["one_device"], atol=1e-6)  # ... = one device's [4, 3]


def test_a_mirrored_run_loads_like_any_other(phase_one):
    from gan.inference import load_generator

    runs = phase_one[0][ARCHS[0]]
    gen_two, cfg = load_generator(runs["mirrored"])
    gen_one, _ = load_generator(runs["none"], checkpoint=2)
    assert gen_two.step == 2 and cfg.strategy == "mirrored"
    vectors = np.random.default_rng(0).standard_normal((3, cfg.cache.dim)).astype(np.float32)
    images = gen_two(vectors, seed=1)
    assert images.shape == (3, 64, 64, 3) and images.std() > 0
    assert np.abs(images.astype(int) - gen_one(vectors, seed=1)).max() <= 1  # uint8 rounding at most


def test_two_workers_train_identically_and_resume(work, phase_one):
    tmp, _ = work
    reports, out, dumps = phase_one
    runs = tmp / "mw-runs"
    run = runs / "00001-tiny-flowers-testhash"
    assert sorted(p.name for p in runs.iterdir()) == [run.name]  # worker 1 wrote no run folder of its own
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-3.index"]
    reference = Path(reports[ARCHS[0]]["none"])  # the same options on one device
    spread, diff = _spread(dumps), _compare(_ckpt(reference, 3), _ckpt(run, 3))
    _report(f"multiworker 2 workers x 1 CPU, step 3: worker 0 vs 1 max |Δ| {spread:.3g}; chief's ckpt vs one device",
            diff)
    assert spread < 1e-6 and diff["ints_equal"] and diff["weights"] < WEIGHT_TOL
    facts = json.loads((run / "config.json").read_text())["run"]
    assert (facts["strategy"], facts["replicas"], facts["workers"]) == ("multiworker", 2, 2)
    assert "this is worker 0 (chief)" in out["worker 0"][1] and "this is worker 1 (writes a private" in \
        out["worker 1"][1]

    workers, dumps = _start_workers(tmp, "resumed", ["--resume", run, "--steps", 5])
    for name, (_, text) in _run_all(workers).items():
        assert f"resumed from {run / 'checkpoints' / 'ckpt-3'} at step 3" in text, name
        assert "step 4/5" in text and "step 5/5" in text and "step 3/5" not in text, name
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-3.index", "ckpt-5.index"]
    spread, diff = _spread(dumps), _compare(_ckpt(reference, 5), _ckpt(run, 5))
    _report(f"multiworker resumed at 3, step 5: worker 0 vs 1 max |Δ| {spread:.3g}; chief's ckpt vs one device", diff)
    assert spread < 1e-6 and diff["ints_equal"] and diff["weights"] < WEIGHT_TOL


def test_strategy_refusals_are_one_line(work, monkeypatch):
    from gan import strategy as S
    from gan.config import resolve
    from tools.errors import UserError

    _, cache = work
    cfg = resolve(dict(embeddings=str(cache), strategy="multiworker", steps=5), False)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match=r"--strategy multiworker needs TF_CONFIG .*\"cluster\""):
        S.distribution(cfg)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(UserError, match=r"TF_CONFIG is not a cluster spec with this task in it"):
        S.distribution(cfg)
    with pytest.raises(UserError, match=r"--strategy 'tpu': choose one of auto, none, mirrored, multiworker"):
        resolve(dict(embeddings=str(cache), strategy="tpu"), False)
    monkeypatch.delenv("TF_CONFIG")
    assert S.resolve_name("auto") == "none"  # one CPU device, no cluster


if __name__ == "__main__":
    mode, out_path, *rest = sys.argv[1:]
    if mode == "mirrored":
        _mirrored_main(out_path, *rest)
    elif mode == "train":
        sys.exit(_train_main(out_path, rest) or 0)
    else:
        sys.exit(f"unknown mode {mode!r}: mirrored | train")
