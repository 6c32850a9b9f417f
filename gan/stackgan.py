"""`--arch stackgan`: StackGAN stage-I grade generator and matching-aware discriminator at 64×64 (Zhang et al. 2017).

    G: text [B, D], z [B, Z], ε [B, C] -> CA -> [c, z] -> dense 4×4×8ngf -> (upsample ×2, conv 3×3, BN, ReLU) ×4
       -> conv 3×3 -> tanh                       => image [B, 64, 64, 3] float32 in [-1, 1], μ, log σ² [B, C]
    D is split in two so the real images' features are computed once for the real and the wrong pair:
       encoder: image -> 4 strided convs        => [B, 4, 4, 8ndf]
       head:    features, text [B, D] -> text dense 128, tiled 4×4, concatenated -> 1×1 conv -> 4×4 conv
                                                 => logit [B] float32

Layers follow the global Keras dtype policy (mixed_float16 on GPU); images, logits and CA outputs are float32.
"""
from __future__ import annotations

import keras
from keras import layers

from gan.archs import Architecture
from gan.conditioning import ConditioningAugmentation

IMAGE_SIZE = 64


def _init():
    return keras.initializers.RandomNormal(0.0, 0.02)  # DCGAN init; seeded by keras.utils.set_random_seed


def _norm(kind: str, name: str):
    if kind == "batch":
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)
    return layers.Identity(name=name)


def build_generator(text_dim: int, z_dim: int = 100, c_dim: int = 128, ngf: int = 64) -> keras.Model:
    """Inputs [text [B, D], z [B, Z], eps [B, C]] -> [image [B, 64, 64, 3] f32, mu [B, C], logvar [B, C]]."""
    text = keras.Input((text_dim,), name="text")
    z = keras.Input((z_dim,), name="z")
    eps = keras.Input((c_dim,), name="eps")
    c, mu, logvar = ConditioningAugmentation(c_dim, name="ca")([text, eps])  # [B, C] ×3
    h = layers.Concatenate(name="c_z")([c, z])  # [B, C + Z]
    h = layers.Dense(4 * 4 * 8 * ngf, use_bias=False, kernel_initializer=_init(), name="fc")(h)
    h = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="fc_bn")(h)
    h = layers.ReLU()(h)
    h = layers.Reshape((4, 4, 8 * ngf))(h)  # [B, 4, 4, 8ngf]
    for i, ch in enumerate((4 * ngf, 2 * ngf, ngf, max(ngf // 2, 1))):  # 8, 16, 32, 64 px
        h = layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}")(h)
        h = layers.Conv2D(ch, 3, padding="same", use_bias=False, kernel_initializer=_init(), name=f"conv{i}")(h)
        h = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"bn{i}")(h)
        h = layers.ReLU()(h)
    h = layers.Conv2D(3, 3, padding="same", kernel_initializer=_init(), name="to_rgb")(h)
    image = layers.Activation("tanh", dtype="float32", name="image")(h)  # [B, 64, 64, 3]
    return keras.Model([text, z, eps], [image, mu, logvar], name="generator")


def build_discriminator(text_dim: int, ndf: int = 64, norm: str = "batch", text_proj: int = 128):
    """Returns (encoder, head): encoder image [B, 64, 64, 3] -> features [B, 4, 4, 8ndf];
    head [features, text [B, D]] -> logit [B] float32. `norm` is "batch" or "none" (for gradient penalties,
    whose per-sample gradients batch statistics would couple)."""
    image = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    h = image
    for i, ch in enumerate((ndf, 2 * ndf, 4 * ndf, 8 * ndf)):  # 32, 16, 8, 4 px
        h = layers.Conv2D(ch, 4, strides=2, padding="same", use_bias=(i == 0 or norm != "batch"),
                          kernel_initializer=_init(), name=f"conv{i}")(h)
        if i > 0:  # no norm on the first layer (DCGAN)
            h = _norm(norm, f"norm{i}")(h)
        h = layers.LeakyReLU(0.2)(h)
    encoder = keras.Model(image, h, name="d_encoder")  # [B, 4, 4, 8ndf]

    feat = keras.Input((4, 4, 8 * ndf), name="features")
    text = keras.Input((text_dim,), name="text")
    t = layers.Dense(text_proj, kernel_initializer=_init(), name="text_proj")(text)  # [B, D] -> [B, 128]
    t = layers.LeakyReLU(0.2)(t)
    t = layers.Reshape((1, 1, text_proj))(t)
    t = layers.UpSampling2D(4, name="tile")(t)  # [B, 4, 4, 128], same vector in every cell
    h = layers.Concatenate(name="joint")([feat, t])  # [B, 4, 4, 8ndf + 128]
    h = layers.Conv2D(8 * ndf, 1, use_bias=(norm != "batch"), kernel_initializer=_init(), name="joint_conv")(h)
    h = _norm(norm, "joint_norm")(h)
    h = layers.LeakyReLU(0.2)(h)
    h = layers.Conv2D(1, 4, padding="valid", dtype="float32", kernel_initializer=_init(), name="logit")(h)
    logit = layers.Reshape((), dtype="float32", name="flat")(h)  # [B, 1, 1, 1] -> [B]
    head = keras.Model([feat, text], logit, name="d_head")
    return encoder, head


def d_norm(cfg) -> str:
    """The discriminator normalisation in effect: gradient penalties want per-sample D (no batch norm)."""
    if cfg.d_norm != "auto":
        return cfg.d_norm
    return "none" if cfg.loss == "magp" else "batch"


class StackGan(Architecture):
    name = "stackgan"
    # StackGAN's recipe: BCE, Adam 2e-4 (0.5, 0.999), KL 2, no EMA / DiffAugment / hard negatives; CA's mean at
    # sampling. The GanConfig defaults are dfgan's, so every one of them is stated here.
    preset = dict(loss="bce", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, ema=False, diffaug="",
                  hard_negatives=0.0, kl_weight=2.0, proj4="pooled", contrastive=0.0, ca_noise=0.0)

    def build(self, cfg, vocab_size: int = 0, generator_only: bool = False):
        g = build_generator(cfg.cache.dim, cfg.z_dim, cfg.c_dim, cfg.ngf)
        if generator_only:
            return g
        return (g, *build_discriminator(cfg.cache.dim, cfg.ndf, d_norm(cfg)), None)


ARCH = StackGan()
