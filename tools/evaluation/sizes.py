"""How the 64 px judges read 128 and 256 px images: area-downsampled to 64, generated and real alike, and what the
attribute classifier's held-out accuracy is on real flowers rendered at a larger size and read that way.

    small = to_judge_size(images)                   # uint8 [N, S, S, 3] -> [N, 64, 64, 3]
    rgb = load_for_judge("out/inference_0001.png")  # one file, decoded and brought to 64 px the same way
    acc = heldout_accuracy_at_size(clf, 128)        # {attribute: accuracy} on 1 000 fresh flowers drawn at 128

The attribute classifier, the FID/IS feature space (its penultimate layer), the pixel check and the R-precision
matchers all read 64x64 images. A 128 or 256 px image is reduced to 64 by the mean of each 2x2 or 4x4 block
(tools.images.area_downsample, the same reduction generate.py applies for DataLab Cup files): a linear,
shift-free box filter, so a flat colour region keeps its colour exactly and the judges see what a 64 px render
of the same flower shows (a 128 px render reduced this way differs from the 64 px render of the same flower by
0.9 grey levels on average: the 64 px one is Lanczos-filtered from 256 px, see tools/synthetic/render.py). The
real reference of a synthetic set drawn at 128 or 256 px goes through the same reduction
(tools.evaluation.real_data.load_labelled_images), so FID compares like with like. Sizes that are not a multiple of
64 (other datasets' files) are resized with Lanczos, as before. The R-precision matchers train on real images read
through the image cache at 64 px (Lanczos from the dataset's files); only their real side differs in filter.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tools.evaluation.first_use import first_use_lock

JUDGE_SIZE = 64  # the side every judge reads
HELDOUT_SEED = 90211  # fresh real flowers for the accuracy at a size (the classifier trains on seed 90210)


def to_judge_size(images: np.ndarray) -> np.ndarray:
    """uint8 [N, S, S, 3] -> [N, 64, 64, 3]: area-downsampled when S is a multiple of 64, else Lanczos."""
    from tools.images import area_downsample

    images = np.asarray(images)
    s = images.shape[1]
    if s == JUDGE_SIZE:
        return images
    if s % JUDGE_SIZE == 0 and images.shape[2] == s:
        return area_downsample(images, JUDGE_SIZE)
    from PIL import Image

    lanczos = Image.Resampling.LANCZOS
    return np.stack([np.asarray(Image.fromarray(im).resize((JUDGE_SIZE, JUDGE_SIZE), lanczos)) for im in images])


def load_for_judge(path) -> np.ndarray:
    """One image file -> uint8 [64, 64, 3]: a square image whose side is a multiple of 64 is area-downsampled,
    anything else goes through tools.images.load_rgb(path, 64) (centre square, Lanczos)."""
    from tools.images import load_rgb

    rgb = load_rgb(path, None)
    h, w = rgb.shape[:2]
    if h == w and h % JUDGE_SIZE == 0:
        return to_judge_size(rgb[None])[0]
    return load_rgb(path, JUDGE_SIZE)


def render_labelled(n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """tools.evaluation.real_data.generate_labelled_images(n, seed) drawn at `size`: uint8 [n, size, size, 3] and
    int64 [n, 4]. The renderer draws the same rng stream at every size: the same flowers, the same labels."""
    from tools.evaluation.real_data import ATTRIBUTES, value_index
    from tools.synthetic.render import render_flower, sample_attributes

    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.uint8)
    labels = np.zeros((n, len(ATTRIBUTES)), np.int64)
    for i in range(n):
        attrs = sample_attributes(rng)
        images[i] = render_flower(attrs, rng, size=size)
        labels[i] = [value_index(a, attrs[a]) for a in ATTRIBUTES]
    return images, labels


def heldout_accuracy_at_size(clf, size: int, directory=None, log=print, n: int | None = None) -> dict[str, float]:
    """The classifier's accuracy per attribute on n fresh real flowers (HELDOUT_SEED: never its training data) drawn
    at `size` and area-downsampled. Computed once per size and kept beside the classifier (heldout_<size>.json,
    which also holds the accuracy on the same flowers drawn at 64 px); at 64 px: its recorded held-out accuracy."""
    from tools.evaluation.attribute_classifier import DEFAULT_DIR, N_HELDOUT

    n = n or N_HELDOUT
    if size == JUDGE_SIZE:
        return dict(clf.meta["heldout_accuracy"])
    path = Path(directory or DEFAULT_DIR) / f"heldout_{size}.json"
    stamp = {"size": size, "n": n, "seed": HELDOUT_SEED, "version": clf.meta.get("version"),
             "trained": clf.meta.get("train_seconds")}
    with first_use_lock(path):
        return _saved_accuracy(path, stamp) or _measure_at_size(clf, size, n, path, stamp, log)


def _saved_accuracy(path: Path, stamp: dict) -> dict[str, float] | None:
    if path.is_file():
        saved = json.loads(path.read_text())
        if {k: saved.get(k) for k in stamp} == stamp:
            return saved["accuracy"]
    return None


def _measure_at_size(clf, size: int, n: int, path: Path, stamp: dict, log) -> dict[str, float]:
    log(f"attribute classifier: {n} fresh real flowers drawn at {size} px and at 64 px, read area-downsampled ...")
    images, labels = render_labelled(n, HELDOUT_SEED, size)
    small, _ = render_labelled(n, HELDOUT_SEED, JUDGE_SIZE)
    acc = clf.accuracy(to_judge_size(images), labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**stamp, "accuracy": acc, "accuracy_64": clf.accuracy(small, labels)}, indent=2) + "\n")
    return acc
