"""The GAN as a `keras.Model` (keras-io style): `compile(d_optimizer, g_optimizer)`, a `train_step` that reads
as phases and returns its losses, and what a checkpoint holds. Sampling a trained run: gan/inference.py.

    trainer = build_trainer(cfg, vocab_size)      # models of cfg.arch (gan/archs.py), both optimizers
    losses = trainer.train_step((images, cond, wrong_cond))      # {"d", "g", "kl"}

One forward pass feeds both updates (simultaneous G/D updates, as in the TF DCGAN tutorial and the course
baseline): this saves a second discriminator pass over the fakes. Randomness (z, CA noise, augmentation)
comes from a `tf.random.Generator` that lives in the checkpoint, so a resumed run draws the same numbers.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from gan import inference as I
from gan import losses as L
from gan.archs import get_arch
from gan.aux_head import CHECKPOINT_KEY as AUX_KEY
from gan.aux_head import aux_losses, build_aux_head
from gan.config import GanConfig
from gan.diffaugment import diff_augment, parse_policy
from gan.ema import GeneratorEMA


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
    """G, D (encoder + conditional head) and, for an arch that reads raw text (ta80), its text encoder trained by
    D's loss."""

    def __init__(self, generator, d_encoder, d_head, text_encoder=None, *, cfg: GanConfig, ema_copy=None,
                 aux_head=None, **kwargs):
        super().__init__(**kwargs)
        self.aux_head, self.aux_class = aux_head, cfg.aux_class  # TAC-GAN class head and its weight (gan/aux_head.py)
        self.generator, self.d_encoder, self.d_head, self.text_encoder = generator, d_encoder, d_head, text_encoder
        self.arch = arch = get_arch(cfg.arch)
        self.has_ca = arch.has_ca
        self.ca_noise = cfg.ca_noise  # the sample grids' CA noise scale (sample_images)
        # the generator that samples: the EMA copy when there is one (`ema_copy`, same architecture)
        self.ema = GeneratorEMA(generator, ema_copy, cfg.ema_decay) if ema_copy is not None else None
        self.sampler = ema_copy if ema_copy is not None else generator
        self.diffaug = parse_policy(cfg.diffaug)
        self.diffaug_translation, self.diffaug_cutout = cfg.diffaug_translation, cfg.diffaug_cutout
        self.magp_every = cfg.magp_every
        # D's view of the text: dfgan's D reads unit-scale vectors (gan.dfgan.text_scale), the others the raw ones
        self.d_text_scale = arch.d_text_scale(cfg)
        self.z_dim, self.c_dim = cfg.z_dim, cfg.c_dim
        self.loss_name, self.kl_weight = cfg.loss, cfg.kl_weight
        self.contrastive = cfg.contrastive  # λ of the batch contrastive term on D's projection scores (0: off)
        # with an exchanged-caption cache each batch ends with the exchanged rows' mask; exchanged_g / exchanged_d
        # weigh G's and D's binding terms
        self.has_exchanged = bool(cfg.exchanged_cache)
        self.exchanged_g, self.exchanged_d = cfg.exchanged_g, cfg.exchanged_d
        self.magp_weight, self.magp_power = cfg.magp_weight, cfg.magp_power
        self.augment, self.shift_px = cfg.augment, cfg.shift_px
        self.g_loss_fn, self.d_loss_fn = L.LOSS_FAMILIES[cfg.loss]
        self.rng = tf.random.Generator.from_seed(cfg.seed)
        self.d_tracker = keras.metrics.Mean(name="d")
        self.g_tracker = keras.metrics.Mean(name="g")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.aux_tracker = keras.metrics.Mean(name="cls") if aux_head is not None else None  # D's CE on real images

    def compile(self, d_optimizer, g_optimizer):
        super().compile()
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        # create the optimizer slots now, so a checkpoint restores into them
        d_optimizer.build(self.d_variables)
        g_optimizer.build(self.g_variables)

    @property
    def d_variables(self):
        text = self.text_encoder.trainable_variables if self.text_encoder is not None else []
        aux = self.aux_head.trainable_variables if self.aux_head is not None else []
        return self.d_encoder.trainable_variables + self.d_head.trainable_variables + text + aux

    @property
    def g_variables(self):
        return self.generator.trainable_variables

    @property
    def metrics(self):
        return [self.d_tracker, self.g_tracker, self.kl_tracker] + ([self.aux_tracker] if self.aux_tracker else [])

    def text(self, cond, training=False):
        """Cached vectors pass through; word ids [B, T] -> the arch's text encoder (ta80: GRU) -> [B, 128]."""
        if self.text_encoder is None:
            return tf.cast(cond, tf.float32)
        return self.text_encoder(cond, training=training)

    def generate(self, text, z, eps, training=False, words=()):
        """-> (image [B, 64, 64, 3] float32 in [-1, 1], KL term). words: (states, lengths) for an arch that reads them."""
        if self.has_ca:
            image, mu, logvar = self.generator([text, z, eps, *words], training=training)
            return image, L.kl_divergence(mu, logvar)
        return self.generator([text, z], training=training), tf.constant(0.0)

    def _contrastive(self, features, text, words=()):
        """Mean over the batch of CE(softmax_j S[i, :], i), S = D's scores of every (image i, caption j) pair
        (the arch's pair_scores, e.g. gan.dfgan.pair_scores): image i's own caption against the batch's others.
        -> scalar float32. On R replicas each scores its b images against the captions (and words) of the GLOBAL
        batch (gathered; the cached text carries no gradient), so the R per-replica means make the single-device
        loss (gan/strategy.py)."""
        b = tf.shape(text)[0]
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            offset = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * b  # this replica's rows of the global batch
            text = ctx.all_gather(tf.stop_gradient(text), axis=0)  # [R·b, D]
            words = tuple(ctx.all_gather(tf.stop_gradient(w), axis=0) for w in words)  # [R·b, L, E], [R·b]
        else:
            offset = 0
        scores = self.arch.pair_scores(self.d_head, features, text, words)  # [b, R·b]
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

    def discriminate(self, features, text, training=True, words=()):
        """D head on encoder features (one tensor, or a list for multi-scale encoders), a text vector and, for an
        arch that reads them, the caption's words (states, lengths) -> [B]."""
        feats = list(features) if isinstance(features, (list, tuple)) else [features]
        return self.d_head([*feats, text, *words], training=training)

    def train_step(self, data, penalty: bool = True):
        """One simultaneous D and G update. `penalty`: include the MA-GP term (loss magp; see penalty_due)."""
        images, cond, wrong_cond, *extra = data  # uint8 [B, S, S, 3]; [B, D] float (ta80: [B, T] int32) ×2
        # an arch that reads words: + (states [B, L, E] float16, lengths [B]) of the matched and mismatched caption;
        # with the auxiliary classifier the images' class ids [B] int32; with exchanged captions, last, their mask [B]
        n_words = 4 if self.arch.words else 0
        words, wrong_words = tuple(extra[:n_words][:2]), tuple(extra[:n_words][2:])
        labels = extra[n_words:n_words + (1 if self.aux_head is not None else 0)]
        exchanged = extra[-1] if self.has_exchanged else None  # float32 [B]: 1 where wrong_cond is exchanged
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
            fake, kl = self.generate(tf.stop_gradient(t_real), z, eps, training=True, words=words)
            t_real, t_wrong = t_real * self.d_text_scale, t_wrong * self.d_text_scale  # what D reads
            # discriminate: the real images' features serve the real and the wrong pair
            # DiffAugment: one draw for the real images (real and wrong pair), one for the fakes (D and G alike)
            real_seen, fake_seen = self.augment_for_d(real), self.augment_for_d(fake)
            with tf.GradientTape(watch_accessed_variables=False) as gp_tape:
                gp_inputs = [real_seen, t_real]
                gp_tape.watch(gp_inputs)
                real_features = self.d_encoder(real_seen, training=True)
                real_logits = self.discriminate(real_features, t_real, words=words)  # [B]
            wrong_logits = self.discriminate(real_features, t_wrong, words=wrong_words)  # [B]
            fake_features = self.d_encoder(fake_seen, training=True)
            fake_logits = self.discriminate(fake_features, t_real, words=words)  # [B]
            # losses (float32)
            d_loss = self._d_loss(real_logits, wrong_logits, fake_logits, gp_tape, gp_inputs, penalty)
            if self.exchanged_d:  # a real image must match its caption better than its exchanged twin
                d_loss += self.exchanged_d * L.binding_rank_loss(real_logits, wrong_logits, exchanged)
            g_adv = self.g_loss_fn(fake_logits)
            g_loss = g_adv + self.kl_weight * kl
            if self.exchanged_g:  # G's image must match its caption better than the exchanged twin D rejects
                fake_exchanged = self.discriminate(fake_features, t_wrong, words=wrong_words)  # [B]
                g_loss += self.exchanged_g * L.binding_rank_loss(fake_logits, fake_exchanged, exchanged)
            if self.contrastive:
                d_loss += self.contrastive * self._contrastive(real_features, t_real, words)
                g_loss += self.contrastive * self._contrastive(fake_features, t_real, words)
            if self.aux_head is not None:  # TAC-GAN: D classifies the real images, G's fakes should show their class
                d_cls, g_cls, _ = aux_losses(self.aux_head, real_features, fake_features, labels[0])
                d_loss += self.aux_class * d_cls
                g_loss += self.aux_class * g_cls
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
        if self.aux_head is not None:
            self.aux_tracker.update_state(d_cls)
            return {"d": d_loss, "g": g_adv, "kl": kl, "cls": d_cls}
        return {"d": d_loss, "g": g_adv, "kl": kl}

    def sample(self, cond, z):
        """Deterministic samples from the sampling generator (the EMA copy when on; CA noise ε from z at the
        run's ca_noise scale, ε = 0 when 0; BN in inference mode; never augmented): -> uint8 [B, 64, 64, 3]."""
        return I.sample_images(self.sampler, self.text_encoder, self.has_ca, cond, z, self.ca_noise)


def build_trainer(cfg: GanConfig, vocab_size: int = 0) -> GanTrainer:
    """Models for cfg.arch with Adam(lr, β1, β2) optimizers (loss-scaled under a mixed_float16 policy)."""
    arch = get_arch(cfg.arch)
    g, d_enc, d_head, text = arch.build(cfg, vocab_size)
    ema_copy = arch.build(cfg, vocab_size, generator_only=True) if cfg.ema else None
    aux = build_aux_head(d_enc, cfg.cache.num_classes) if cfg.aux_class else None
    trainer = GanTrainer(g, d_enc, d_head, text, cfg=cfg, ema_copy=ema_copy, aux_head=aux)
    mixed = keras.mixed_precision.global_policy().name == "mixed_float16"

    def adam(lr):
        opt = keras.optimizers.Adam(lr, beta_1=cfg.beta1, beta_2=cfg.beta2)
        return keras.optimizers.LossScaleOptimizer(opt) if mixed else opt

    trainer.compile(d_optimizer=adam(cfg.lr_d), g_optimizer=adam(cfg.lr_g))
    return trainer


def checkpoint_objects(trainer: GanTrainer, step: tf.Variable) -> dict:
    """What a checkpoint holds (the generator, text encoder and step under the keys gan.inference reads)."""
    objs = {I.GENERATOR: trainer.generator, "d_encoder": trainer.d_encoder, "d_head": trainer.d_head,
            "g_optimizer": trainer.g_optimizer, "d_optimizer": trainer.d_optimizer, "rng": trainer.rng, I.STEP: step}
    if trainer.text_encoder is not None:
        objs[I.TEXT_ENCODER] = trainer.text_encoder
    if trainer.ema is not None:
        objs[I.GENERATOR_EMA] = trainer.ema.model
    if trainer.aux_head is not None:
        objs[AUX_KEY] = trainer.aux_head
    return objs
