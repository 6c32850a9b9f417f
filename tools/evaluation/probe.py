"""Linear probe: how much of each attribute can a softmax regression read from the caption vectors alone?

    from tools.evaluation.probe import probe_attributes, read_attributes
    probe = probe_attributes("cache/synthetic-flowers-minilm.h5", read_attributes("data/synthetic-flowers"))
    probe["petal_color"]["accuracy"], probe["mean"]

It asks the encoder question without a GAN: captions that name an attribute, labelled with their image's true
value, split by image (an image's captions all land on one side), held-out accuracy beside the majority class.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PROBE_IMAGES = 2000  # images whose captions the probe reads (80% train, 20% held out, split by image)
PROBE_ITERATIONS = 300  # full-batch Adam steps
PROBE_LR = 0.05
PROBE_L2 = 1e-3  # weight decay on W; keeps separable data (one-hot codes) from diverging


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, *, iterations: int = PROBE_ITERATIONS,
                lr: float = PROBE_LR, l2: float = PROBE_L2) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch Adam from zero weights (deterministic): W [D, C], b [C].

    Minimises mean cross-entropy(softmax(x W + b), y) + l2/2 ||W||²; x: float32 [N, D] (standardise it first).
    """
    x = np.asarray(x, np.float32)
    onehot = np.eye(n_classes, dtype=np.float32)[y]  # [N, C]
    params = [np.zeros((x.shape[1], n_classes), np.float32), np.zeros(n_classes, np.float32)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, iterations + 1):
        logits = x @ params[0] + params[1]  # [N, C]
        p = np.exp(logits - logits.max(1, keepdims=True))
        g = (p / p.sum(1, keepdims=True) - onehot) / len(x)  # d loss / d logits
        grads = [x.T @ g + l2 * params[0], g.sum(0)]
        for i, gr in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * gr
            v[i] = 0.999 * v[i] + 0.001 * gr * gr
            params[i] -= lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
    return params[0], params[1]


def linear_probe(vectors: np.ndarray, labels, groups, n_classes: int | None = None, *, seed: int = 0,
                 train_fraction: float = 0.8, **fit) -> dict:
    """Held-out accuracy of a softmax classifier reading `labels` [N] from `vectors` [N, D].

    Rows are split by `groups` [N] (an image's captions all land on one side), seeded; features are
    standardised with the train rows' mean and spread. Returns accuracy, majority (the share of the
    most common train label in the held-out rows: what ignoring the vector scores), n_train, n_test.
    """
    x, y, groups = np.asarray(vectors, np.float32), np.asarray(labels, np.int64), np.asarray(groups)
    n_classes = n_classes or int(y.max()) + 1
    unique = np.random.default_rng(seed).permutation(np.unique(groups))
    train = np.isin(groups, unique[: int(round(train_fraction * len(unique)))])
    if train.all() or not train.any():
        return {"accuracy": None, "majority": None, "n_train": int(train.sum()), "n_test": int((~train).sum()),
                "why": f"{len(unique)} images: too few to split into train and held-out"}
    mu, sd = x[train].mean(0), x[train].std(0)
    x = (x - mu) / np.where(sd > 1e-8, sd, 1.0)
    w, b = fit_softmax(x[train], y[train], n_classes, **fit)
    pred = np.argmax(x[~train] @ w + b, axis=1)
    majority = np.bincount(y[train], minlength=n_classes).argmax()
    return {"accuracy": float(np.mean(pred == y[~train])), "majority": float(np.mean(y[~train] == majority)),
            "n_train": int(train.sum()), "n_test": int((~train).sum())}


def read_attributes(dataset_root) -> dict[str, dict] | None:
    """image_id -> {attribute: value} from DATASET/attributes.jsonl (synthetic flowers); None when absent."""
    path = Path(dataset_root) / "attributes.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["image_id"]: r for r in rows}


def labelled_captions(cache_path, attributes: dict[str, dict], *, seed: int = 0,
                      max_images: int = PROBE_IMAGES) -> tuple[np.ndarray, dict[str, tuple]]:
    """The captions of `max_images` seeded labelled images of the cache: their vectors [R, D] and, per attribute,
    (rows of those vectors whose caption names it, the image's true value index, the image index to split by)."""
    from cache.reader import EmbeddingCache
    from tools.evaluation.real_data import ATTRIBUTES, value_index
    from tools.synthetic import parse_caption

    with EmbeddingCache.open(cache_path) as cache:
        ids, texts, owner = cache.image_ids(), cache.texts(), cache.image_index()
        labelled = np.array([i for i, image_id in enumerate(ids) if image_id in attributes], np.int64)
        picked = np.random.default_rng(seed).permutation(labelled)[:max_images]
        rows = np.flatnonzero(np.isin(owner, picked))  # caption rows of the picked images
        vectors = cache.embeddings(rows)  # [R, D]
    parsed = [parse_caption(texts[r]) for r in rows]
    named = {}
    for a in ATTRIBUTES:
        sel = np.array([k for k, said in enumerate(parsed) if a in said], np.int64)
        labels = np.array([value_index(a, attributes[ids[owner[rows[k]]]][a]) for k in sel], np.int64)
        named[a] = (sel, labels, owner[rows[sel]])
    return vectors, named


def probe_attributes(cache_path, attributes: dict[str, dict], *, seed: int = 0, max_images: int = PROBE_IMAGES) -> dict:
    """Per attribute, the linear probe over the captions that name it (tools.synthetic.parse_caption), labelled
    with their image's true value; `max_images` seeded images of the cache. {attribute: probe, "mean": float}."""
    vectors, named = labelled_captions(cache_path, attributes, seed=seed, max_images=max_images)
    out = probe_views({"text": vectors}, named, seed=seed)["text"]
    out["settings"] = {"seed": seed, "max_images": max_images, "iterations": PROBE_ITERATIONS, "l2": PROBE_L2}
    return out


def probe_views(views: dict[str, np.ndarray], named: dict[str, tuple], *, seed: int = 0) -> dict[str, dict]:
    """The linear probe of every attribute on each view of the same captions (e.g. the text vector, CA's mean, a
    CA sample: arrays [R, *] row-aligned with labelled_captions' vectors). {view: {attribute: probe, "mean"}}."""
    from tools.evaluation.real_data import ATTRIBUTE_VALUES, ATTRIBUTES

    result = {}
    for view, x in views.items():
        out = {}
        for a in ATTRIBUTES:
            sel, labels, groups = named[a]
            if len(sel) == 0:
                out[a] = {"accuracy": None, "why": "no caption names it"}
                continue
            out[a] = linear_probe(x[sel], labels, groups, len(ATTRIBUTE_VALUES[a]), seed=seed)
        scored = [out[a]["accuracy"] for a in ATTRIBUTES if out[a]["accuracy"] is not None]
        out["mean"] = float(np.mean(scored)) if scored else None
        result[view] = out
    return result
