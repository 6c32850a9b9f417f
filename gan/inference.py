"""Loading a trained generator from a run folder and drawing images with it (no training code).

    gen, cfg = load_generator("runs/00003-synthetic-flowers-minilm")      # latest checkpoint
    images = gen(vectors, seed=0)      # vectors float [B, D] (ta80: list of caption strings) -> uint8 [B, 64, 64, 3]

generate.py, the web server (tools/serve) and evaluation use this module; the training side (gan/trainer.py,
gan/loop.py) writes the checkpoints under the key names below and samples its grids with sample_images.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gan.archs import get_arch
from gan.conditioning import sampling_eps
from gan.config import GENERATOR_WEIGHTS, GanConfig, check_ca_noise
from tools.errors import UserError

# checkpoint keys load_generator reads (gan.trainer.checkpoint_objects writes these and the optimizers, D, RNG)
GENERATOR, GENERATOR_EMA, TEXT_ENCODER, STEP = "generator", "generator_ema", "text_encoder", "step"


def sample_images(generator, text_encoder, has_ca: bool, cond, z, ca_noise: float = 0.0):
    """[B, D] vectors (or [B, T] ta80 word ids; for a generator with word inputs, packed rows [B, D + L·E + 1]:
    gan/words.py), z [B, Z] -> uint8 [B, 64, 64, 3]; inference BN.
    With CA, c = μ + σ·ε where ε = gan.conditioning.sampling_eps(z, c_dim, ca_noise): μ alone when ca_noise is 0."""
    words = ()
    if len(generator.inputs) == 5:  # [text, z, eps, words, lengths]: gan/words.py's packed conditions
        from gan.words import unpack

        (_, dim), (_, length, word_dim) = generator.inputs[0].shape, generator.inputs[3].shape
        cond, *words = unpack(tf.cast(cond, tf.float32), dim, length, word_dim)
    if text_encoder is None:
        text = tf.cast(cond, tf.float32)
    else:
        text = text_encoder(cond, training=False)
    if has_ca:
        eps = sampling_eps(z, generator.get_layer("ca").c_dim, ca_noise)
        image = generator([text, z, eps, *words], training=False)[0]
    else:
        image = generator([text, z], training=False)
    return tf.cast(tf.clip_by_value(tf.round((image + 1.0) * 127.5), 0, 255), tf.uint8)


class TrainedGenerator:
    """A trained generator rebuilt from a run folder. Call it with conditions and (optionally) z."""

    def __init__(self, generator, text_encoder, vocab, cfg: GanConfig, step: int, checkpoint: str,
                 ca_noise: float | None = None):
        self.config, self.step, self.checkpoint = cfg, step, checkpoint
        self.z_dim = cfg.z_dim
        self._arch = arch = get_arch(cfg.arch)
        self.needs = arch.reads  # what __call__ takes as conditions: "vectors" or "texts"
        # the CA noise scale of every sample (sample_images): the run's ca_noise unless given; 0 without CA
        self.ca_noise = float(cfg.ca_noise if ca_noise is None else ca_noise) if arch.has_ca else 0.0
        self.model = generator  # the keras generator: [text, z, eps] -> [image, μ, log σ²] (no CA: [text, z] -> image)
        self._text_encoder, self._vocab = text_encoder, vocab
        has_ca, scale = arch.has_ca, self.ca_noise
        sample = lambda cond, z: sample_images(generator, text_encoder, has_ca, cond, z, scale)  # noqa: E731
        self._fn = tf.function(sample, reduce_retracing=True)  # one shape-generic graph for any batch size
        self._fixed = tf.function(sample)  # one graph per padded batch size (pad_to): 10-20 % faster on CPU

    def __call__(self, conditions, z=None, seed: int | None = 0, pad_to: int | None = None) -> np.ndarray:
        """conditions: float [B, D] text vectors, or B caption strings for an arch that reads texts (ta80); z: [B, Z] or None (drawn
        from N(0, 1) with `seed`). Returns uint8 [B, 64, 64, 3].
        pad_to: run the batch padded to this many rows (>= B) through a graph traced for exactly that size; rows
        are independent (no batch statistics at sampling), so the B images are the same up to float rounding.
        A server that pads to a few sizes (tools/serve/engine.py) keeps a few fixed-shape graphs."""
        if self.needs == "texts":
            cond = tf.constant(self._arch.encode(list(conditions), self._vocab))
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
    arch = get_arch(cfg.arch)
    vocab = arch.sampling_vocab(run_dir)
    with float32_policy():
        g, _, _, text = arch.build(cfg, len(vocab or []))
    step = tf.Variable(0, dtype=tf.int64)
    objs = {STEP: step, **({TEXT_ENCODER: text} if text is not None else {})}
    objs[GENERATOR_EMA if use_ema else GENERATOR] = g
    tf.train.Checkpoint(**objs).read(path).expect_partial()
    return TrainedGenerator(g, text, vocab, cfg, int(step.numpy()), path, ca_noise), cfg
