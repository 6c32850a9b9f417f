"""Real synthetic-flower images with their attributes, as arrays: from a dataset folder, or generated fresh.

A synthetic dataset folder (tools/make_synthetic_flowers.py) holds manifest.jsonl ({image_id, image_path,
captions}) and attributes.jsonl ({image_id, petal_color, center_color, petal_count, petal_shape}).
Fresh images come straight from the generator's renderer (tools.synthetic.render), in memory.
Attribute values are stored here as class indices into `ATTRIBUTE_VALUES` (int64 [N, 4]).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tools.errors import UserError
from tools.synthetic import spec

# attribute -> its values in class-index order (the classifier's heads use this order)
ATTRIBUTE_VALUES: dict[str, tuple] = {
    "petal_color": tuple(spec.PETAL_COLORS),
    "center_color": tuple(spec.CENTER_COLORS),
    "petal_count": tuple(spec.PETAL_COUNTS),
    "petal_shape": tuple(spec.PETAL_SHAPES),
}
ATTRIBUTES = tuple(ATTRIBUTE_VALUES)
# words a caption file may use for a value, beyond the value itself
_ALIASES = {
    "petal_count": {w: n for n, w in spec.COUNT_WORDS.items()},
    "petal_shape": {w: s for s, words in spec.SHAPE_WORDS.items() for w in words},
}


def value_index(attribute: str, value) -> int:
    """Class index of an attribute value; accepts 5, "5", "five", "rounded", ... Raises UserError otherwise."""
    if attribute not in ATTRIBUTE_VALUES:
        raise UserError(f"unknown attribute {attribute!r}; known: {', '.join(ATTRIBUTES)}")
    values = ATTRIBUTE_VALUES[attribute]
    v = value.strip().lower() if isinstance(value, str) else value
    v = _ALIASES.get(attribute, {}).get(v, v)
    if attribute == "petal_count" and isinstance(v, str) and v.isdigit():
        v = int(v)
    if v not in values:
        raise UserError(f"{attribute}={value!r} is not a known value; allowed: {', '.join(map(str, values))}")
    return values.index(v)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"{path}: not found; pass a synthetic-flowers folder made by tools/make_synthetic_flowers.py")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not JSON ({e.msg}); each line must be one JSON object") from None
    return rows


def read_attributes(dataset_dir: str | Path) -> dict[str, dict]:
    """image id -> its row of a synthetic dataset folder's attributes.jsonl."""
    return {r["image_id"]: r for r in _read_jsonl(Path(dataset_dir) / "attributes.jsonl")}


def load_labelled_images(dataset_dir: str | Path, limit: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 64, 64, 3] images and int64 [N, 4] attribute indices of a synthetic dataset folder.

    With `limit`, a seeded random subset of that many images (decoding all 8 000 takes a few seconds). A set drawn
    at 128 or 256 px is area-downsampled to 64, as generated images are (tools/evaluation/sizes.py).
    """
    from tools.evaluation.sizes import load_for_judge

    root = Path(dataset_dir)
    attrs = read_attributes(root)
    manifest = [r for r in _read_jsonl(root / "manifest.jsonl") if r["image_id"] in attrs]
    if not manifest:
        raise UserError(f"{root}: no image of manifest.jsonl has a row in attributes.jsonl; is it a synthetic set?")
    if limit is not None and limit < len(manifest):
        keep = np.sort(np.random.default_rng(seed).choice(len(manifest), limit, replace=False))
        manifest = [manifest[i] for i in keep]
    images = np.stack([load_for_judge(_resolve(root, r["image_path"])) for r in manifest])  # [N, 64, 64, 3]
    labels = np.array([[value_index(a, attrs[r["image_id"]][a]) for a in ATTRIBUTES] for r in manifest], np.int64)
    return images, labels


def _resolve(root: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


def named_accuracy(predicted: dict[str, np.ndarray], named_attributes: list[dict]) -> dict:
    """Per attribute of `predicted` ({attribute: [N] predicted class index}): how often image i shows the value
    caption i names, over the captions that name it: {attribute: {"accuracy": float | None, "count": int,
    "confusion": int [V][V] (rows: the value named, columns: the value shown, in ATTRIBUTE_VALUES order),
    "unread": int (images whose prediction is no value, -1: e.g. the pixel check finds no petal colour)}}."""
    out = {}
    for a, pred in predicted.items():
        n_values = len(ATTRIBUTE_VALUES[a])
        named = [(i, value_index(a, n[a])) for i, n in enumerate(named_attributes) if n.get(a) is not None]
        confusion = np.zeros((n_values, n_values), np.int64)
        shown = [(v, int(pred[i])) for i, v in named if 0 <= pred[i] < n_values]
        if shown:
            np.add.at(confusion, tuple(np.array(shown).T), 1)
        hits = [pred[i] == v for i, v in named]
        out[a] = {"accuracy": float(np.mean(hits)) if hits else None, "count": len(hits),
                  "confusion": confusion.tolist(), "unread": len(named) - len(shown)}
    return out


def generate_labelled_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Render n fresh synthetic flowers with `seed` in memory (the generator's own renderer, no files)."""
    from tools.synthetic.render import render_flower, sample_attributes

    rng = np.random.default_rng(seed)
    images = np.zeros((n, 64, 64, 3), np.uint8)
    labels = np.zeros((n, len(ATTRIBUTES)), np.int64)
    for i in range(n):
        attrs = sample_attributes(rng)
        images[i] = render_flower(attrs, rng)
        labels[i] = [value_index(a, attrs[a]) for a in ATTRIBUTES]
    return images, labels
