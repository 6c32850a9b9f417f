"""Training data: the embedding cache and the image cache held in memory, a step-keyed batch sampler, and the
tf.data pipeline feeding (real image uint8, matching condition, mismatched condition) with prefetch.

The sampler is counter-based: batch `s` is a pure function of (seed, s) — the image order is an epoch-wise
permutation from numpy Generator([seed, 1, epoch]) and the caption choices come from Generator([seed, 2, s]).
So prefetching never desynchronises it from the training step, and resuming at step s needs nothing but s
(the checkpoint's step) to continue with exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from gan.config import CacheInfo
from tools.errors import UserError


@dataclass
class TrainingData:
    info: CacheInfo
    texts: list[str]  # [N] caption texts
    caption_image: np.ndarray  # [N] int64 image row of each caption
    vectors: np.ndarray  # [N, D] float16 (cheap in memory; averaged and cast to float32 per batch)
    image_paths: list[str]  # [M]
    test_texts: list[str] | None
    labels: np.ndarray | None = None  # [M] int64 class id per image of a labelled cache (gan/aux_head.py)
    label_names: list[str] | None = None  # [K]
    image_ids: list[str] | None = None  # [M] (matches an exchanged-caption cache's images to these)


def read_cache(path, need_vectors: bool = True) -> TrainingData:
    """Load what training needs from an embedding cache; incomplete or broken caches are one-line UserErrors."""
    from pathlib import Path

    from cache.reader import EmbeddingCache

    with EmbeddingCache.open(path) as cache:  # refuses missing, damaged and incomplete files
        info = CacheInfo(path=str(Path(path).resolve()), encoder=cache.encoder_spec,
                         encoder_config=cache.encoder_config, dim=cache.dim, fingerprint=cache.fingerprint,
                         dataset_name=cache.dataset_name, num_images=cache.num_images,
                         num_captions=cache.num_captions, labels=cache.label_source,
                         token_length=cache.token_config["length"] if cache.has_tokens else 0)
        labels = cache.labels()  # (ids [M], names [K]) or None
        if labels is not None:
            info.num_classes = len(labels[1])
        vectors = cache.embeddings().astype(np.float16) if need_vectors else np.zeros((0, cache.dim), np.float16)
        return TrainingData(info, cache.texts(), cache.image_index(), vectors, cache.image_paths(),
                            cache.test_texts(), *(labels or (None, None)), image_ids=cache.image_ids())


def sample_captions(texts: list[str], caption_image: np.ndarray, n: int) -> list[int]:
    """Rows of n fixed captions for the sample grids: the first caption of each of the first images (distinct
    texts, distinct images, cache order), topped up with further distinct captions if there are fewer images."""
    seen_text, seen_image, rows = set(), set(), []
    for row, (text, image) in enumerate(zip(texts, caption_image.tolist())):
        if text not in seen_text and image not in seen_image:
            seen_text.add(text)
            seen_image.add(image)
            rows.append(row)
            if len(rows) == n:
                return rows
    for row, text in enumerate(texts):
        if len(rows) == n:
            break
        if text not in seen_text:
            seen_text.add(text)
            rows.append(row)
    return rows


def group_rows(owner: np.ndarray, m: int):
    """owner [N] int (0..m-1) of each row -> (order [N]: the rows grouped by owner, stable; count [m] rows per
    owner; start [m]: each owner's first slot in `order`)."""
    owner = np.asarray(owner, np.int64)
    count = np.bincount(owner, minlength=m)
    return np.argsort(owner, kind="stable"), count, np.concatenate([[0], np.cumsum(count)[:-1]])


class BatchSampler:
    """Index batches for step s: images [B], their caption rows [B, k], mismatched caption rows [B, k].

    Only images that decoded and have captions are used; mismatched captions always come from a DIFFERENT
    image. With k > 1 the k captions of an image are distinct when it has that many.
    """

    def __init__(self, caption_image: np.ndarray, valid_images: np.ndarray, batch_size: int, seed: int, k: int = 1):
        caption_image = np.asarray(caption_image, np.int64)
        m = len(valid_images)
        self.order, self.count, self.start = group_rows(caption_image, m)  # caption rows grouped by image
        self.images = np.flatnonzero(np.asarray(valid_images, bool) & (self.count > 0))  # usable image rows
        if len(self.images) < 2:
            raise UserError(f"only {len(self.images)} usable image(s) (decoded and captioned); matching-aware "
                            f"training needs at least 2 — check the skipped-images report above")
        self.batch_size, self.seed, self.k = batch_size, seed, k
        self.max_count = int(self.count.max())
        self._perms: dict[int, np.ndarray] = {}

    @property
    def num_images(self) -> int:
        return len(self.images)

    def epoch_of(self, step: int) -> float:
        return step * self.batch_size / self.num_images

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = np.random.default_rng([self.seed, 1, epoch]).permutation(self.num_images)
        return self._perms[epoch]

    def _captions(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[B] image rows -> [B, k] caption rows."""
        cnt = self.count[images][:, None]  # [B, 1]
        if self.k == 1:
            pos = (rng.random((len(images), 1)) * cnt).astype(np.int64)
        else:  # k distinct positions per image: the k smallest random keys among its captions
            keys = rng.random((len(images), self.max_count))
            keys[np.arange(self.max_count)[None, :] >= cnt] = 2.0
            pos = np.argsort(keys, axis=1)[:, : self.k]
            fill = (rng.random(pos.shape) * cnt).astype(np.int64)  # images with fewer than k captions repeat
            pos = np.where(pos < cnt, pos, fill)
        return self.order[self.start[images][:, None] + pos]

    def batch(self, step: int):
        n, b = self.num_images, self.batch_size
        p = step * b + np.arange(b)  # global sample positions
        slot = np.concatenate([self._perm(int(e))[p[p // n == e] % n] for e in np.unique(p // n)])  # [B]
        rng = np.random.default_rng([self.seed, 2, step])
        other = (slot + rng.integers(1, n, size=b)) % n  # a different usable image
        images, wrong_images = self.images[slot], self.images[other]
        return images, self._captions(images, rng), self._captions(wrong_images, rng)


def make_batch_fn(images: np.ndarray, conditions, sampler: BatchSampler, negatives=None, labels=None, exchanged=None):
    """step -> (images uint8 [B, s, s, 3], cond [B, ...], wrong cond [B, ...]), then for an arch that reads words
    (conditions a gan.words.WordConditions) the token states of both: words [B, L, E] float16, lengths [B] int32,
    wrong words, wrong lengths; then, given `labels` ([M] class id per image), the images' class ids int32 [B]
    (the auxiliary classifier's targets, gan/aux_head.py); last, given `exchanged`, float32 [B] 1 where the
    mismatched caption is an exchanged one (G's binding term, gan.losses.binding_rank_loss).

    `conditions` is [N, D] vectors (averaged over the k captions, float32), [N, T] int32 word ids (an arch that
    reads raw text, gan/archs.py) or WordConditions (vectors + token states read by row).
    `negatives` (a gan.negatives.HardNegatives, vectors only) replaces part of the mismatched captions by mined ones;
    then `exchanged` (a gan.exchanged.ExchangedNegatives) part of them by the image's own exchanged-colour captions.
    """
    tokens = getattr(conditions, "tokens", None)
    vectors = conditions.vectors if tokens is not None else conditions
    is_ids = vectors.dtype.kind in "iu"
    wrong_tokens = tokens  # with exchanged captions, rows N + j are exchanged caption j
    if exchanged is not None and tokens is not None:
        from gan.exchanged import StackedTokens

        wrong_tokens = StackedTokens(tokens, exchanged.tokens)
    labels = None if labels is None else np.asarray(labels, np.int32)

    def batch(step):
        img_rows, rows, wrong_rows = sampler.batch(int(step))
        classes = () if labels is None else (labels[img_rows],)
        if is_ids:
            return images[img_rows], vectors[rows[:, 0]], vectors[wrong_rows[:, 0]], *classes
        cond = vectors[rows].astype(np.float32).mean(axis=1)  # [B, k, D] -> [B, D]
        if negatives is not None:
            wrong_rows = negatives.mine(int(step), cond, img_rows, wrong_rows)
        if exchanged is not None:
            wrong_rows = exchanged.replace(int(step), img_rows, wrong_rows)
        wrong = (vectors[wrong_rows] if exchanged is None else exchanged.take(vectors, wrong_rows))
        wrong = wrong.astype(np.float32).mean(axis=1)
        words = () if tokens is None else (*tokens.rows(rows[:, 0]), *wrong_tokens.rows(wrong_rows[:, 0]))
        mask = () if exchanged is None else ((wrong_rows[:, 0] >= exchanged.offset).astype(np.float32),)
        return (images[img_rows], cond, wrong, *words, *classes, *mask)

    return batch


def make_dataset(images: np.ndarray, conditions, sampler: BatchSampler, start_step: int,
                 end_step: int | None = None, prefetch: int = 2, negatives=None, labels=None,
                 exchanged=None) -> tf.data.Dataset:
    """tf.data over steps [start_step, end_step): numpy gathers in one py-function, prefetched; with `labels`
    each element also carries the images' class ids [B] int32, with `exchanged` then the exchanged rows' mask [B]
    float32 (make_batch_fn)."""
    batch = make_batch_fn(images, conditions, sampler, negatives, labels, exchanged)
    b, size = sampler.batch_size, images.shape[1]
    tokens = getattr(conditions, "tokens", None)
    vectors = conditions.vectors if tokens is not None else conditions
    cond_dtype = tf.int32 if vectors.dtype.kind in "iu" else tf.float32
    shapes = [(b, size, size, 3), (b, vectors.shape[1]), (b, vectors.shape[1])]
    dtypes = [tf.uint8, cond_dtype, cond_dtype]
    if tokens is not None:
        shapes += [(b, tokens.length, tokens.dim), (b,)] * 2
        dtypes += [tf.float16, tf.int32] * 2
    if labels is not None:
        shapes, dtypes = shapes + [(b,)], dtypes + [tf.int32]
    if exchanged is not None:
        shapes, dtypes = shapes + [(b,)], dtypes + [tf.float32]

    def fn(step):
        out = tf.numpy_function(batch, [step], dtypes, stateful=False)
        for t, shape in zip(out, shapes):
            t.set_shape(shape)
        return tuple(out)

    end = end_step if end_step is not None else np.iinfo(np.int64).max
    ds = tf.data.Dataset.range(start_step, end).map(fn, num_parallel_calls=1, deterministic=True)
    return ds.prefetch(prefetch)
