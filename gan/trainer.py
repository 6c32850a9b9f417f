"""The GAN as a `keras.Model` (keras-io style): `compile(d_optimizer, g_optimizer)`, a `train_step` that reads
as phases and returns its losses, and `load_generator` for generate.py.

    gen, cfg = load_generator("runs/00003-synthetic-flowers-minilm")      # latest checkpoint
    images = gen(vectors, seed=0)      # vectors float [B, D] (ta80: list of caption strings) -> uint8 [B, 64, 64, 3]

One forward pass feeds both updates (simultaneous G/D updates, as in the TF DCGAN tutorial and the course
baseline): this saves a second discriminator pass over the fakes. Randomness (z, CA noise, augmentation)
comes from a `tf.random.Generator` that lives in the checkpoint, so a resumed run draws the same numbers.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gan import losses as L
from gan.conditioning import sampling_eps
from gan.config import CA_ARCHS, GENERATOR_WEIGHTS, GanConfig, check_ca_noise, d_norm
from gan.dfgan import text_scale as dfgan_text_scale
from gan.diffaugment import diff_augment, parse_policy
from gan.ema import GeneratorEMA
from tools.errors import UserError


def augment_images(x, rng: tf.random.Generator, shift_px: int):
    """Random horizontal flip and an integer shift of up to ±shift_px (reflect padding), per sample.
    [B, H, W, 3] -> [B, H, W, 3]."""
    b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    flip = rng.uniform([b, 1, 1, 1]) < 0.5
    x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    if shift_px <= 0:
        return x
    x = tf.pad(x, [[0, 0], [shift_px, shift_px], [shift_px, shift_px], [0, 0]], mode="REFLECT")
    dy = rng.uniform_full_int([b, 1], dtype=tf.int32) % (2 * shift_px + 1)  # [B, 1] in [0, 2s]
    dx = rng.uniform_full_int([b, 1], dtype=tf.int32) % (2 * shift_px + 1)
    x = tf.gather(x, dy + tf.range(h)[None, :], axis=1, batch_dims=1)  # [B, H, W + 2s, 3]
    return tf.gather(x, dx + tf.range(w)[None, :], axis=2, batch_dims=1)  # [B, H, W, 3]


class GanTrainer(keras.Model):
    """G, D (encoder + conditional head) and, for ta80, the GRU text encoder trained by D's loss."""

    def __init__(self, generator, d_encoder, d_head, text_encoder=None, *, cfg: GanConfig, ema_copy=None, **kwargs):
        super().__init__(**kwargs)
        self.generator, self.d_encoder, self.d_head, self.text_encoder = generator, d_encoder, d_head, text_encoder
        self.has_ca = cfg.arch in CA_ARCHS
        self.ca_noise = cfg.ca_noise  # the sample grids' CA noise scale (sample_images)
        # the generator that samples: the EMA copy when there is one (`ema_copy`, same architecture)
        self.ema = GeneratorEMA(generator, ema_copy, cfg.ema_decay) if ema_copy is not None else None
        self.sampler = ema_copy if ema_copy is not None else generator
        self.diffaug = parse_policy(cfg.diffaug)
        self.diffaug_translation, self.diffaug_cutout = cfg.diffaug_translation, cfg.diffaug_cutout
        self.magp_every = cfg.magp_every
        # D's view of the text: dfgan's D reads unit-scale vectors (gan.dfgan.text_scale), the others the raw ones
        self.d_text_scale = dfgan_text_scale(cfg.cache.dim) if cfg.arch == "dfgan" else 1.0
        self.z_dim, self.c_dim = cfg.z_dim, cfg.c_dim
        self.loss_name, self.kl_weight = cfg.loss, cfg.kl_weight
        self.mode_seeking = cfg.mode_seeking  # λ of MSGAN's term on the first quarter of the batch (0: off)
        self.contrastive = cfg.contrastive  # λ of the batch contrastive term on D's projection scores (0: off)
        self.magp_weight, self.magp_power = cfg.magp_weight, cfg.magp_power
        self.augment, self.shift_px = cfg.augment, cfg.shift_px
        self.g_loss_fn, self.d_loss_fn = L.LOSS_FAMILIES[cfg.loss]
        self.rng = tf.random.Generator.from_seed(cfg.seed)
        self.d_tracker = keras.metrics.Mean(name="d")
        self.g_tracker = keras.metrics.Mean(name="g")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def compile(self, d_optimizer, g_optimizer):
        super().compile()
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        # create the optimizer slots now, so a checkpoint restores into them
        d_optimizer.build(self.d_variables)
        g_optimizer.build(self.g_variables)

    @property
    def d_variables(self):
        text = self.text_encoder.trainable_variables if self.text_encoder is not None else []
        return self.d_encoder.trainable_variables + self.d_head.trainable_variables + text

    @property
    def g_variables(self):
        return self.generator.trainable_variables

    @property
    def metrics(self):
        return [self.d_tracker, self.g_tracker, self.kl_tracker]

    def text(self, cond, training=False):
        """Cached vectors pass through; ta80 word ids [B, T] -> GRU -> [B, 128]."""
        if self.text_encoder is None:
            return tf.cast(cond, tf.float32)
        return self.text_encoder(cond, training=training)

    def generate(self, text, z, eps, training=False):
        """-> (image [B, 64, 64, 3] float32 in [-1, 1], KL term)."""
        if self.has_ca:
            image, mu, logvar = self.generator([text, z, eps], training=training)
            return image, L.kl_divergence(mu, logvar)
        return self.generator([text, z], training=training), tf.constant(0.0)

    def _mode_seeking(self, text, fake, z, eps):
        """MSGAN's term on the first quarter of the batch (at least one row): its captions drawn again with fresh
        z and ε, the images compared with `fake`'s rows. One more G pass over B/4 rows; the extra images go to
        no discriminator. -> scalar L_ms (gan.losses.mode_seeking_loss)."""
        k = tf.maximum(tf.shape(z)[0] // 4, 1)
        z2, eps2 = self.rng.normal([k, self.z_dim]), self.rng.normal([k, self.c_dim])
        fake2, _ = self.generate(text[:k], z2, eps2, training=True)
        noise, noise2 = (tf.concat([z[:k], eps[:k]], 1), tf.concat([z2, eps2], 1)) if self.has_ca else (z[:k], z2)
        return L.mode_seeking_loss(fake[:k], fake2, noise, noise2)

    def _contrastive(self, features, text):
        """Mean over the batch of CE(softmax_j S[i, :], i), S = D's projection scores of every (image i, caption j)
        pair (gan.dfgan.pair_scores): image i's own caption against the batch's others. -> scalar float32.
        On R replicas each scores its b images against the captions of the GLOBAL batch (gathered; the cached text
        vectors carry no gradient), so the R per-replica means make the single-device loss (gan/strategy.py)."""
        from gan.dfgan import pair_scores

        b = tf.shape(text)[0]
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            offset = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * b  # this replica's rows of the global batch
            text = ctx.all_gather(tf.stop_gradient(text), axis=0)  # [R·b, D]
        else:
            offset = 0
        scores = pair_scores(self.d_head, *features, text)  # [b, R·b]
        labels = offset + tf.range(b)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, scores))

    def _d_loss(self, real_logits, wrong_logits, fake_logits, gp_tape, gp_inputs, penalty: bool):
        if self.loss_name == "magp" and penalty:
            # lazy MA-GP: every k-th step with weight ×k has the same expected penalty at 1/k of its cost
            norms = L.gradient_norms(gp_tape.gradient(real_logits, gp_inputs))  # [B]
            return L.magp_discriminator_loss(real_logits, wrong_logits, fake_logits, norms,
                                             self.magp_weight * self.magp_every, self.magp_power)
        if self.loss_name == "magp":
            return L.hinge_discriminator_loss(real_logits, wrong_logits, fake_logits)
        return self.d_loss_fn(real_logits, wrong_logits, fake_logits)

    def penalty_due(self, step: int) -> bool:
        """Whether step `step` (0-based) carries the MA-GP term; a Python bool, so each case is one trace."""
        return self.loss_name == "magp" and step % self.magp_every == 0

    def augment_for_d(self, x):
        """DiffAugment before D (identity when the policy is empty). [B, 64, 64, 3] -> same."""
        if not self.diffaug:
            return x
        return diff_augment(x, self.rng, self.diffaug, self.diffaug_translation, self.diffaug_cutout)

    def discriminate(self, features, text, training=True):
        """D head on encoder features (one tensor, or a list for multi-scale encoders) and a text vector -> [B]."""
        feats = list(features) if isinstance(features, (list, tuple)) else [features]
        return self.d_head([*feats, text], training=training)

    def train_step(self, data, penalty: bool = True):
        """One simultaneous D and G update. `penalty`: include the MA-GP term (loss magp; see penalty_due)."""
        images, cond, wrong_cond = data  # uint8 [B, 64, 64, 3]; [B, D] float (ta80: [B, T] int32) ×2
        real = tf.cast(images, tf.float32) / 127.5 - 1.0  # [B, 64, 64, 3] in [-1, 1]
        if self.augment:
            real = augment_images(real, self.rng, self.shift_px)
        b = tf.shape(real)[0]
        z = self.rng.normal([b, self.z_dim])  # [B, Z]
        eps = self.rng.normal([b, self.c_dim])  # [B, C] CA noise

        with tf.GradientTape() as d_tape, tf.GradientTape() as g_tape:
            # text: cached vectors, or the ta80 GRU (part of D: only D's loss trains it)
            t_real, t_wrong = self.text(cond, training=True), self.text(wrong_cond, training=True)
            # generate
            fake, kl = self.generate(tf.stop_gradient(t_real), z, eps, training=True)
            g_ms = self._mode_seeking(tf.stop_gradient(t_real), fake, z, eps) if self.mode_seeking else 0.0
            t_real, t_wrong = t_real * self.d_text_scale, t_wrong * self.d_text_scale  # what D reads
            # discriminate: the real images' features serve the real and the wrong pair
            # DiffAugment: one draw for the real images (real and wrong pair), one for the fakes (D and G alike)
            real_seen, fake_seen = self.augment_for_d(real), self.augment_for_d(fake)
            with tf.GradientTape(watch_accessed_variables=False) as gp_tape:
                gp_inputs = [real_seen, t_real]
                gp_tape.watch(gp_inputs)
                real_features = self.d_encoder(real_seen, training=True)
                real_logits = self.discriminate(real_features, t_real)  # [B]
            wrong_logits = self.discriminate(real_features, t_wrong)  # [B]
            fake_features = self.d_encoder(fake_seen, training=True)
            fake_logits = self.discriminate(fake_features, t_real)  # [B]
            # losses (float32)
            d_loss = self._d_loss(real_logits, wrong_logits, fake_logits, gp_tape, gp_inputs, penalty)
            g_adv = self.g_loss_fn(fake_logits)
            g_loss = g_adv + self.kl_weight * kl + self.mode_seeking * g_ms
            if self.contrastive:
                d_loss += self.contrastive * self._contrastive(real_features, t_real)
                g_loss += self.contrastive * self._contrastive(fake_features, t_real)
            d_scaled = self.d_optimizer.scale_loss(d_loss)  # loss scaling under mixed precision
            g_scaled = self.g_optimizer.scale_loss(g_loss)

        # update D and G from the same forward pass
        d_grads = d_tape.gradient(d_scaled, self.d_variables)
        g_grads = g_tape.gradient(g_scaled, self.g_variables)
        self.d_optimizer.apply(d_grads, self.d_variables)
        self.g_optimizer.apply(g_grads, self.g_variables)
        if self.ema is not None:
            self.ema.update(self.g_optimizer.iterations - 1)

        self.d_tracker.update_state(d_loss)
        self.g_tracker.update_state(g_adv)
        self.kl_tracker.update_state(kl)
        return {"d": d_loss, "g": g_adv, "kl": kl}

    def sample(self, cond, z):
        """Deterministic samples from the sampling generator (the EMA copy when on; CA noise ε from z at the
        run's ca_noise scale, ε = 0 when 0; BN in inference mode; never augmented): -> uint8 [B, 64, 64, 3]."""
        return sample_images(self.sampler, self.text_encoder, self.has_ca, cond, z, self.ca_noise)


def sample_images(generator, text_encoder, has_ca: bool, cond, z, ca_noise: float = 0.0):
    """[B, D] vectors (or [B, T] ta80 word ids), z [B, Z] -> uint8 [B, 64, 64, 3]; inference BN.
    With CA, c = μ + σ·ε where ε = gan.conditioning.sampling_eps(z, c_dim, ca_noise): μ alone when ca_noise is 0."""
    if text_encoder is None:
        text = tf.cast(cond, tf.float32)
    else:
        text = text_encoder(cond, training=False)
    if has_ca:
        eps = sampling_eps(z, generator.get_layer("ca").c_dim, ca_noise)
        image = generator([text, z, eps], training=False)[0]
    else:
        image = generator([text, z], training=False)
    return tf.cast(tf.clip_by_value(tf.round((image + 1.0) * 127.5), 0, 255), tf.uint8)


def build_trainer(cfg: GanConfig, vocab_size: int = 0) -> GanTrainer:
    """Models for cfg.arch with Adam(lr, β1, β2) optimizers (loss-scaled under a mixed_float16 policy)."""
    g, d_enc, d_head, text = build_models(cfg, vocab_size)
    ema_copy = build_models(cfg, vocab_size, generator_only=True) if cfg.ema else None
    trainer = GanTrainer(g, d_enc, d_head, text, cfg=cfg, ema_copy=ema_copy)
    mixed = keras.mixed_precision.global_policy().name == "mixed_float16"

    def adam(lr):
        opt = keras.optimizers.Adam(lr, beta_1=cfg.beta1, beta_2=cfg.beta2)
        return keras.optimizers.LossScaleOptimizer(opt) if mixed else opt

    trainer.compile(d_optimizer=adam(cfg.lr_d), g_optimizer=adam(cfg.lr_g))
    return trainer


def build_models(cfg: GanConfig, vocab_size: int = 0, generator_only: bool = False):
    """(generator, d_encoder, d_head, text_encoder or None) for cfg.arch, built under the global dtype policy;
    with generator_only, just a generator (the EMA copy; ta80 has no EMA)."""
    if cfg.arch == "ta80":
        from gan import ta80

        text = ta80.build_text_encoder(vocab_size, cfg.ta80_embed_dim, cfg.ta80_rnn_dim)
        g = ta80.build_generator(cfg.ta80_rnn_dim, cfg.z_dim, cfg.ta80_dense_dim)
        if generator_only:
            return g
        d_enc, d_head = ta80.build_discriminator(cfg.ta80_rnn_dim, cfg.ta80_dense_dim)
        return g, d_enc, d_head, text
    if cfg.arch == "dfgan":
        from gan import dfgan

        g = dfgan.build_generator(cfg.cache.dim, cfg.z_dim, cfg.c_dim, cfg.ngf, cfg.upsample)
        if generator_only:
            return g
        return (g, *dfgan.build_discriminator(cfg.cache.dim, cfg.ndf, proj4=cfg.proj4, proj8=cfg.proj8), None)
    from gan import models

    g = models.build_generator(cfg.cache.dim, cfg.z_dim, cfg.c_dim, cfg.ngf)
    if generator_only:
        return g
    d_enc, d_head = models.build_discriminator(cfg.cache.dim, cfg.ndf, d_norm(cfg))
    return g, d_enc, d_head, None


def checkpoint_objects(trainer: GanTrainer, step: tf.Variable) -> dict:
    """What a checkpoint holds (names are the checkpoint keys load_generator relies on)."""
    objs = dict(generator=trainer.generator, d_encoder=trainer.d_encoder, d_head=trainer.d_head,
                g_optimizer=trainer.g_optimizer, d_optimizer=trainer.d_optimizer, rng=trainer.rng, step=step)
    if trainer.text_encoder is not None:
        objs["text_encoder"] = trainer.text_encoder
    if trainer.ema is not None:
        objs["generator_ema"] = trainer.ema.model
    return objs


class TrainedGenerator:
    """A trained generator rebuilt from a run folder. Call it with conditions and (optionally) z."""

    def __init__(self, generator, text_encoder, vocab, cfg: GanConfig, step: int, checkpoint: str,
                 ca_noise: float | None = None):
        self.config, self.step, self.checkpoint = cfg, step, checkpoint
        self.z_dim = cfg.z_dim
        self.needs = "texts" if cfg.arch == "ta80" else "vectors"  # what __call__ takes as conditions
        # the CA noise scale of every sample (sample_images): the run's ca_noise unless given; 0 without CA
        self.ca_noise = 0.0 if cfg.arch not in CA_ARCHS else float(cfg.ca_noise if ca_noise is None else ca_noise)
        self.model = generator  # the keras generator: [text, z, eps] -> [image, μ, log σ²] (ta80: [text, z] -> image)
        self._text_encoder, self._vocab = text_encoder, vocab
        has_ca, scale = cfg.arch in CA_ARCHS, self.ca_noise
        sample = lambda cond, z: sample_images(generator, text_encoder, has_ca, cond, z, scale)  # noqa: E731
        self._fn = tf.function(sample, reduce_retracing=True)  # one shape-generic graph for any batch size
        self._fixed = tf.function(sample)  # one graph per padded batch size (pad_to): 10-20 % faster on CPU

    def __call__(self, conditions, z=None, seed: int | None = 0, pad_to: int | None = None) -> np.ndarray:
        """conditions: float [B, D] text vectors (stackgan) or B caption strings (ta80); z: [B, Z] or None (drawn
        from N(0, 1) with `seed`). Returns uint8 [B, 64, 64, 3].
        pad_to: run the batch padded to this many rows (>= B) through a graph traced for exactly that size; rows
        are independent (no batch statistics at sampling), so the B images are the same up to float rounding.
        A server that pads to a few sizes (tools/serve/engine.py) keeps a few fixed-shape graphs."""
        if self.needs == "texts":
            from gan import ta80

            cond = tf.constant(ta80.encode_texts(list(conditions), self._vocab))
        else:
            cond = tf.constant(np.asarray(conditions, np.float32))
        n = int(cond.shape[0])
        if z is None:
            z = np.random.default_rng(seed).standard_normal((n, self.z_dim)).astype(np.float32)
        z = tf.constant(np.asarray(z, np.float32))
        if pad_to is None:
            return self._fn(cond, z).numpy()
        if pad_to < n:
            raise ValueError(f"pad_to={pad_to} is less than the batch ({n} rows)")
        pad = lambda t: tf.concat([t, tf.zeros([pad_to - n, *t.shape[1:]], t.dtype)], 0)  # noqa: E731
        return self._fixed(pad(cond), pad(z)).numpy()[:n]


@contextmanager
def float32_policy():
    """Build models in float32 whatever the training policy (mixed bf16/f16), then put the global policy back."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)


def load_generator(run_dir, checkpoint=None, weights="auto", ca_noise: float | None = None):
    """Rebuild G from `run_dir/config.json` and restore it from a checkpoint.

    checkpoint: None (latest in run_dir/checkpoints), an int step, or a checkpoint path prefix.
    weights: "auto" (a run trained with `ema` gets its EMA generator, the checkpoint's `generator_ema`, as its
    samples did; others the raw G), "ema" or "raw" (the trained G itself: the EMA ablation of the same run, since
    the EMA never feeds back into training).
    ca_noise: CA noise scale s of sampling, c = μ + s·σ·ε(z) (gan.conditioning.sampling_eps); None: the run's
    config value (0, CA's mean, for runs made before the option). Changes samples, never the weights.
    Returns (TrainedGenerator, GanConfig). The generator is built in float32 whatever the training policy.
    """
    from gan.run_dir import find_checkpoint, load_config

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    if weights not in GENERATOR_WEIGHTS:
        raise ValueError(f"weights={weights!r}: expected one of {', '.join(GENERATOR_WEIGHTS)}")
    if ca_noise is not None:
        check_ca_noise(ca_noise)
    if weights == "ema" and not cfg.ema:
        raise UserError(f"{run_dir}: trained without ema, so its checkpoints hold no EMA generator; "
                        "use the raw weights (the default for this run)")
    use_ema = cfg.ema if weights == "auto" else weights == "ema"
    path = find_checkpoint(run_dir, checkpoint)
    vocab = json.loads((run_dir / "vocab.json").read_text()) if cfg.arch == "ta80" else None
    with float32_policy():
        g, _, _, text = build_models(cfg, len(vocab or []))
    step = tf.Variable(0, dtype=tf.int64)
    objs = dict(step=step, **({"text_encoder": text} if text is not None else {}))
    objs["generator_ema" if use_ema else "generator"] = g
    tf.train.Checkpoint(**objs).read(path).expect_partial()
    return TrainedGenerator(g, text, vocab, cfg, int(step.numpy()), path, ca_noise), cfg
