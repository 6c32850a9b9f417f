"""InceptionV3 IS/FID, for users who supply the ImageNet weights (no download happens here).

    net = load_inception("inception_v3_weights_tf_dim_ordering_tf_kernels.h5")
    fid = frechet_distance_from_activations(net.features(real), net.features(fake))   # pool3, [N, 2048]
    is_mean, is_std = inception_score_from_probs(net.probs(fake), splits=10)          # [N, 1000]

Weight files: Keras' own InceptionV3 files (legacy .h5, with or without the top; the "notop" file gives FID
only), or a `.weights.h5` saved by Keras 3 from `keras.applications.InceptionV3`. Images are resized from
64x64 to `input_size` (299 for the standard numbers; any size >= 75 works) and scaled to [-1, 1] as the
network expects. Numbers from this Keras model are close to, but not identical with, the TF-slim graph
used by the original IS/FID papers; compare them only with numbers computed the same way.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tools.errors import UserError

MIN_SIZE = 75  # smallest input InceptionV3 accepts


class Inception:
    """An InceptionV3 with loaded weights: `features` (pool3, 2048-d) and, with the top, `probs` (1000 classes)."""

    def __init__(self, model, has_top: bool, input_size: int):
        import keras

        self.has_top, self.input_size = has_top, input_size
        outputs = [model.get_layer("avg_pool").output] + ([model.output] if has_top else [])
        self._model = keras.Model(model.input, outputs)

    def _run(self, images: np.ndarray, batch: int = 50) -> list[np.ndarray]:
        import tensorflow as tf

        outs = []
        for i in range(0, len(images), batch):
            x = tf.image.resize(np.asarray(images[i : i + batch], np.float32), (self.input_size,) * 2)  # bilinear
            res = self._model(x / 127.5 - 1.0, training=False)  # keras inception_v3.preprocess_input
            outs.append([np.asarray(r) for r in (res if isinstance(res, (list, tuple)) else [res])])
        return [np.concatenate(parts) for parts in zip(*outs)]

    def features(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 [N, 2048] pool3 activations (the FID feature space)."""
        return self._run(images)[0]

    def probs(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 [N, 1000] ImageNet class probabilities (the IS class space)."""
        if not self.has_top:
            raise UserError("these InceptionV3 weights have no classification top (a 'notop' file): FID works, "
                            "IS needs the full file inception_v3_weights_tf_dim_ordering_tf_kernels.h5")
        return self._run(images)[1]


def load_inception(weights_path: str | Path, input_size: int = 299) -> Inception:
    """InceptionV3(weights=None) + load_weights(weights_path); tries the full network first, then the notop one."""
    import keras

    path = Path(weights_path)
    if not path.is_file():
        raise UserError(f"--inception-weights {path}: file not found; download Keras' InceptionV3 ImageNet weights "
                        "(inception_v3_weights_tf_dim_ordering_tf_kernels.h5) on a machine with internet")
    if not path.name.endswith((".h5", ".hdf5")):
        raise UserError(f"--inception-weights {path}: expected a Keras .h5 / .weights.h5 weight file")
    if input_size < MIN_SIZE:
        raise UserError(f"InceptionV3 input size {input_size} is below its minimum {MIN_SIZE}")
    errors = []
    for has_top in (True, False):
        model = keras.applications.InceptionV3(
            weights=None, include_top=has_top, input_shape=(input_size, input_size, 3),
            pooling=None if has_top else "avg",
        )
        try:
            model.load_weights(str(path))
            return Inception(model, has_top, input_size)
        except (ValueError, KeyError, OSError) as e:
            errors.append(" ".join(str(e).split())[:200])
    raise UserError(f"--inception-weights {path}: not InceptionV3 weights (with top: {errors[0]}; "
                    f"without: {errors[1]})")
