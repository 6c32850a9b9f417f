"""R-precision (AttnGAN, Xu et al. 2018): does an image rank its own caption first among 100 candidates?

The scorer is a small image–text matcher trained on the dataset's real pairs, over the cached text vectors
(so it reads text exactly as the GAN does): image CNN -> 128-d, text MLP on the cached vector -> 128-d,
symmetric contrastive (InfoNCE, CLIP-style) loss. Trained once per embedding cache (keyed by the cache
fingerprint) and saved under cache/matcher/<fingerprint>/:

    matcher = load_or_train_matcher("cache/synthetic-flowers-minilm.h5")
    rp = r_precision(matcher.embed_images(images), matcher.embed_texts(vectors))

Its R-precision on held-out real pairs (meta["r_precision_real"]) is the ceiling reported beside a
generator's: a synthetic caption naming few attributes also fits other flowers, so even real images are
not always ranked first.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tools.errors import UserError

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
    """Fraction of images whose true caption scores highest among itself and n_candidates−1 mismatched ones.

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
    return float(np.mean(np.where(beaten, 0.0, 1.0 / (1 + ties))))


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

    def embed_texts(self, vectors: np.ndarray) -> np.ndarray:
        """float [N, D] cached text vectors -> float32 [N, 128], unit length."""
        return np.asarray(self.text_model(np.asarray(vectors, np.float32), training=False))


def build_models(text_dim: int):
    """(image model [B, 64, 64, 3] -> [B, 128], text model [B, text_dim] -> [B, 128]), both L2-normalised."""
    import keras
    from keras import layers

    from tools.evaluation.networks import image_trunk

    image = keras.Input((64, 64, 3))
    x = layers.Dense(256, activation="relu")(image_trunk(image))
    x = layers.UnitNormalization()(layers.Dense(EMBED_DIM)(x))
    text = keras.Input((text_dim,))
    t = layers.Dense(256, activation="relu")(text)
    t = layers.UnitNormalization()(layers.Dense(EMBED_DIM)(t))
    return keras.Model(image, x, name="match_image"), keras.Model(text, t, name="match_text")


def train_matcher(
    images: np.ndarray, vectors: np.ndarray, caption_image: np.ndarray,
    epochs: int = EPOCHS, seed: int = 0, log=print,
) -> Matcher:
    """Contrastive training on real pairs: each epoch pairs every image with one of its captions at random.

    images: uint8 [M, 64, 64, 3]; vectors: [N, D] caption vectors; caption_image: [N] image row of each caption.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    image_model, text_model = build_models(vectors.shape[1])
    variables = image_model.trainable_variables + text_model.trainable_variables
    steps_per_epoch = len(images) // BATCH
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, epochs * steps_per_epoch, alpha=0.05))

    @tf.function
    def step(img, vec):
        with tf.GradientTape() as tape:
            logits = LOGIT_SCALE * tf.matmul(image_model(img, training=True), text_model(vec, training=True), transpose_b=True)
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
            losses.append(float(step(images[rows].astype(np.float32), vectors[caps].astype(np.float32))))
        dt = time.perf_counter() - t0
        log(f"matcher epoch {epoch + 1}/{epochs} | loss {np.mean(losses):.3f} | "
            f"{(epoch + 1) * order.size / dt:.0f} img/s | eta {dt / (epoch + 1) * (epochs - epoch - 1):.0f} s")
    meta = {"version": VERSION, "text_dim": int(vectors.shape[1]), "epochs": epochs,
            "train_seconds": round(time.perf_counter() - t0, 1)}
    return Matcher(image_model, text_model, meta)


def _captions_by_image(caption_image: np.ndarray, n_images: int) -> list[np.ndarray]:
    order = np.argsort(caption_image, kind="stable")
    bounds = np.searchsorted(caption_image[order], np.arange(n_images + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n_images)]


def real_r_precision(matcher: Matcher, images: np.ndarray, vectors: np.ndarray, caption_image: np.ndarray, seed: int = 0) -> float:
    """R-precision of real images with one random caption each (candidates: the other images' captions)."""
    rng = np.random.default_rng(seed)
    by_image = _captions_by_image(caption_image, len(images))
    has = [i for i, c in enumerate(by_image) if len(c)]
    caps = [by_image[i][rng.integers(len(by_image[i]))] for i in has]
    n = min(N_CANDIDATES, len(has))
    return r_precision(matcher.embed_images(images[has]), matcher.embed_texts(vectors[caps]), n_candidates=n, seed=seed)


def caption_vectors(cache, texts: list[str]) -> np.ndarray:
    """float32 [N, D]: the cache's own vectors for captions it holds, its rebuilt (identity-checked) encoder
    for the rest — the vectors the GAN and the matcher were trained on."""
    return cache.encode(texts)[0]


def save_matcher(matcher: Matcher, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    matcher.image_model.save_weights(str(directory / IMAGE_WEIGHTS))
    matcher.text_model.save_weights(str(directory / TEXT_WEIGHTS))
    (directory / META).write_text(json.dumps(matcher.meta, indent=2) + "\n")  # last: marks a complete save


def load_matcher(directory: Path) -> Matcher | None:
    """The saved matcher in `directory`, or None when absent or from another VERSION."""
    meta_path = directory / META
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != VERSION:
        return None
    image_model, text_model = build_models(meta["text_dim"])
    image_model.load_weights(str(directory / IMAGE_WEIGHTS))
    text_model.load_weights(str(directory / TEXT_WEIGHTS))
    return Matcher(image_model, text_model, meta)


def load_or_train_matcher(cache_path: str | Path, directory: str | Path | None = None, log=print) -> Matcher:
    """The matcher for this embedding cache (cache/matcher/<fingerprint[:16]>/), trained there if missing."""
    from cache.reader import EmbeddingCache
    from tools.images import load_rgb

    with EmbeddingCache.open(cache_path) as cache:
        fingerprint = cache.fingerprint
        target = Path(directory or DEFAULT_DIR) / fingerprint[:16]
        matcher = load_matcher(target)
        if matcher is not None:
            return matcher
        log(f"matcher: loading {cache.num_images} images of {cache_path} ...")
        images = np.stack([load_rgb(p, 64) for p in cache.image_paths()])  # [M, 64, 64, 3]
        vectors, caption_image = cache.embeddings(), cache.image_index()
    if len(images) < 2 * HELDOUT_IMAGES:
        raise UserError(f"{cache_path}: {len(images)} images; the R-precision matcher needs >= {2 * HELDOUT_IMAGES}")
    # hold out the last HELDOUT_IMAGES of a seeded shuffle, with their captions
    perm = np.random.default_rng(0).permutation(len(images))
    new_row = np.empty_like(perm)
    new_row[perm] = np.arange(len(perm))
    images, caption_image = images[perm], new_row[caption_image]
    n_train = len(images) - HELDOUT_IMAGES
    train_caps = caption_image < n_train
    log(f"matcher: training on {n_train} images / {int(train_caps.sum())} captions -> {target}")
    matcher = train_matcher(images[:n_train], vectors[train_caps], caption_image[train_caps], log=log)
    held = ~train_caps
    matcher.meta.update(
        fingerprint=fingerprint, cache=str(Path(cache_path).resolve()), n_train_images=n_train, n_heldout_images=HELDOUT_IMAGES,
        r_precision_real=real_r_precision(matcher, images[n_train:], vectors[held], caption_image[held] - n_train),
    )
    save_matcher(matcher, target)
    log(f"matcher: held-out real R-precision {matcher.meta['r_precision_real']:.3f} ({matcher.meta['train_seconds']:.0f} s)")
    return matcher
