"""--arch dfgan and its recipe: fused G, multi-scale D, EMA generator, DiffAugment, hard mismatched pairs,
lazy MA-GP, the arch preset and bf16 selection."""
from __future__ import annotations

import json
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from test_gan_fixtures import make_cache
from test_gan_train import ckpt_tensors, cli

# tiny dfgan runs; float32 on every machine so the numbers do not depend on the CPU's bf16 support
TINY = ["--ngf", "8", "--ndf", "8", "--batch-size", "4", "--z-dim", "8", "--c-dim", "8", "--preset", "cpu",
        "--mixed-precision", "off", "--set", "num_sample_captions=2", "--set", "num_sample_z=2",
        "--set", "hard_neg_low=-1", "--set", "hard_neg_high=0.999", "--set", "magp_every=2"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dfgan")
    return tmp, make_cache(tmp)


@pytest.fixture(scope="module")
def run6(work):
    tmp, cache = work
    cli(["--embeddings", cache, "--run-dir", tmp / "runs", "--steps", 6, "--log-every", 3, "--ckpt-every", 3,
         "--sample-every", 3, *TINY])
    return tmp / "runs" / "00001-tiny-flowers-testhash"


def _cfg(cache, **options):
    from gan.config import resolve
    from gan.data import read_cache

    cfg = resolve(dict(embeddings=str(cache), ngf=8, ndf=8, batch_size=4, z_dim=8, c_dim=8, mixed_precision="off",
                       **options), False)
    return replace(cfg, cache=read_cache(cache).info)


def _batch(cache):
    from gan.data import read_cache

    v = read_cache(cache).vectors
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    return (tf.constant(images), tf.constant(v[[0, 3, 6, 9]].astype(np.float32)),
            tf.constant(v[[3, 6, 9, 0]].astype(np.float32)))


# ------------------------------------------------------------------------------------------ config
def test_arch_preset_is_the_dfgan_recipe_and_explicit_options_win(work):
    _, cache = work
    cfg = _cfg(cache)
    assert cfg.arch == "dfgan" and cfg.loss == "magp" and (cfg.lr_g, cfg.lr_d) == (1e-4, 4e-4)
    assert (cfg.beta1, cfg.beta2) == (0.0, 0.9) and cfg.ema and cfg.diffaug == "translation,cutout"
    assert cfg.hard_negatives == 0.5 and cfg.kl_weight == 0.5 and cfg.proj4 == "spatial" and cfg.ca_noise == 1.0
    assert cfg.contrastive == 1.0
    mine = _cfg(cache, loss="hinge", ema=False, lr_d=1e-3, kl_weight=2.0, proj4="pooled")
    assert mine.loss == "hinge" and not mine.ema and mine.lr_d == 1e-3 and mine.lr_g == 1e-4
    assert mine.kl_weight == 2.0 and mine.proj4 == "pooled"
    stack = _cfg(cache, arch="stackgan")
    assert stack.loss == "bce" and not stack.ema and stack.diffaug == "" and stack.hard_negatives == 0.0
    assert stack.kl_weight == 2.0 and stack.proj4 == "pooled"  # StackGAN's own KL weight; no such D term
    assert stack.ca_noise == 0.0 and stack.contrastive == 0.0  # samples CA's mean, as every stackgan run has


@pytest.mark.parametrize("args,pattern", [
    (["--set", "diffaug=color"], r"diffaug='color': unknown DiffAugment policy color; choose from translation"),
    (["--set", "hard_neg_low=0.9", "--set", "hard_neg_high=0.8"], r"need -1 <= low < high <= 1"),
    (["--set", "ema_decay=1.0"], r"ema_decay=1.0: must be in \[0, 1\)"),
    (["--set", "hard_neg_margin=0.02"], r"hard_neg_margin: removed after commit \w+ \(measured as no gain"),  # removed (REMOVED_OPTIONS.md)
    (["--arch", "ta80", "--set", "ema=true"], r"EMA and hard negatives are for the cached-vector archs"),
    (["--set", "upsample=cubic"], r"upsample='cubic': choose one of nearest, bilinear"),
    (["--arch", "stackgan", "--set", "upsample=bilinear"], r"upsample=bilinear: only --arch dfgan has this option"),
    (["--set", "proj4=grid"], r"proj4='grid': choose one of pooled, spatial"),
    (["--arch", "stackgan", "--set", "proj4=spatial"], r"proj4=spatial: only --arch dfgan has this option"),
    (["--arch", "stackgan", "--set", "contrastive=0.5"], r"contrastive=0.5: only --arch dfgan has the projection"),
    (["--set", "ca_noise=2.5"], r"ca_noise=2.5: must be in \[0, 2\] \(0: CA's mean; 1: CA's training noise\)"),
    (["--mixed-precision", "fp8"], r"--mixed_precision 'fp8': choose one of auto, on, bf16, off|"
                                   r"--mixed-precision 'fp8': choose one of auto, on, bf16, off"),
])
def test_recipe_option_errors_are_one_line(work, args, pattern):
    from tools.errors import UserError

    _, cache = work
    with pytest.raises(UserError, match=pattern) as e:
        cli(["--embeddings", cache, "--dry-run", *args])
    assert "\n" not in str(e.value)


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    from gan import loop

    assert loop.compute_policy("auto", gpu=True) == "mixed_float16"
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: True)
    assert loop.compute_policy("auto", gpu=False) == "mixed_bfloat16"
    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: False)
    assert loop.compute_policy("auto", gpu=False) == "float32"
    assert loop.compute_policy("bf16", gpu=False) == "mixed_bfloat16" and loop.compute_policy("off", True) == "float32"


# -------------------------------------------------------------------------------------- one train step
@pytest.mark.parametrize("proj4", ["pooled", "spatial"])
def test_pair_scores_are_the_heads_projection_terms_for_every_pair(proj4):
    from gan import dfgan

    keras.utils.set_random_seed(1)
    _, head = dfgan.build_discriminator(16, ndf=4, proj4=proj4)
    # the one-way output off (its last conv zeroed): the head is then the sum of its projection terms
    for w in head.get_layer("logit").weights:
        w.assign(tf.zeros_like(w))
    rng = np.random.default_rng(2)
    f8, f4 = rng.normal(size=(3, 8, 8, 16)).astype("float32"), rng.normal(size=(3, 4, 4, 32)).astype("float32")
    text = rng.normal(size=(4, 16)).astype("float32")  # 3 images, 4 captions
    scores = np.asarray(dfgan.pair_scores(head, f8, f4, text))
    assert scores.shape == (3, 4) and scores.dtype == np.float32
    for j in range(4):
        np.testing.assert_allclose(scores[:, j], head([f8, f4, np.repeat(text[j : j + 1], 3, 0)]).numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_contrastive_term_scores_own_caption_against_the_batch_and_is_flat_when_captions_agree(work):
    from gan.trainer import build_trainer
    from tools.errors import UserError

    _, cache = work
    keras.utils.set_random_seed(0)
    trainer = build_trainer(_cfg(cache, contrastive=1.0, diffaug=""))
    images, cond, _ = _batch(cache)
    real = tf.cast(images, tf.float32) / 127.5 - 1.0
    text = cond * trainer.d_text_scale
    feats = trainer.d_encoder(real)
    from gan.dfgan import pair_scores

    s = np.asarray(pair_scores(trainer.d_head, *feats, text), np.float64)
    want = np.mean(np.log(np.exp(s).sum(1)) - np.diag(s))  # CE of softmax_j S[i, :] at i, averaged
    np.testing.assert_allclose(float(trainer._contrastive(feats, text)), want, rtol=1e-5, atol=1e-6)
    # one caption for the whole batch: every row of S is constant, the loss is ln B and G's gradient is 0
    same = tf.repeat(text[:1], 4, axis=0)
    z = tf.constant(np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32))
    with tf.GradientTape() as tape:
        fake, _ = trainer.generate(same / trainer.d_text_scale, z, tf.zeros([4, 8]), training=True)
        loss = trainer._contrastive(trainer.d_encoder(fake), same)
    np.testing.assert_allclose(float(loss), np.log(4), rtol=1e-5)
    grads = [g for g in tape.gradient(loss, trainer.generator.trainable_variables) if g is not None]
    assert grads and max(float(tf.reduce_max(tf.abs(g))) for g in grads) < 1e-6
    # a training step with the term: finite, and D and G move differently from the step without it
    losses = {k: float(v) for k, v in trainer.train_step(_batch(cache)).items()}
    assert all(np.isfinite(list(losses.values())))
    keras.utils.set_random_seed(0)
    plain = build_trainer(_cfg(cache, diffaug="", contrastive=0.0))
    plain.train_step(_batch(cache))
    for a, b in ((plain.generator, trainer.generator), (plain.d_head, trainer.d_head)):
        assert any(not np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.trainable_variables, b.trainable_variables))
    with pytest.raises(UserError, match=r"contrastive=1.0: only --arch dfgan has the projection terms"):
        _cfg(cache, arch="stackgan", contrastive=1.0)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_one_dfgan_step_is_finite_and_moves_g_d_and_ema(work, policy):
    from gan.trainer import build_trainer

    _, cache = work
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)  # the same initial weights whatever ran before in this process
    try:
        trainer = build_trainer(_cfg(cache))
        g_before = [v.numpy().copy() for v in trainer.generator.trainable_variables]
        d_vars = trainer.d_variables
        d_before = [v.numpy().copy() for v in d_vars]
        ema_before = [v.numpy().copy() for v in trainer.ema.model.trainable_variables]
        losses = {k: float(v) for k, v in trainer.train_step(_batch(cache)).items()}
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert set(losses) == {"d", "g", "kl"} and all(np.isfinite(list(losses.values())))
    moved = lambda before, now: [not np.array_equal(b, v.numpy()) for b, v in zip(before, now)]  # noqa: E731
    g_moved = moved(g_before, trainer.generator.trainable_variables)
    # the zero-initialised last layer of each affine MLP moves; its first layer gets no gradient until then
    g_names = [v.path for v in trainer.generator.trainable_variables]
    assert all(m for m, n in zip(g_moved, g_names) if "fc1" not in n)
    d_moved = dict(zip([v.path for v in d_vars], moved(d_before, d_vars)))
    # every D weight moves but the final bias, whose hinge gradient is exactly -1 + ½(1 + 1) = 0 at the start;
    # in bf16 also text_proj's kernel: at this tiny DCGAN-initialised D its gradient is ~1e-9 (float32 moves it by
    # 4.7e-6, far below Adam's lr step), which bf16's 8-bit mantissa rounds to exactly 0
    allowed = ["logit/bias"] if policy == "float32" else ["text_proj/kernel", "logit/bias"]
    assert set(n for n, m in d_moved.items() if not m) <= set(allowed)
    # after one step the EMA (warm-up decay min(0.999, 1/10) = 0.1) moved 90 % of the way towards G
    ema_now = trainer.ema.model.trainable_variables
    k = g_names.index(next(n for n in g_names if n.endswith("to_rgb/kernel")))
    g_k, e_before, e_now = trainer.generator.trainable_variables[k].numpy(), ema_before[k], ema_now[k].numpy()
    np.testing.assert_allclose(e_now, 0.1 * e_before + 0.9 * g_k, rtol=1e-5, atol=1e-7)
    assert not np.array_equal(e_now, g_k)


def test_lazy_magp_is_due_every_k_steps_with_weight_k(work):
    from gan import losses as L
    from gan.trainer import build_trainer

    _, cache = work
    trainer = build_trainer(_cfg(cache, magp_every=4))
    assert [trainer.penalty_due(s) for s in range(6)] == [True, False, False, False, True, False]
    real, wrong, fake = tf.constant([0.5, -2.0]), tf.constant([0.0, 0.0]), tf.constant([0.0, 1.0])
    with tf.GradientTape() as tape:
        x = tf.constant([[1.0, 2.0], [0.0, 1.0]])
        tape.watch(x)
        r = tf.reduce_sum(x * x, axis=1) + real
    with_gp = trainer._d_loss(r, wrong, fake, tape, [x], penalty=True)
    # hinge: E[relu(1 - r)] + ½(E[relu(1 + w)] + E[relu(1 + f)]) with r = [5.5, -1.0] -> (0 + 2)/2 + ½(1 + 1.5);
    # MA-GP: k · 2 · E[‖2x‖⁶] = 4 · 2 · (√20⁶ + 2⁶)/2 = 8 · (8000 + 64)/2 = 32 256
    np.testing.assert_allclose(float(with_gp), 2.25 + 32256.0, rtol=1e-6)
    assert float(trainer._d_loss(r, wrong, fake, tape, [x], penalty=False)) == pytest.approx(2.25)
    assert float(L.hinge_discriminator_loss(r, wrong, fake)) == pytest.approx(2.25)


def test_bilinear_upsampling_keeps_the_weights_and_is_what_load_generator_rebuilds(work, tmp_path):
    from gan import dfgan
    from gan.inference import load_generator

    _, cache = work
    cli(["--embeddings", cache, "--run-dir", tmp_path, "--steps", 2, "--set", "upsample=bilinear", *TINY])
    run = tmp_path / "00001-tiny-flowers-testhash"
    assert json.loads((run / "config.json").read_text())["upsample"] == "bilinear"
    gen, cfg = load_generator(run)
    ups = [l for l in gen.model.layers if isinstance(l, keras.layers.UpSampling2D)]
    assert len(ups) == 8 and {l.interpolation for l in ups} == {"bilinear"}  # 2 per block (shortcut, residual)
    # the same variables as the nearest G: only the resize differs, and it changes the images
    nearest = dfgan.build_generator(cfg.cache.dim, cfg.z_dim, cfg.c_dim, cfg.ngf, "nearest")
    nearest.set_weights(gen.model.get_weights())
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((2, n)).astype(np.float32) for n in (cfg.cache.dim, cfg.z_dim, cfg.c_dim)]
    a, b = nearest(inputs)[0].numpy(), gen.model(inputs)[0].numpy()
    assert a.shape == b.shape == (2, 64, 64, 3) and np.abs(a - b).max() > 1e-3
    # nearest G's 1x1 shortcut path is blocky: neighbouring pixels inside a 2x2 block of the last resize agree more
    # often than across blocks; bilinear has no such seams
    seam = lambda x: np.abs(x[:, :, 1:-1:2] - x[:, :, 2::2]).mean() / np.abs(x[:, :, 0::2] - x[:, :, 1::2]).mean()  # noqa: E731
    assert seam(a) > seam(b)


def test_spatial_projection_trains_and_resumes(work, tmp_path):
    import tensorflow as tf

    from gan.run_dir import find_checkpoint, load_config
    from gan.trainer import build_trainer

    _, cache = work
    cli(["--embeddings", cache, "--run-dir", tmp_path, "--steps", 2, "--set", "proj4=spatial", *TINY])
    run = tmp_path / "00001-tiny-flowers-testhash"
    assert json.loads((run / "config.json").read_text())["proj4"] == "spatial"

    def proj4_kernel():  # D's per-position W4 as the latest checkpoint holds it
        trainer = build_trainer(load_config(run))
        tf.train.Checkpoint(d_head=trainer.d_head).read(find_checkpoint(run, None)).expect_partial()
        return trainer.d_head.get_layer("proj4_w").kernel.numpy()

    first = proj4_kernel()
    assert first.shape == (16, 16 * 8 * 8)  # text dim 16 -> a W4 per 4×4 position of 8·ndf channels
    cli(["--resume", run, "--steps", 3])
    again = proj4_kernel()
    assert again.shape == first.shape and np.isfinite(again).all() and np.abs(again - first).max() > 0


# ------------------------------------------------------------------------------------------ EMA
def test_ema_generator_is_saved_and_is_what_load_generator_returns(run6):
    from gan.data import read_cache
    from gan.inference import load_generator

    t = ckpt_tensors(run6 / "checkpoints" / "ckpt-6")
    ema = {n: v for n, v in t.items() if n.startswith("generator_ema/")}
    raw = {n: v for n, v in t.items() if not n.startswith("generator_ema/")}  # G's own weights, D, Adam slots
    assert len(ema) > 10
    gen, cfg = load_generator(run6)
    assert cfg.ema and gen.step == 6
    weights = [w.numpy() for w in gen.model.weights]
    in_ckpt = lambda w, d: any(v.shape == w.shape and np.array_equal(v, w) for v in d.values())  # noqa: E731
    assert all(in_ckpt(w, ema) for w in weights)  # every loaded weight is the EMA's
    assert not all(in_ckpt(w, raw) for w in weights)  # and they are not the raw generator's
    # and the run's last sample grid was drawn by that generator
    rows = json.loads((run6 / "samples_captions.json").read_text())["cache_rows"]
    vectors = read_cache(cfg.cache.path).vectors[rows].astype(np.float32)
    z = np.random.default_rng([cfg.seed, 3]).standard_normal((2, cfg.z_dim)).astype(np.float32)
    grid = np.asarray(Image.open(run6 / "samples" / "step_000006.png"))
    images = gen(np.repeat(vectors, 2, axis=0), np.tile(z, (2, 1)))
    np.testing.assert_array_equal(images[3], grid[64:128, 64:128])


def test_raw_weights_load_the_trained_generator_for_the_ema_ablation(run6, tmp_path):
    import shutil

    from gan.inference import load_generator
    from tools.errors import UserError

    t = ckpt_tensors(run6 / "checkpoints" / "ckpt-6")
    g_ema = {n: v for n, v in t.items() if n.startswith("generator_ema/")}
    # G's own variables are saved under the first path that reaches them (its optimizer's), not "generator/"
    g_raw = {n: v for n, v in t.items() if not n.startswith("generator_ema/")}
    raw, _ = load_generator(run6, weights="raw")
    ema, _ = load_generator(run6, weights="ema")
    in_ckpt = lambda w, d: any(v.shape == w.shape and np.array_equal(v, w) for v in d.values())  # noqa: E731
    assert all(in_ckpt(w.numpy(), g_raw) for w in raw.model.weights)
    assert not all(in_ckpt(w.numpy(), g_ema) for w in raw.model.weights)
    assert all(in_ckpt(w.numpy(), g_ema) for w in ema.model.weights)
    rng = np.random.default_rng(1)
    z = rng.standard_normal((2, raw.z_dim)).astype(np.float32)
    cond = rng.standard_normal((2, raw.config.cache.dim)).astype(np.float32)
    assert not np.array_equal(raw(cond, z), ema(cond, z))
    with pytest.raises(ValueError, match="weights='best'"):
        load_generator(run6, weights="best")
    # a run trained without ema has no EMA weights to ask for: one line, not a silent raw G
    no_ema = tmp_path / "run"
    shutil.copytree(run6, no_ema)
    cfg = json.loads((no_ema / "config.json").read_text())
    cfg["ema"] = False
    (no_ema / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="trained without ema"):
        load_generator(no_ema, weights="ema")


def test_ca_noise_draws_mu_plus_scaled_sigma_eps_of_z_and_old_runs_draw_the_mean(run6, tmp_path):
    import shutil

    from gan.conditioning import sampling_eps
    from gan.inference import load_generator
    from tools.errors import UserError

    gen, cfg = load_generator(run6)
    assert cfg.ca_noise == 1.0 and gen.ca_noise == 1.0  # the dfgan preset's, recorded in config.json
    mean, _ = load_generator(run6, ca_noise=0)
    rng = np.random.default_rng(4)
    cond = rng.standard_normal((3, cfg.cache.dim)).astype(np.float32)
    z = rng.standard_normal((3, gen.z_dim)).astype(np.float32)
    g = gen.model
    to_uint8 = lambda x: np.clip(np.round((x.numpy() + 1.0) * 127.5), 0, 255)  # noqa: E731
    for sampler, scale in ((gen, 1.0), (mean, 0.0)):
        want = to_uint8(g([tf.constant(cond), tf.constant(z), sampling_eps(z, cfg.c_dim, scale)])[0])
        assert np.abs(sampler(cond, z).astype(int) - want).max() <= 1
    assert np.abs(gen(cond, z).astype(int) - mean(cond, z).astype(int)).max() > 10  # the noise reaches the image
    np.testing.assert_array_equal(gen(cond, z), gen(cond, z))  # and is a function of z: same z, same image
    # a run made before the option has no ca_noise in config.json: it samples CA's mean, as it always did
    old = tmp_path / "old"
    shutil.copytree(run6, old)
    recorded = json.loads((old / "config.json").read_text())
    del recorded["ca_noise"], recorded["config_version"]  # written by version 1, before the option existed
    (old / "config.json").write_text(json.dumps(recorded))
    before, old_cfg = load_generator(old)
    assert old_cfg.ca_noise == 0.0 and before.ca_noise == 0.0
    np.testing.assert_array_equal(before(cond, z), mean(cond, z))
    with pytest.raises(UserError, match=r"--ca-noise 3.0: must be in \[0, 2\]"):
        load_generator(run6, ca_noise=3.0)


def test_padded_batches_give_the_same_images_from_a_fixed_shape_graph(run6):
    from gan.inference import load_generator

    gen, cfg = load_generator(run6)
    rng = np.random.default_rng(3)
    cond = rng.standard_normal((3, cfg.cache.dim)).astype(np.float32)
    z = rng.standard_normal((3, gen.z_dim)).astype(np.float32)
    plain, padded = gen(cond, z), gen(cond, z, pad_to=8)
    assert padded.shape == (3, 64, 64, 3) and padded.dtype == np.uint8
    assert np.abs(plain.astype(int) - padded.astype(int)).max() <= 1  # rows are independent at sampling
    assert np.abs(gen(cond[:1], z[:1], pad_to=8).astype(int) - plain[:1].astype(int)).max() <= 1
    assert len(gen._fixed._list_all_concrete_functions()) == 1  # both calls ran the one graph traced for 8 rows
    with pytest.raises(ValueError, match="pad_to=2 is less than the batch"):
        gen(cond, z, pad_to=2)


def test_resume_restores_ema_and_augmentation_state_bit_identically(work, run6):
    tmp, cache = work
    cli(["--embeddings", cache, "--run-dir", tmp / "runs", "--steps", 3, "--log-every", 3, "--ckpt-every", 3,
         "--sample-every", 3, *TINY])
    run = tmp / "runs" / "00002-tiny-flowers-testhash"
    out = cli(["--resume", run, "--steps", 6])
    assert "at step 3" in out
    a, b = ckpt_tensors(run6 / "checkpoints" / "ckpt-6"), ckpt_tensors(run / "checkpoints" / "ckpt-6")
    assert a.keys() == b.keys()
    assert any(n.startswith("generator_ema/") for n in a) and any(n.startswith("rng/") for n in a)
    # same process, same machine, same ops: resuming must not change a single bit (EMA, Adam, RNG included)
    assert [n for n in a if not np.array_equal(a[n], b[n])] == []


# ------------------------------------------------------------------------------------------ DiffAugment
def test_diffaugment_keeps_shapes_and_moves_or_cuts_pixels():
    from gan.diffaugment import cutout, diff_augment, translate

    x = tf.ones([8, 64, 64, 3])
    rng = tf.random.Generator.from_seed(1)
    out = diff_augment(x, rng)
    assert out.shape == x.shape and out.dtype == x.dtype
    # cutout of side 16 fully inside the image zeroes at most 16 × 16 pixels, at least 8 × 8 (border overhang)
    cut = cutout(x, tf.random.Generator.from_seed(2), 0.25).numpy()
    zeros = (cut[..., 0] == 0).sum(axis=(1, 2))
    assert ((zeros <= 256) & (zeros >= 64)).all() and (zeros == 256).any()
    # translation by at most 8 px: a single bright pixel stays one bright pixel, within 8 px of where it was
    dot = np.zeros([8, 64, 64, 3], np.float32)
    dot[:, 32, 32] = 1.0
    moved = translate(tf.constant(dot), tf.random.Generator.from_seed(3), 0.125).numpy()
    ys, xs = np.nonzero(moved[..., 0].reshape(8, 64, 64).sum(axis=0))
    assert moved.sum() == 8 * 3 and (np.abs(ys - 32) <= 8).all() and (np.abs(xs - 32) <= 8).all()
    assert len(set(zip(ys.tolist(), xs.tolist()))) > 1  # different shifts per image


def test_sampling_is_never_augmented(work):
    from gan.trainer import build_trainer

    _, cache = work
    trainer = build_trainer(_cfg(cache))
    cond = _batch(cache)[1]
    z = tf.random.stateless_normal([4, 8], seed=[0, 1])
    state = trainer.rng.state.numpy().copy()
    a, b = trainer.sample(cond, z).numpy(), trainer.sample(cond, z).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(state, trainer.rng.state.numpy())  # no random draw at sampling


# ------------------------------------------------------------------------------------------ hard negatives
def test_hard_negatives_come_from_other_images_inside_the_band_and_are_keyed_by_step():
    from gan.negatives import HardNegatives

    rng = np.random.default_rng(0)
    base = rng.standard_normal((1, 32))
    # 40 images × 5 captions: image i's captions are noisy copies of a direction that drifts with i
    dirs = base + 0.15 * np.cumsum(rng.standard_normal((40, 32)), axis=0)
    vectors = np.repeat(dirs, 5, axis=0) + 0.05 * rng.standard_normal((200, 32))
    caption_image = np.repeat(np.arange(40), 5)
    miner = HardNegatives(vectors, caption_image, np.arange(40), share=1.0, low=0.8, high=0.97, pool=200, seed=0)
    images = np.array([3, 10, 20, 30])
    rows = images * 5
    cond = vectors[rows].astype(np.float32)
    wrong = np.full((4, 1), -1)  # a sentinel: what is not replaced stays -1
    mined = miner.mine(5, cond, images, wrong)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    replaced = mined[:, 0] != wrong[:, 0]
    assert replaced.sum() >= 3 and miner.stats["mined"] == replaced.sum()
    for b in np.flatnonzero(replaced):
        assert caption_image[mined[b, 0]] != images[b]
        assert 0.8 - 1e-3 <= unit[rows[b]] @ unit[mined[b, 0]] <= 0.97 + 1e-3
    np.testing.assert_array_equal(mined, miner.mine(5, cond, images, wrong))  # a pure function of the step
    every_thread = HardNegatives(vectors, caption_image, np.arange(40), 1.0, 0.8, 0.97, 200, 0, blas_threads=None)
    np.testing.assert_array_equal(mined, every_thread.mine(5, cond, images, wrong))  # threads change only speed
    none = HardNegatives(vectors, caption_image, np.arange(40), 0.0, 0.8, 0.97, 200, 0)
    np.testing.assert_array_equal(none.mine(5, cond, images, wrong), wrong)


def test_centroid_margin_drops_a_caption_that_fits_both_images_and_keeps_one_that_contradicts():
    from gan.negatives import HardNegatives, image_centroids

    e = np.eye(8)
    # image 0 has attributes 1, 2, 3; image 1 has 1, 2 and 4 instead of 3; each caption names two of them
    captions = [e[1] + e[2], e[2] + e[3], e[1] + e[3],  # image 0
                e[1] + e[2], e[2] + e[4], e[1] + e[4]]  # image 1: row 3 fits image 0 too, row 5 names 4
    vectors, caption_image = np.array(captions), np.array([0, 0, 0, 1, 1, 1])
    cond = vectors[[2]].astype(np.float32)  # the real caption: image 0's "1 and 3"
    centroids = image_centroids(vectors / np.sqrt(2), caption_image)
    np.testing.assert_allclose(centroids[0], (e[1] + e[2] + e[3]) / np.sqrt(3), atol=1e-6)

    def picks(margin):
        miner = HardNegatives(vectors, caption_image, np.arange(2), 1.0, 0.4, 0.9, 64, seed=0, margin=margin)
        rows = {int(miner.mine(s, cond, np.array([0]), np.full((1, 1), -1))[0, 0]) for s in range(40)}
        return miner, rows - {-1}  # -1: a step whose pool (6 draws of the 6 rows) held no candidate

    _, plain = picks(0.0)
    assert plain == {3, 5}  # both at cosine 0.5 with the real caption (row 4 is at 0)
    miner, kept = picks(0.1)
    assert kept == {5}  # row 3 describes image 0 as well: margin 2/√6 − 2/√6 = 0
    np.testing.assert_allclose(miner.centroid_margin(np.array([3, 5]), np.array([0]))[0], [0.0, 1 / np.sqrt(6)],
                               atol=2e-3)  # float16 storage


def test_spatial_projection_is_the_pooled_one_when_every_position_shares_w_and_reads_the_layout():
    from gan import dfgan

    name, side, ch = "proj4", 4, 32  # ndf=4: 8·ndf channels at 4×4 (the 8×8 term is always pooled)

    def term(head):  # the one projection term alone: [f8, f4, text] -> [B]
        return keras.Model(head.inputs, head.get_layer(f"{name}_flat").output)

    keras.utils.set_random_seed(3)
    _, pooled = dfgan.build_discriminator(16, ndf=4)
    _, spatial = dfgan.build_discriminator(16, ndf=4, **{name: "spatial"})
    w = pooled.get_layer(f"{name}_w").kernel.numpy()  # [16, ch]
    positions = side * side
    assert spatial.get_layer(f"{name}_w").kernel.shape == (16, positions * ch)  # one W per position
    other = "proj8"
    assert spatial.get_layer(f"{other}_w").kernel.shape == pooled.get_layer(f"{other}_w").kernel.shape  # untouched
    rng = np.random.default_rng(0)
    f8, f4 = rng.normal(size=(3, 8, 8, 16)).astype("float32"), rng.normal(size=(3, 4, 4, 32)).astype("float32")
    text = rng.normal(size=(3, 16)).astype("float32")
    f = f4
    feed = lambda feats: [f8, feats, text]  # noqa: E731
    expected = np.einsum("bc,bc->b", f.mean((1, 2)), text @ w)  # ⟨mean(f), W·t⟩
    np.testing.assert_allclose(term(pooled)(feed(f)).numpy(), expected, rtol=1e-4, atol=1e-6)
    spatial.get_layer(f"{name}_w").kernel.assign(np.tile(w, (1, positions)))  # W_ij = W at every position
    np.testing.assert_allclose(term(spatial)(feed(f)).numpy(), expected, rtol=1e-4, atol=1e-6)
    # its own weights per position: moving the features to other positions changes the spatial term only
    spatial.get_layer(f"{name}_w").kernel.assign(rng.normal(size=(16, positions * ch)).astype("float32"))
    flipped = f[:, ::-1, ::-1]
    np.testing.assert_allclose(term(pooled)(feed(flipped)).numpy(), expected, rtol=1e-4, atol=1e-6)
    a, b = term(spatial)(feed(f)).numpy(), term(spatial)(feed(flipped)).numpy()
    assert np.all(np.abs(a - b) > 1e-3)
    with pytest.raises(ValueError, match=f"{name}='grid': expected one of pooled, spatial"):
        dfgan.build_discriminator(16, ndf=4, **{name: "grid"})


def test_each_d_layer_draws_its_own_seeded_initial_weights():
    from gan import dfgan

    def kernels():
        keras.utils.set_random_seed(5)
        enc, head = dfgan.build_discriminator(16, ndf=4)
        return [enc.get_layer(f"conv{i}").kernel.numpy().ravel()[:40] for i in range(4)] + \
            [head.get_layer("proj8_w").kernel.numpy().ravel()[:40]]

    first, again = kernels(), kernels()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # the seed decides
    prefixes = [k[:40].tobytes() for k in first]
    assert len(set(prefixes)) == len(prefixes)  # no layer starts with another layer's numbers


def test_training_puts_the_global_dtype_policy_back(work):
    from gan.config import resolve
    from gan.data import read_cache
    from gan.loop import train

    tmp, cache = work
    cfg = resolve(dict(embeddings=str(cache), run_dir=str(tmp / "policy"), steps=1, ngf=8, ndf=8, batch_size=4,
                       z_dim=8, c_dim=8, mixed_precision="bf16", num_sample_captions=2, num_sample_z=1), False)
    result = train(replace(cfg, cache=read_cache(cache).info), echo=False)
    assert result.step == 1 and json.loads((result.run_dir / "config.json").read_text())["run"]["policy"] == \
        "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # what runs next (an evaluation) is float32
