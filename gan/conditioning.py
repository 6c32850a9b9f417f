"""Conditioning augmentation (StackGAN, Zhang et al. 2017, §3.1): a text vector becomes a Gaussian
N(μ, σ²) and the generator sees a sample c = μ + σ·ε, which smooths the sparse text manifold; the KL term
(gan.losses.kl_divergence) keeps that Gaussian near N(0, I).
"""
from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

# seed of the fixed projection that turns a sample's z into its CA noise ε at sampling time (sampling_eps)
SAMPLING_EPS_SEED = 20261205


@keras.saving.register_keras_serializable(package="gan")
class ConditioningAugmentation(keras.layers.Layer):
    """[B, D] text vector, [B, c_dim] noise ε -> (c, μ, log σ²), each [B, c_dim] float32.

    Pass ε = 0 to get the mean (deterministic generation). The layer computes in float32 even under a
    mixed-precision policy: the KL term and exp(½ log σ²) are sensitive to float16 range.
    """

    def __init__(self, c_dim: int = 128, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.c_dim = c_dim
        self.dense = keras.layers.Dense(2 * c_dim, dtype="float32", name="mu_logvar")  # [B, D] -> [B, 2c]

    def build(self, input_shape):
        text_shape = input_shape[0]
        self.dense.build(text_shape)

    def call(self, inputs):
        text, eps = inputs
        h = keras.activations.leaky_relu(self.dense(ops.cast(text, "float32")), 0.2)  # [B, 2c]
        mu, logvar = h[:, : self.c_dim], h[:, self.c_dim :]
        c = mu + ops.exp(0.5 * logvar) * ops.cast(eps, "float32")  # [B, c]
        return c, mu, logvar

    def compute_output_spec(self, inputs):
        # Three distinct KerasTensors: returning one spec three times makes a functional model wire all three
        # outputs to the same node (the last one traced, log σ²), so G would never see μ or ε.
        text, _ = inputs
        shape = (text.shape[0], self.c_dim)
        return tuple(keras.KerasTensor(shape, dtype="float32") for _ in range(3))

    def get_config(self):
        return {**super().get_config(), "c_dim": self.c_dim}


@functools.lru_cache(maxsize=8)
def _z_to_eps(z_dim: int, c_dim: int) -> np.ndarray:
    """A fixed [z_dim, c_dim] matrix with unit-norm columns (numpy's PCG64, the same on every machine)."""
    p = np.random.default_rng(SAMPLING_EPS_SEED).standard_normal((z_dim, c_dim))
    return (p / np.linalg.norm(p, axis=0, keepdims=True)).astype(np.float32)


def sampling_eps(z, c_dim: int, scale: float):
    """CA noise for sampling, [B, c_dim] float32: scale·(z P) with P fixed (_z_to_eps).

    ε is a function of the sample's own z, so one noise vector still means one image: a caption's k-th sample,
    a grid column and a server seed stay reproducible, and no second random stream needs passing around. Each
    column of P has unit norm, so every ε_j of a z ~ N(0, I) is N(0, 1) before scaling. scale 0 gives ε = 0, CA's
    mean μ (the deterministic sampling every run before `ca_noise` used)."""
    z = ops.cast(z, "float32")
    if not scale:
        return ops.zeros((ops.shape(z)[0], c_dim), "float32")
    return float(scale) * ops.matmul(z, _z_to_eps(int(z.shape[-1]), c_dim))
