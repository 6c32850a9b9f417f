"""The auxiliary classifier head's own accuracy (runs trained with --set aux_class, gan/aux_head.py): how often D's
class head names the class of real held-out images, and of the images G drew for captions of a known class.

Real held-out images: for an attribute grouping of the synthetic flowers, fresh flowers rendered in memory with a seed
the dataset never used (HELDOUT_SEED); for a layout's own classes (text_c10 folders, a class column) there are no
held-out labelled images, so the cache's own images (seen in training) are scored and named so ("train images").
Generated images: a caption's class is the grouping's attributes it names (all of them, else it is left out), or
its row's `class`/`label` field.
"""
from __future__ import annotations

import numpy as np

from tools.datasets.labels import LABEL_FIELDS, SEPARATOR

HELDOUT_SEED = 20261206  # fresh real flowers for the head's held-out accuracy (the dataset's own seed is 0)
HELDOUT_N = 1000


def load_head(run_dir, checkpoint=None):
    """(d_encoder, aux_head, class names [K], GanConfig) restored from a run's checkpoint; None without the head."""
    import tensorflow as tf

    from cache.reader import EmbeddingCache
    from gan.archs import get_arch
    from gan.aux_head import CHECKPOINT_KEY, build_aux_head
    from gan.inference import float32_policy
    from gan.run_dir import find_checkpoint, load_config

    cfg = load_config(run_dir)
    if not cfg.aux_class:
        return None
    with float32_policy():
        _, d_enc, _, _ = get_arch(cfg.arch).build(cfg)
        head = build_aux_head(d_enc, cfg.cache.num_classes)
    tf.train.Checkpoint(d_encoder=d_enc, **{CHECKPOINT_KEY: head}).read(find_checkpoint(run_dir, checkpoint)) \
        .expect_partial()
    with EmbeddingCache.open(cfg.cache.path) as cache:
        _, names = cache.labels()
    return d_enc, head, names, cfg


def caption_class(row: dict, source: str) -> str | None:
    """The class a caption row names under the cache's label source, or None when it does not name it fully."""
    if source == "class":
        value = next((row[k] for k in LABEL_FIELDS if row.get(k) not in (None, "")), None)
        return None if value is None else str(value)
    from tools.evaluation.real_data import ATTRIBUTE_VALUES, value_index
    from tools.evaluation.report import named_attributes

    named = named_attributes(row)
    attrs = source.split(",")
    if any(named.get(a) is None for a in attrs):
        return None
    return SEPARATOR.join(str(ATTRIBUTE_VALUES[a][value_index(a, named[a])]) for a in attrs)


def real_images(cfg, names: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """(uint8 [N, 64, 64, 3], class ids [N] (-1: a class the cache never had), what they are)."""
    source = cfg.cache.labels
    if source != "class":
        from tools.evaluation.real_data import ATTRIBUTES, ATTRIBUTE_VALUES, generate_labelled_images

        images, attrs = generate_labelled_images(HELDOUT_N, HELDOUT_SEED)  # [N, 64, 64, 3], [N, 4]
        cols = [ATTRIBUTES.index(a) for a in source.split(",")]
        wanted = [SEPARATOR.join(str(ATTRIBUTE_VALUES[ATTRIBUTES[c]][row[c]]) for c in cols) for row in attrs]
        return images, _ids(wanted, names), f"held-out real flowers (rendered, seed {HELDOUT_SEED})"
    from cache.reader import EmbeddingCache
    from gan.image_cache import load_or_build_image_cache

    with EmbeddingCache.open(cfg.cache.path) as cache:
        labels, paths = cache.labels()[0], cache.image_paths()
    images, valid, _ = load_or_build_image_cache(cfg.cache.path, paths, 64, lambda *_: None, progress=False,
                                                 dataset_name=cfg.cache.dataset_name)
    rows = np.flatnonzero(valid)
    rows = np.sort(np.random.default_rng(0).choice(rows, min(HELDOUT_N, len(rows)), replace=False))
    return images[rows], labels[rows], "train images (the dataset has no held-out labelled images)"


def _ids(wanted: list[str | None], names: list[str]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    return np.array([index.get(w, -1) if w is not None else -1 for w in wanted], np.int64)


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> dict:
    known = truth >= 0
    return {"accuracy": float(np.mean(pred[known] == truth[known])) if known.any() else None,
            "count": int(known.sum())}


def head_accuracy(run_dir, checkpoint, images: dict, captions: dict) -> dict | None:
    """{"classes", "labels", "chance", "real": {accuracy, count, what}, "generated": {accuracy, count}} for a run
    with the head (None otherwise). images: {caption id: uint8 [k, 64, 64, 3]}; captions: {id: row}."""
    from gan.aux_head import classify

    loaded = load_head(run_dir, checkpoint)
    if loaded is None:
        return None
    d_enc, head, names, cfg = loaded
    real, real_ids, what = real_images(cfg, names)
    ids = [i for i in images if len(images[i])]
    gen = np.concatenate([images[i] for i in ids]) if ids else np.zeros((0, 64, 64, 3), np.uint8)
    gen_ids = _ids([caption_class(captions[i], cfg.cache.labels) for i in ids for _ in range(len(images[i]))], names)
    return {"classes": len(names), "labels": cfg.cache.labels, "chance": 1 / len(names),
            "real": {**_accuracy(classify(d_enc, head, real), real_ids), "what": what},
            "generated": _accuracy(classify(d_enc, head, gen), gen_ids)}


def format_lines(m: dict) -> list[str]:
    """The report's rows for the head."""
    fmt = lambda r: "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"  # noqa: E731
    return [f"aux classifier head ({m['classes']} classes: {m['labels']}; chance {m['chance']:.3f})",
            f"  accuracy on real images (n={m['real']['count']}, {m['real']['what']}): {fmt(m['real'])}",
            f"  accuracy on generated images (n={m['generated']['count']}, the class their caption names): "
            f"{fmt(m['generated'])}"]
