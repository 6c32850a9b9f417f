"""R-precision (AttnGAN, Xu et al. 2018): does an image rank its own caption first among 100 candidates?

The scorer is a small image–text matcher trained on a dataset's real pairs: image CNN -> 128-d, text model ->
128-d, symmetric contrastive (InfoNCE, CLIP-style) loss. Two text models exist, with one training recipe:

- the **cache matcher** reads the cached text vectors (exactly what the GAN read): an MLP on the vector.
  One per embedding cache (keyed by its fingerprint), under cache/matcher/<fingerprint[:16]>/. Its scores
  compare only with its own real-image score, since every encoder gets a different judge.
- the **shared matcher** (shared_matcher.py) reads the caption words with a text encoder of its own, learned
  from the dataset's captions: one per dataset, the same judge for every encoder's GAN.

    matcher = load_or_train_matcher("cache/synthetic-flowers-minilm.h5")
    rp = r_precision(matcher.embed_images(images), matcher.embed_texts(vectors))

A matcher's R-precision on held-out real pairs (meta["r_precision_real"]) is reported beside a generator's:
a synthetic caption naming few attributes also fits other flowers, so even real images are not always first.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from tools.errors import UserError
from tools.evaluation.first_use import first_use_lock

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "cache" / "matcher"
VERSION = 1  # bump when the architecture or recipe changes: stale matchers are retrained
EMBED_DIM = 128
EPOCHS = 8
BATCH = 128
LOGIT_SCALE = 10.0  # 1 / temperature of the contrastive softmax
HELDOUT_IMAGES = 800  # real images kept out of training to measure the ceiling
N_CANDIDATES = 100  # AttnGAN: the true caption and 99 mismatched ones
IMAGE_WEIGHTS, TEXT_WEIGHTS, META = "image.weights.h5", "text.weights.h5", "matcher.json"


def r_precision(
    image_emb: np.ndarray, text_emb: np.ndarray, true_text: np.ndarray | None = None,
    n_candidates: int = N_CANDIDATES, seed: int = 0,
) -> float:
    """Fraction of images whose true caption scores highest among itself and n_candidates−1 mismatched ones
    (the mean of r_precision_scores)."""
    return float(np.mean(r_precision_scores(image_emb, text_emb, true_text, n_candidates, seed)))


def r_precision_scores(
    image_emb: np.ndarray, text_emb: np.ndarray, true_text: np.ndarray | None = None,
    n_candidates: int = N_CANDIDATES, seed: int = 0,
) -> np.ndarray:
    """float64 [N]: 1 where image i's true caption scores highest among itself and n_candidates−1 mismatched ones,
    0 where one scores higher.

    image_emb: [N, E]; text_emb: [T, E] candidate captions; true_text: [N] row of text_emb that is image i's
    caption (default: row i, T == N). Mismatched candidates are drawn (seeded) from the other T−1 captions;
    scores are cosine similarities. Ties count as a uniformly random order: a true caption tied with k
    mismatched ones counts 1/(k+1), so a matcher that scores everything alike gets exactly 1/n_candidates.
    """
    img = _unit(image_emb)
    txt = _unit(text_emb)
    true_text = np.arange(len(img)) if true_text is None else np.asarray(true_text, np.int64)
    if len(true_text) != len(img) or (len(img) and (true_text.min() < 0 or true_text.max() >= len(txt))):
        raise ValueError(f"true_text must give a row of text_emb [{len(txt)}] for each of {len(img)} images")
    if not 2 <= n_candidates <= len(txt):
        raise ValueError(f"n_candidates={n_candidates} needs 2 <= n_candidates <= {len(txt)} candidate captions")
    rng = np.random.default_rng(seed)
    # [N, n-1] distinct mismatched rows: draw from T−1 rows, shift those at or past the true row by one
    wrong = np.stack([rng.choice(len(txt) - 1, n_candidates - 1, replace=False) for _ in range(len(img))])
    wrong += wrong >= true_text[:, None]
    true_score = np.sum(img * txt[true_text], axis=1)  # [N]
    wrong_score = np.einsum("ne,nke->nk", img, txt[wrong])  # [N, n-1]
    beaten = np.any(wrong_score > true_score[:, None], axis=1)
    ties = np.sum(wrong_score == true_score[:, None], axis=1)
    return np.where(beaten, 0.0, 1.0 / (1 + ties))


def paired_difference(scores_b, scores_a, z: float = 1.96) -> dict:
    """Mean of b − a over the same images (same captions, noise and candidates in both arms) with its normal-
    approximation confidence half-width: {"difference", "half_width", "n"}. Pairing removes what the two arms
    share (a caption that is hard to rank is hard for both), so it separates arms an unpaired interval cannot."""
    a, b = np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired scores must be two 1-d arrays of one length >= 2, got {a.shape} and {b.shape}")
    d = b - a
    return {"difference": float(d.mean()), "half_width": float(z * d.std(ddof=1) / np.sqrt(len(d))), "n": len(d)}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Matcher:
    """Image and text encoders into one 128-d space, plus their record (`meta`)."""

    def __init__(self, image_model, text_model, meta: dict):
        self.image_model, self.text_model, self.meta = image_model, text_model, meta

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, 64, 64, 3] -> float32 [N, 128], unit length."""
        parts = [np.asarray(self.image_model(images[i : i + 256].astype(np.float32), training=False))
                 for i in range(0, len(images), 256)]
        return np.concatenate(parts) if parts else np.zeros((0, EMBED_DIM), np.float32)

    def embed_texts(self, inputs: np.ndarray) -> np.ndarray:
        """The text model's input [N, ...] (cached vectors [N, D]; token ids [N, L]) -> float32 [N, 128], unit length."""
        parts = [np.asarray(self.text_model(inputs[i : i + 1024], training=False)) for i in range(0, len(inputs), 1024)]
        return np.concatenate(parts) if parts else np.zeros((0, EMBED_DIM), np.float32)


def build_image_model():
    """uint8-valued [B, 64, 64, 3] -> [B, 128], L2-normalised."""
    import keras
    from keras import layers

    from tools.evaluation.networks import image_trunk

    image = keras.Input((64, 64, 3))
    x = layers.Dense(256, activation="relu")(image_trunk(image))
    x = layers.UnitNormalization()(layers.Dense(EMBED_DIM)(x))
    return keras.Model(image, x, name="match_image")


def build_vector_text_model(text_dim: int):
    """The cache matcher's text side: cached vector [B, text_dim] -> [B, 128], L2-normalised."""
    import keras
    from keras import layers

    text = keras.Input((text_dim,))
    t = layers.Dense(256, activation="relu")(text)
    t = layers.UnitNormalization()(layers.Dense(EMBED_DIM)(t))
    return keras.Model(text, t, name="match_text")


def build_models(text_dim: int):
    """(image model, cache-vector text model): the cache matcher's two halves."""
    return build_image_model(), build_vector_text_model(text_dim)


def train_matcher(
    images: np.ndarray, texts: np.ndarray, caption_image: np.ndarray, text_model=None,
    epochs: int = EPOCHS, seed: int = 0, log=print,
) -> Matcher:
    """Contrastive training on real pairs: each epoch pairs every image with one of its captions at random.

    images: uint8 [M, 64, 64, 3]; texts: [N, ...] the text model's input per caption (float vectors [N, D] for
    the default vector model); caption_image: [N] image row of each caption. `text_model` is built after the
    seed is set when it is a callable (so its initial weights are seeded too); default: the vector MLP.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    if texts.dtype.kind == "f":
        texts = texts.astype(np.float32, copy=False)
    image_model = build_image_model()
    text_model = (text_model or (lambda: build_vector_text_model(texts.shape[1])))()
    variables = image_model.trainable_variables + text_model.trainable_variables
    steps_per_epoch = len(images) // BATCH
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, epochs * steps_per_epoch, alpha=0.05))

    @tf.function
    def step(img, txt):
        with tf.GradientTape() as tape:
            logits = LOGIT_SCALE * tf.matmul(image_model(img, training=True), text_model(txt, training=True), transpose_b=True)
            labels = tf.range(tf.shape(logits)[0])  # [B, B]: pair i is the positive of row and column i
            ce = keras.losses.sparse_categorical_crossentropy
            loss = tf.reduce_mean(ce(labels, logits, from_logits=True) + ce(labels, tf.transpose(logits), from_logits=True)) / 2
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    by_image = _captions_by_image(caption_image, len(images))
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(images))[: steps_per_epoch * BATCH].reshape(steps_per_epoch, BATCH)
        losses = []
        for rows in order:
            caps = [c[rng.integers(len(c))] for c in (by_image[r] for r in rows)]
            losses.append(float(step(images[rows].astype(np.float32), texts[caps])))
        dt = time.perf_counter() - t0
        log(f"matcher epoch {epoch + 1}/{epochs} | loss {np.mean(losses):.3f} | "
            f"{(epoch + 1) * order.size / dt:.0f} img/s | eta {dt / (epoch + 1) * (epochs - epoch - 1):.0f} s")
    meta = {"version": VERSION, "epochs": epochs, "train_seconds": round(time.perf_counter() - t0, 1)}
    if texts.dtype.kind == "f":
        meta["text_dim"] = int(texts.shape[1])
    return Matcher(image_model, text_model, meta)


def _captions_by_image(caption_image: np.ndarray, n_images: int) -> list[np.ndarray]:
    order = np.argsort(caption_image, kind="stable")
    bounds = np.searchsorted(caption_image[order], np.arange(n_images + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n_images)]


def real_r_precision(matcher: Matcher, images: np.ndarray, texts: np.ndarray, caption_image: np.ndarray, seed: int = 0) -> float:
    """R-precision of real images with one random caption each (candidates: the other images' captions)."""
    rng = np.random.default_rng(seed)
    by_image = _captions_by_image(caption_image, len(images))
    has = [i for i, c in enumerate(by_image) if len(c)]
    caps = [by_image[i][rng.integers(len(by_image[i]))] for i in has]
    n = min(N_CANDIDATES, len(has))
    return r_precision(matcher.embed_images(images[has]), matcher.embed_texts(texts[caps]), n_candidates=n, seed=seed)


def train_with_heldout(images: np.ndarray, texts: np.ndarray, caption_image: np.ndarray, where: str,
                       text_model: Callable | None = None, epochs: int = EPOCHS, log=print) -> Matcher:
    """Train on all but HELDOUT_IMAGES seeded images (with their captions); meta["r_precision_real"] is the
    R-precision of those held-out real pairs. `where` names the data in the error for too few images."""
    if len(images) < 2 * HELDOUT_IMAGES:
        raise UserError(f"{where}: {len(images)} usable images; the R-precision matcher needs >= {2 * HELDOUT_IMAGES}")
    perm = np.random.default_rng(0).permutation(len(images))
    new_row = np.empty_like(perm)
    new_row[perm] = np.arange(len(perm))
    images, caption_image = images[perm], new_row[caption_image]
    n_train = len(images) - HELDOUT_IMAGES
    train = caption_image < n_train
    log(f"matcher: training on {n_train} images / {int(train.sum())} captions")
    matcher = train_matcher(images[:n_train], texts[train], caption_image[train], text_model, epochs=epochs, log=log)
    real = real_r_precision(matcher, images[n_train:], texts[~train], caption_image[~train] - n_train)
    matcher.meta.update(n_train_images=n_train, n_heldout_images=HELDOUT_IMAGES, r_precision_real=real)
    log(f"matcher: held-out real R-precision {real:.3f} ({matcher.meta['train_seconds']:.0f} s)")
    return matcher


def caption_vectors(cache, texts: list[str]) -> np.ndarray:
    """float32 [N, D]: the cache's own vectors for captions it holds, its rebuilt (identity-checked) encoder
    for the rest — the vectors the GAN and the matcher were trained on."""
    return cache.encode(texts)[0]


def save_matcher(matcher: Matcher, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    matcher.image_model.save_weights(str(directory / IMAGE_WEIGHTS))
    matcher.text_model.save_weights(str(directory / TEXT_WEIGHTS))
    (directory / META).write_text(json.dumps(matcher.meta, indent=2) + "\n")  # last: marks a complete save


def load_matcher(directory: Path, text_model: Callable[[dict], object] | None = None,
                 version: int = VERSION) -> Matcher | None:
    """The saved matcher in `directory`, or None when absent or from another version. `text_model(meta)`
    builds its text side (default: the cache-vector MLP of meta["text_dim"])."""
    meta_path = Path(directory) / META
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != version:
        return None
    image_model = build_image_model()
    text = (text_model or (lambda m: build_vector_text_model(m["text_dim"])))(meta)
    image_model.load_weights(str(Path(directory) / IMAGE_WEIGHTS))
    text.load_weights(str(Path(directory) / TEXT_WEIGHTS))
    return Matcher(image_model, text, meta)


def load_or_train_matcher(cache_path: str | Path, directory: str | Path | None = None, log=print) -> Matcher:
    """The cache matcher of this embedding cache (cache/matcher/<fingerprint[:16]>/), trained there if missing."""
    from cache.reader import EmbeddingCache
    from tools.evaluation.pairs import load_pairs

    with EmbeddingCache.open(cache_path) as cache:
        fingerprint = cache.fingerprint
    target = Path(directory or DEFAULT_DIR) / fingerprint[:16]
    matcher = load_matcher(target)
    if matcher is not None:
        return matcher
    with first_use_lock(target):
        matcher = load_matcher(target)
        if matcher is not None:
            return matcher
        pairs = load_pairs(cache_path=cache_path, log=log)
        with EmbeddingCache.open(cache_path) as cache:
            vectors = cache.embeddings(pairs.caption_rows)  # [N, D] the captions of usable images
        log(f"matcher: cache matcher for {cache_path} -> {target}")
        matcher = train_with_heldout(pairs.images, vectors, pairs.caption_image, str(cache_path), log=log)
        matcher.meta.update(fingerprint=fingerprint, cache=str(Path(cache_path).resolve()))
        save_matcher(matcher, target)
    return matcher
