"""The shared R-precision judge: one image–text matcher per dataset, the same for every encoder's GAN.

The cache matcher (matching.py) reads each encoder's own cached vectors, so its R-precision compares only with
that encoder's real-image score. This one reads the caption words with a text encoder of its own, learned from
the dataset's real pairs alone (Keras TextVectorization -> word embedding -> bidirectional GRU, as AttnGAN's
DAMSM text encoder): it favours none of the encoders being compared, and its scores line up across them with
one real-image reference. Trained once per dataset, keyed by pairs_key (image ids + captions; any encoder's
cache of the dataset, or its folder, names the same one), under cache/matcher/shared-<key[:16]>/:

    judge = load_or_train_shared_matcher(cache_path="cache/synthetic-flowers-tfidf.h5")
    rp = r_precision(judge.embed_images(images), judge.embed_captions(texts), owner)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tools.evaluation.first_use import first_use_lock
from tools.evaluation.matching import DEFAULT_DIR, EMBED_DIM, EPOCHS, Matcher, load_matcher, save_matcher, train_with_heldout

VERSION = 1  # bump when the text model or recipe changes: stale judges are retrained
MAX_TOKENS = 10000  # vocabulary cap (Oxford-102 captions use ~5 000 words)
SEQ_LEN = 40  # tokens kept per caption (captions are cut at 100 words on import; Oxford's run 10-30)
WORD_DIM, GRU_UNITS = 64, 64


def vectorizer(vocabulary: list[str]):
    """Keras TextVectorization over a fixed vocabulary: lower-case, strip punctuation, split on whitespace,
    ids padded/cut to SEQ_LEN (0 = padding, 1 = out of vocabulary)."""
    from keras import layers

    return layers.TextVectorization(output_sequence_length=SEQ_LEN, vocabulary=vocabulary)


def fit_vocabulary(texts: list[str]) -> list[str]:
    """The training captions' words, most frequent first, without the padding and OOV entries."""
    from keras import layers

    layer = layers.TextVectorization(max_tokens=MAX_TOKENS, output_sequence_length=SEQ_LEN)
    layer.adapt(np.array(texts, dtype=object), batch_size=4096)
    return [str(w) for w in layer.get_vocabulary()[2:]]


def tokenize(vocabulary: list[str], texts: list[str]) -> np.ndarray:
    """int32 [N, SEQ_LEN] token ids of texts."""
    layer = vectorizer(vocabulary)
    parts = [np.asarray(layer(np.array(texts[i : i + 4096], dtype=object))) for i in range(0, len(texts), 4096)]
    return np.concatenate(parts).astype(np.int32) if parts else np.zeros((0, SEQ_LEN), np.int32)


def build_text_model(vocab_size: int):
    """Token ids [B, SEQ_LEN] -> [B, 128], L2-normalised: masked embedding, BiGRU, linear projection."""
    import keras
    from keras import layers

    ids = keras.Input((SEQ_LEN,), dtype="int32")
    x = layers.Embedding(vocab_size + 2, WORD_DIM, mask_zero=True)(ids)  # [B, L, 64]; +2: padding, OOV
    x = layers.Bidirectional(layers.GRU(GRU_UNITS))(x)  # [B, 128] last state of each direction
    x = layers.Dense(256, activation="relu")(x)
    return keras.Model(ids, layers.UnitNormalization()(layers.Dense(EMBED_DIM)(x)), name="judge_text")


class SharedMatcher(Matcher):
    """A Matcher whose text side reads caption strings (meta["vocabulary"] turns them into token ids)."""

    def embed_captions(self, texts: list[str]) -> np.ndarray:
        """Caption strings [N] -> float32 [N, 128], unit length."""
        return self.embed_texts(tokenize(self.meta["vocabulary"], list(texts)))


def _load(directory: Path) -> SharedMatcher | None:
    found = load_matcher(directory, lambda meta: build_text_model(len(meta["vocabulary"])), version=VERSION)
    return None if found is None else SharedMatcher(found.image_model, found.text_model, found.meta)


def load_or_train_shared_matcher(cache_path=None, dataset_dir=None, directory=None, *, epochs: int = EPOCHS,
                                 log=print) -> SharedMatcher:
    """The dataset's shared judge, trained on its real pairs (from any encoder's cache, or its folder) if missing."""
    from tools.evaluation.pairs import load_pairs

    key = _key(cache_path, dataset_dir)
    target = Path(directory or DEFAULT_DIR) / f"shared-{key[:16]}"
    found = _load(target) if key else None
    if found is not None:
        return found
    pairs = load_pairs(cache_path=cache_path, dataset_dir=dataset_dir, log=log)
    target = Path(directory or DEFAULT_DIR) / f"shared-{pairs.key[:16]}"
    with first_use_lock(target):
        return _load(target) or _train_and_save(pairs, target, epochs, log)  # the folder's key: known only now


def _train_and_save(pairs, target: Path, epochs: int, log) -> SharedMatcher:
    vocabulary = fit_vocabulary(pairs.texts)
    tokens = tokenize(vocabulary, pairs.texts)  # [N, SEQ_LEN]
    log(f"matcher: shared judge of {pairs.name} ({len(vocabulary)} words) -> {target}")
    matcher = train_with_heldout(pairs.images, tokens, pairs.caption_image, pairs.source,
                                 lambda: build_text_model(len(vocabulary)), epochs=epochs, log=log)
    matcher.meta.update(version=VERSION, kind="shared", dataset=pairs.name, pairs_key=pairs.key,
                        trained_from=pairs.source, vocabulary=vocabulary)
    save_matcher(matcher, target)
    return SharedMatcher(matcher.image_model, matcher.text_model, matcher.meta)


def _key(cache_path, dataset_dir) -> str | None:
    """pairs_key read cheaply from a cache (no images decoded); None for a folder (known after import)."""
    if cache_path is None:
        return None
    from cache.reader import EmbeddingCache
    from tools.evaluation.pairs import pairs_key

    with EmbeddingCache.open(cache_path) as cache:
        return pairs_key(cache.image_ids(), cache.texts(), cache.image_index())
