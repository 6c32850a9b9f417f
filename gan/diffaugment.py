"""Differentiable augmentation (DiffAugment, Zhao et al. NeurIPS 2020) of every image D sees.

The same random transform family is applied to real, mismatched and generated images before D, in the D and the
G update alike, so D cannot overfit the 8 000 training images and G gets gradients through the transform.
Only geometry is used — translation (zero padding) and cutout — never colour jitter: the colours are what the
captions name. Randomness comes from the trainer's checkpointed `tf.random.Generator`, so a resumed run draws
the same augmentations. Sampling never augments.

    x = diff_augment(x, rng, translation=0.125, cutout=0.25)     # [B, H, W, 3] -> [B, H, W, 3]
"""
from __future__ import annotations

import tensorflow as tf

POLICIES = ("translation", "cutout")


def parse_policy(text: str) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' -> (); unknown names raise ValueError."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in POLICIES]
    if bad:
        raise ValueError(f"unknown DiffAugment policy {', '.join(bad)}; choose from {', '.join(POLICIES)}")
    return names


def translate(x, rng: tf.random.Generator, ratio: float):
    """Shift each image by an integer in [-ratio·size, ratio·size] per axis, filling with zeros (DiffAugment's
    rand_translation). [B, H, W, C] -> [B, H, W, C]."""
    b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    if sh == 0 and sw == 0:
        return x
    x = tf.pad(x, [[0, 0], [sh, sh], [sw, sw], [0, 0]])
    dy = rng.uniform([b, 1], 0, 2 * sh + 1, dtype=tf.int32)  # [B, 1] offset into the padded image
    dx = rng.uniform([b, 1], 0, 2 * sw + 1, dtype=tf.int32)
    x = tf.gather(x, dy + tf.range(h)[None, :], axis=1, batch_dims=1)  # [B, H, W + 2sw, C]
    return tf.gather(x, dx + tf.range(w)[None, :], axis=2, batch_dims=1)  # [B, H, W, C]


def cutout(x, rng: tf.random.Generator, ratio: float):
    """Zero one square of side ratio·size at a random place per image (DiffAugment's rand_cutout; the square may
    hang over the border). [B, H, W, C] -> [B, H, W, C]."""
    b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    if ch == 0 or cw == 0:
        return x
    cy = rng.uniform([b, 1], 0, h + (1 - ch % 2), dtype=tf.int32)  # [B, 1] square centre
    cx = rng.uniform([b, 1], 0, w + (1 - cw % 2), dtype=tf.int32)
    ys, xs = tf.range(h)[None, :], tf.range(w)[None, :]
    in_y = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch)  # [B, H]
    in_x = (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)  # [B, W]
    hole = tf.logical_and(in_y[:, :, None], in_x[:, None, :])  # [B, H, W]
    return x * tf.cast(~hole, x.dtype)[:, :, :, None]


def diff_augment(x, rng: tf.random.Generator, policy: tuple[str, ...] = POLICIES, translation: float = 0.125,
                 cutout_ratio: float = 0.25):
    """Apply the policy's transforms in order. [B, H, W, C] -> [B, H, W, C], differentiable in x."""
    for name in policy:
        if name == "translation":
            x = translate(x, rng, translation)
        elif name == "cutout":
            x = cutout(x, rng, cutout_ratio)
    return x
