"""Exponential moving average of the generator's weights (BigGAN / StyleGAN practice).

The EMA copy is a second generator of the same architecture; after every optimizer step

    w_ema <- d·w_ema + (1 - d)·w,   d = min(decay, (1 + n) / (10 + n)),   n = steps taken so far

(the warm-up of tf.train.ExponentialMovingAverage's num_updates, so early samples are not dominated by the random
initial weights). Sample grids, generate.py and evaluation use the EMA generator; it is saved in the checkpoint
under `generator_ema` and restored on resume.
"""
from __future__ import annotations

import keras
import tensorflow as tf


class GeneratorEMA:
    """Holds `model`, an EMA copy of `generator` (weights copied at creation)."""

    def __init__(self, generator: keras.Model, copy: keras.Model, decay: float):
        if len(copy.weights) != len(generator.weights):
            raise ValueError("EMA copy has another architecture than the generator")
        self.source, self.model, self.decay = generator, copy, decay
        for mine, theirs in zip(copy.weights, generator.weights):
            mine.assign(theirs)

    def decay_at(self, step):
        """The decay in effect after `step` updates (float32 scalar tensor)."""
        n = tf.cast(step, tf.float32)
        return tf.minimum(tf.constant(self.decay, tf.float32), (1.0 + n) / (10.0 + n))

    def update(self, step):
        """One EMA update after optimizer step number `step` (0-based); runs inside the compiled train step.
        Non-trainable weights (none in dfgan's G; BN statistics elsewhere) are copied as they are."""
        d = self.decay_at(step)
        for mine, theirs in zip(self.model.weights, self.source.weights):
            if theirs.trainable:
                mine.assign(d * mine + (1.0 - d) * tf.cast(theirs, mine.dtype))
            else:
                mine.assign(theirs)
