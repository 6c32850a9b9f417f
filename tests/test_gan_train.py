"""Training end to end on a tiny cache: run folder, progress lines, resume == uninterrupted, load_generator,
NaN guard, refusals, dry run; and single train steps for every loss family, ta80 and mixed precision."""
from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import replace

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import train_gan
from test_gan_fixtures import make_cache
from tools.errors import UserError

TINY = ["--ngf", "8", "--ndf", "8", "--batch-size", "4", "--z-dim", "8", "--c-dim", "8",
        "--set", "num_sample_captions=3", "--set", "num_sample_z=2", "--augment", "--preset", "cpu",
        "--mixed-precision", "off"]  # float32 everywhere: auto would pick bf16 on CPUs that have it
PROGRESS = re.compile(r"^step \d+/\d+ \| d -?\d+\.\d\d \| g -?\d+\.\d\d \| kl -?\d+\.\d\d \| \d+ ms/step \| ETA \S+$")


def cli(args) -> str:
    """train_gan.main in-process; returns what it printed on stdout."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        train_gan.main([str(a) for a in args])
    return buf.getvalue()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gan")
    return tmp, make_cache(tmp)


@pytest.fixture(scope="module")
def full_run(work):
    """An uninterrupted 6-step run: (run folder, console output)."""
    tmp, cache = work
    out = cli(["--embeddings", cache, "--run-dir", tmp / "runs", "--steps", 6, "--log-every", 2, "--ckpt-every", 3,
               "--sample-every", 3, *TINY])
    return tmp / "runs" / "00001-tiny-flowers-testhash", out


def ckpt_tensors(path) -> dict:
    reader = tf.train.load_checkpoint(str(path))
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(str(path)) if "CHECKPOINTABLE" not in n}


def test_run_folder_contents(full_run):
    run, out = full_run
    cfg = json.loads((run / "config.json").read_text())
    for key in ("embeddings", "arch", "loss", "ngf", "ndf", "batch_size", "z_dim", "c_dim", "kl_weight", "lr_g", "lr_d",
                "beta1", "steps", "seed", "augment", "caption_mean_k", "preset", "cache", "run"):
        assert key in cfg
    assert cfg["ngf"] == 8 and cfg["batch_size"] == 4 and cfg["augment"] is True and cfg["preset"] == "cpu"
    assert cfg["cache"]["encoder"] == "testhash" and cfg["cache"]["dim"] == 16
    assert cfg["cache"]["encoder_config"] == {"spec": "testhash", "dim": 16}
    assert len(cfg["cache"]["fingerprint"]) == 64 and cfg["cache"]["path"].endswith("tiny-flowers-testhash.h5")
    assert cfg["run"]["mixed_precision"] is False and cfg["run"]["usable_images"] == 6
    # samples: 3 fixed captions (rows) x 2 fixed z (columns), at each interval and the end
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_000003.png", "step_000006.png"]
    assert Image.open(run / "samples" / "step_000006.png").size == (2 * 64, 3 * 64)
    captions = json.loads((run / "samples_captions.json").read_text())
    assert captions["captions"] == ["a red flower number 0 variant 0", "a yellow flower number 1 variant 0",
                                    "a white flower number 2 variant 0"]  # one caption per image, first images
    # checkpoints
    names = {p.name for p in (run / "checkpoints").iterdir()}
    assert {"checkpoint", "ckpt-3.index", "ckpt-6.index"} <= names
    # the log holds exactly the console lines
    log = (run / "train.log").read_text().splitlines()
    assert log == out.splitlines()
    progress = [line for line in log if line.startswith("step ")]
    assert [line.split(" |")[0] for line in progress] == ["step 2/6", "step 4/6", "step 6/6"]
    assert all(PROGRESS.match(line) for line in progress), progress
    # TensorBoard: scalars and the sample grid
    events = list((run / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(str(events[0])) for v in e.summary.value}
    assert {"train/d", "train/g", "train/kl", "train/ms_per_step", "samples"} <= tags


def test_resume_reaches_the_same_weights(work, full_run):
    tmp, cache = work
    cli(["--embeddings", cache, "--run-dir", tmp / "runs", "--steps", 3, "--log-every", 2, "--ckpt-every", 3,
         "--sample-every", 3, *TINY])
    run = tmp / "runs" / "00002-tiny-flowers-testhash"
    assert (run / "checkpoints" / "ckpt-3.index").exists()
    out = cli(["--resume", run, "--steps", 6])
    assert "resumed from" in out and "at step 3" in out
    a = ckpt_tensors(full_run[0] / "checkpoints" / "ckpt-6")
    b = ckpt_tensors(run / "checkpoints" / "ckpt-6")
    assert a.keys() == b.keys() and len(a) > 50  # G, D, both Adams, the RNG state, the step
    assert [n for n in a if not np.array_equal(a[n], b[n])] == []
    assert json.loads((run / "config.json").read_text())["steps"] == 6


def test_load_generator_reproduces_the_sample_grid(full_run):
    from gan.data import read_cache
    from gan.inference import load_generator

    run, _ = full_run
    gen, cfg = load_generator(run)
    assert gen.step == 6 and gen.needs == "vectors" and cfg.cache.encoder == "testhash"
    rows = json.loads((run / "samples_captions.json").read_text())["cache_rows"]
    vectors = read_cache(cfg.cache.path).vectors[rows].astype(np.float32)  # [3, 16]
    z = np.random.default_rng([cfg.seed, 3]).standard_normal((2, cfg.z_dim)).astype(np.float32)
    images = gen(np.repeat(vectors, 2, axis=0), np.tile(z, (3, 1)))  # [6, 64, 64, 3] uint8
    grid = np.asarray(Image.open(run / "samples" / "step_000006.png"))
    assert images.dtype == np.uint8 and images.shape == (6, 64, 64, 3)
    np.testing.assert_array_equal(images[3], grid[64:128, 64:128])  # caption 1, z 1
    # an earlier checkpoint by step gives other images; seeds are reproducible
    early, _ = load_generator(run, checkpoint=3)
    assert early.step == 3 and not np.array_equal(early(vectors, seed=1), gen(vectors, seed=1))
    np.testing.assert_array_equal(gen(vectors, seed=1), gen(vectors, seed=1))


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(work):
    from gan.config import resolve
    from gan.data import read_cache
    from gan.loop import TrainingDiverged, train

    tmp, cache = work
    data = read_cache(cache)
    cfg = resolve(dict(embeddings=str(cache), run_dir=str(tmp / "nan"), steps=8, log_every=10, ckpt_every=2,
                       sample_every=100, ngf=8, ndf=8, batch_size=4, z_dim=8, c_dim=8, num_sample_captions=2,
                       num_sample_z=1), gpu_available=False)
    cfg = replace(cfg, cache=data.info)

    def poison(trainer, step):
        if step == 5:  # weights go NaN after step 5; the guard must notice by the step-6 checkpoint
            kernel = trainer.generator.get_layer("fc").kernel
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))

    with pytest.raises(TrainingDiverged, match=r"non-finite .* last good checkpoint kept: .*ckpt-4"):
        train(cfg, data, echo=False, after_step=poison)
    run = tmp / "nan" / "00001-tiny-flowers-testhash"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-2.index", "ckpt-4.index"]
    assert all(np.isfinite(t).all() for t in ckpt_tensors(run / "checkpoints" / "ckpt-4").values()
               if np.issubdtype(t.dtype, np.floating))
    assert "error: non-finite" in (run / "train.log").read_text().splitlines()[-1]


# ---------------------------------------------------------------------------------- one train step
def _one_step(work, mixed=False, **options):
    from gan.config import resolve
    from gan.data import read_cache
    from gan.trainer import build_trainer

    tmp, cache = work
    data = read_cache(cache)
    cfg = resolve(dict(embeddings=str(cache), ngf=8, ndf=8, batch_size=4, z_dim=8, c_dim=8, **options), False)
    cfg = replace(cfg, cache=data.info)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        vocab = []
        cond = data.vectors[[0, 3, 6, 9]].astype(np.float32)
        wrong = data.vectors[[3, 6, 9, 0]].astype(np.float32)
        if cfg.arch == "ta80":
            from gan import ta80

            vocab = ta80.build_vocab(data.texts)
            ids = ta80.encode_texts(data.texts, vocab)
            cond, wrong = ids[[0, 3, 6, 9]], ids[[3, 6, 9, 0]]
        trainer = build_trainer(cfg, len(vocab))
        before = [v.numpy().copy() for v in trainer.variables]
        images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
        losses = {k: float(v) for k, v in trainer.train_step((tf.constant(images), tf.constant(cond),
                                                               tf.constant(wrong))).items()}
        changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, trainer.variables)]
        return trainer, losses, dict(zip([v.path for v in trainer.variables], changed))
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("arch,loss", [("stackgan", "bce"), ("stackgan", "hinge"), ("stackgan", "magp"),
                                       ("dfgan", "bce"), ("dfgan", "magp")])
def test_one_train_step_changes_weights(work, arch, loss):
    trainer, losses, changed = _one_step(work, arch=arch, loss=loss)
    assert set(losses) == {"d", "g", "kl"} and all(np.isfinite(list(losses.values())))
    assert losses["kl"] > 0  # CA starts near N(0, 1) but not on it
    g = [v.path for v in trainer.generator.trainable_variables]
    d = [v.path for v in trainer.d_encoder.trainable_variables + trainer.d_head.trainable_variables]
    # dfgan's affine MLPs: the first layer gets no gradient while the zero-initialised second is still zero
    assert all(changed[p] for p in g if "/fc1/" not in p) and all(changed[p] for p in g if "/fc2/" in p)
    # every D kernel moves (the hinge loss's gradient for the last bias is exactly -1 + ½(1 + 1) = 0 here)
    assert all(changed[p] for p in d if "kernel" in p) and sum(changed[p] for p in d) >= len(d) - 1


def test_ta80_trains_a_step(work):
    trainer, losses, changed = _one_step(work, arch="ta80")
    assert all(np.isfinite(list(losses.values()))) and losses["kl"] == 0.0
    assert trainer.text_encoder is not None
    assert all(changed[v.path] for v in trainer.text_encoder.trainable_variables)  # GRU trained in the loop
    assert all(changed[v.path] for v in trainer.generator.trainable_variables)


def test_mixed_precision_step_is_finite_with_float32_outputs(work):
    trainer, losses, _ = _one_step(work, mixed=True)
    assert all(np.isfinite(list(losses.values())))
    assert isinstance(trainer.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert trainer.generator.get_layer("conv0").compute_dtype == "float16"
    assert trainer.generator.outputs[0].dtype == "float32" and trainer.d_head.outputs[0].dtype == "float32"


# ---------------------------------------------------------------------------------- refusals, dry run
@pytest.fixture(scope="module")
def fake_run(work):
    """A run folder holding only config.json (enough for the resume checks, which come before any training)."""
    from gan.config import resolve
    from gan.data import read_cache
    from gan.run_dir import save_config

    tmp, cache = work
    run = tmp / "fake-run"
    run.mkdir()
    cfg = resolve(dict(embeddings=str(cache), ngf=8, ndf=8), gpu_available=False)
    save_config(run, replace(cfg, cache=read_cache(cache).info))
    return run


@pytest.mark.parametrize("what,kwargs,pattern", [
    ("encoder", dict(spec="otherhash"), r"cache encoder differs: .*'testhash'.*'otherhash'"),
    ("dim", dict(dim=8), r"cache dim differs: .*16.* 8;"),
    ("fingerprint", dict(n_images=5), r"cache fingerprint differs: .*'[0-9a-f]{64}'.*'[0-9a-f]{64}'"),
])
def test_resume_refuses_another_cache(work, fake_run, tmp_path, what, kwargs, pattern):
    other = make_cache(tmp_path, **kwargs)
    with pytest.raises(UserError, match=pattern) as e:
        cli(["--resume", fake_run, "--embeddings", other, "--steps", 10])
    assert "\n" not in str(e.value)


def test_resume_refuses_changed_model_options(fake_run):
    with pytest.raises(UserError, match=r"--ngf 16 differs from the resumed run's 8"):
        cli(["--resume", fake_run, "--ngf", 16])
    # the schedule and the learning rates (to recover from a divergence) may change
    cfg = json.loads(cli(["--resume", fake_run, "--epochs", 3, "--lr-g", 1e-4, "--ngf", 8, "--dry-run"]))
    # lr_d keeps the run's own: 4e-4, the dfgan preset's
    assert (cfg["epochs"], cfg["steps"], cfg["lr_g"], cfg["lr_d"], cfg["ngf"]) == (3.0, 0, 1e-4, 4e-4, 8)


def test_incomplete_cache_is_refused(work, tmp_path):
    import shutil

    _, cache = work
    broken = tmp_path / "partial.h5"
    shutil.copy(cache, broken)
    with h5py.File(broken, "r+") as f:
        f.attrs["complete"] = False
        f.attrs["chunks_done"] = 0
    with pytest.raises(UserError, match=r"incomplete"):
        cli(["--embeddings", broken, "--dry-run"])


def test_dry_run_prints_the_resolved_config(work):
    tmp, cache = work
    out = cli(["--embeddings", cache, "--run-dir", tmp / "dry", "--dry-run", "--loss", "hinge", "--set", "kl_weight=1"])
    cfg = json.loads(out)
    assert cfg["loss"] == "hinge" and cfg["kl_weight"] == 1.0 and cfg["preset"] == "cpu" and cfg["ngf"] == 32
    assert cfg["steps"] == 5000 and cfg["cache"]["encoder"] == "testhash" and cfg["cache"]["dim"] == 16
    assert not (tmp / "dry").exists()


@pytest.mark.parametrize("args,pattern", [
    (["--set", "bogus=1"], r"unknown option key\(s\) bogus; valid keys: embeddings, "),
    (["--loss", "wgan"], r"--loss 'wgan': choose one of bce, hinge, magp"),
    (["--steps", "5", "--epochs", "2"], r"give one of them"),
    (["--arch", "ta80", "--caption-mean-k", "3"], r"ta80 reads one raw caption"),
    (["--set", "kl_weight=abc"], r"kl_weight='abc': expected a float"),
    (["--batch-size", "0"], r"--batch-size 0: must be a number > 0"),
])
def test_option_errors_are_one_line(work, args, pattern):
    _, cache = work
    with pytest.raises(UserError, match=pattern) as e:
        cli(["--embeddings", cache, "--dry-run", *args])
    assert "\n" not in str(e.value)


def test_caption_mean_k_averages_captions_of_the_same_image(work):
    from gan.data import BatchSampler, make_batch_fn, read_cache

    _, cache = work
    data = read_cache(cache)
    sampler = BatchSampler(data.caption_image, np.ones(6, bool), batch_size=4, seed=0, k=2)
    images = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    imgs, cond, wrong = make_batch_fn(images, data.vectors, sampler)(0)
    rows_img, rows, _ = sampler.batch(0)
    np.testing.assert_array_equal(imgs[:, 0, 0, 0], rows_img)
    np.testing.assert_allclose(cond, data.vectors[rows].astype(np.float32).mean(axis=1), atol=1e-6)
    assert cond.dtype == np.float32 and wrong.shape == (4, 16)
