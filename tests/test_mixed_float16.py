"""mixed_float16 on the CPU: the policy `--mixed-precision on` (and auto on every GPU) picks, float16 compute with
dynamic loss scaling. Tiny dfgan and stackgan runs train, checkpoint and resume under it, so the GPU default path
is exercised before anyone has a GPU."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

import train_gan
from test_gan_fixtures import make_cache

STEPS, CKPT = 6, 3  # the resumed run restarts from ckpt-3, as after a crash between the two checkpoints
TINY = dict(ngf=8, ndf=8, batch_size=4, z_dim=8, c_dim=8, num_sample_captions=2, num_sample_z=1, log_every=1,
            ckpt_every=CKPT, sample_every=100, mixed_precision="on")
# resumed vs uninterrupted, per float tensor: the runs are one process's same ops, so this only absorbs kernel
# round-off; a resume that lost Adam's moments or the loss scale is off by about a learning rate (1e-4) per step
TOL = 1e-6


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from gan.data import read_cache

    tmp = tmp_path_factory.mktemp("fp16")
    cache = make_cache(tmp)
    return tmp, cache, read_cache(cache)


def train_recorded(work, arch: str):
    """An uninterrupted STEPS-step run -> (run folder, one record per step: losses, loss scales, applied updates,
    trainable weights of G and D)."""
    from gan.config import resolve
    from gan.loop import train

    tmp, cache, data = work
    cfg = replace(resolve(dict(embeddings=str(cache), run_dir=str(tmp / arch), arch=arch, steps=STEPS, **TINY),
                          gpu_available=False), cache=data.info)
    records = []

    def record(trainer, step):
        opts = {"g": trainer.g_optimizer, "d": trainer.d_optimizer}
        records.append(dict(
            step=step, losses={m.name: float(m.result()) for m in trainer.metrics},
            optimizers={k: type(o).__name__ for k, o in opts.items()},
            float16_layers=sum(layer.compute_dtype == "float16" for layer in trainer.generator.layers),
            scale={k: float(o.dynamic_scale.numpy()) for k, o in opts.items()},
            applied={k: int(o.inner_optimizer.iterations.numpy()) for k, o in opts.items()},
            weights={"g": [v.numpy().copy() for v in trainer.g_variables],
                     "d": [v.numpy().copy() for v in trainer.d_variables]}))

    result = train(cfg, data, echo=False, after_step=record)
    assert keras.mixed_precision.global_policy().name == "float32"  # put back for what runs next
    return result.run_dir, records


def ckpt_tensors(path) -> dict:
    reader = tf.train.load_checkpoint(str(path))
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(str(path)) if "CHECKPOINTABLE" not in n}


@pytest.mark.parametrize("arch", ["dfgan", "stackgan"])
def test_mixed_float16_trains_with_loss_scaling_and_resumes(work, arch, tmp_path):
    run, records = train_recorded(work, arch)
    assert json.loads((run / "config.json").read_text())["run"]["policy"] == "mixed_float16"
    first = records[0]
    assert first["optimizers"] == {"g": "LossScaleOptimizer", "d": "LossScaleOptimizer"}
    assert first["float16_layers"] > 0
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    losses = [v for r in records for v in r["losses"].values()]
    assert len(losses) == 3 * STEPS and np.isfinite(losses).all(), [r["losses"] for r in records]
    # dynamic loss scaling: a step whose scaled gradients overflow float16 is skipped and halves the scale (from
    # 2^15); every other step is applied and moves the weights. G and D each get at least one update.
    for k in ("g", "d"):
        applied = [r["applied"][k] for r in records]
        assert applied[-1] >= 1 and all(b - a in (0, 1) for a, b in zip([0, *applied], applied))
        assert [r["scale"][k] for r in records] == [2.0 ** 15 / 2 ** (r["step"] - r["applied"][k]) for r in records]
        for before, now in zip(records, records[1:]):
            moved = [not np.array_equal(a, b) for a, b in zip(before["weights"][k], now["weights"][k])]
            if now["applied"][k] > before["applied"][k]:
                assert np.mean(moved) > 0.9, (k, now["step"], np.mean(moved))
            else:
                assert not any(moved), (k, now["step"])
    assert sum(r["applied"]["g"] > p["applied"]["g"] for p, r in zip(records, records[1:])) >= 1  # G moved once

    # killed after ckpt-3: the copy's newest checkpoint is ckpt-3; resuming it reaches the uninterrupted ckpt-6
    cut = tmp_path / run.name
    shutil.copytree(run, cut)
    for f in (cut / "checkpoints").glob(f"ckpt-{STEPS}.*"):
        f.unlink()
    tf.compat.v1.train.update_checkpoint_state(str(cut / "checkpoints"), f"ckpt-{CKPT}", [f"ckpt-{CKPT}"])
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert train_gan.main(["--resume", str(cut), "--steps", str(STEPS)]) in (0, None)
    assert f"at step {CKPT}" in out.getvalue()
    full = ckpt_tensors(run / "checkpoints" / f"ckpt-{STEPS}")
    resumed = ckpt_tensors(cut / "checkpoints" / f"ckpt-{STEPS}")
    assert full.keys() == resumed.keys() and any("dynamic_scale" in n for n in full)
    floats = [n for n in full if full[n].dtype.kind == "f"]
    exact = [n for n in full if n not in floats or "dynamic_scale" in n]  # steps, iterations, RNG, loss scales
    assert [n for n in exact if not np.array_equal(full[n], resumed[n])] == []
    off = {n: float(np.max(np.abs(full[n] - resumed[n]), initial=0)) for n in floats}
    assert max(off.values()) <= TOL, sorted(off.items(), key=lambda kv: -kv[1])[:5]
    # the tolerance can fail: the uninterrupted run's last three steps moved its weights by far more
    at_cut = ckpt_tensors(run / "checkpoints" / f"ckpt-{CKPT}")
    assert max(float(np.max(np.abs(full[n] - at_cut[n]), initial=0)) for n in floats) > 100 * TOL
