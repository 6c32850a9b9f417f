"""TAC-GAN's auxiliary classifier (Dash et al. 2017, after AC-GAN, Odena et al. 2017): D's class head and its wiring.

With `--set aux_class=W` (W > 0) on a cache that stores class labels (precompute_embeddings.py --labels), D gets a
second head on its image features: global-average-pooled last feature map -> Dense(K) class logits. D's loss gains
W·CE(head(real), y) (it learns to tell the class of real images) and G's loss gains W·CE(head(fake), y) with y the
class of the image whose caption the fake was drawn from (G is rewarded when D finds that class in its images).
D is not trained to classify fakes (AC-GAN's D is): the head learns the classes from real images only. The progress
line's `d` includes W·CE(real); `cls` shows CE(real) alone.
The head lives in D's variables and in the checkpoint ("aux_head"); tools/evaluate.py reports its accuracy.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers

from gan import losses as L
from tools.errors import UserError

CHECKPOINT_KEY = "aux_head"


def last_features(features):
    """D encoder output (one tensor, or a list of scales) -> the coarsest map [B, h, w, ch]."""
    return features[-1] if isinstance(features, (list, tuple)) else features


def build_aux_head(d_encoder: keras.Model, num_classes: int) -> keras.Model:
    """[B, h, w, ch] (d_encoder's last output) -> class logits [B, K] float32."""
    shape = last_features(d_encoder.output).shape[1:]
    f = keras.Input(shape, name="aux_features")
    pooled = layers.GlobalAveragePooling2D(name="aux_pool")(f)  # [B, ch]
    logits = layers.Dense(num_classes, dtype="float32", name="aux_logits")(pooled)  # [B, K]
    return keras.Model(f, logits, name=CHECKPOINT_KEY)


def aux_losses(head: keras.Model, real_features, fake_features, labels):
    """(D's term CE(real), G's term CE(fake), accuracy on the real batch), all float32 scalars; labels [B] int."""
    real_logits = head(last_features(real_features), training=True)  # [B, K]
    fake_logits = head(last_features(fake_features), training=True)
    return (L.auxiliary_classifier_loss(real_logits, labels), L.auxiliary_classifier_loss(fake_logits, labels),
            L.classifier_accuracy(real_logits, labels))


def classify(d_encoder: keras.Model, head: keras.Model, images_uint8: np.ndarray, batch: int = 256) -> np.ndarray:
    """Predicted class of every image: uint8 [N, 64, 64, 3] -> int64 [N] (D in inference mode, no augmentation)."""
    out = []
    for i in range(0, len(images_uint8), batch):
        x = images_uint8[i:i + batch].astype(np.float32) / 127.5 - 1.0
        logits = head(last_features(d_encoder(x, training=False)), training=False)
        out.append(np.argmax(np.asarray(logits), axis=-1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def check_aux(cfg, reads: str) -> None:
    """Option checks (gan/config.validate): W >= 0, and only for an architecture that reads cached vectors."""
    w = cfg.aux_class
    if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
        raise UserError(f"--set aux_class={w!r}: must be a number >= 0 (0: off; the class loss weight, e.g. 1)")
    if w and reads != "vectors":
        raise UserError(f"--set aux_class={w}: only the cached-vector architectures (dfgan, stackgan) have the "
                        f"auxiliary classifier, not --arch {cfg.arch}; drop it or change --arch")


def require_labels(cfg, labels) -> None:
    """A run with the head needs a labelled cache: else one line saying how to build one."""
    if cfg.aux_class and labels is None:
        raise UserError(f"--set aux_class={cfg.aux_class}: {cfg.cache.path or cfg.embeddings} has no class labels; "
                        f"rebuild it with precompute_embeddings.py --labels (auto: the dataset's classes, or "
                        f"attribute names such as petal_color,petal_shape) or drop aux_class")
