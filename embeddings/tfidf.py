"""`tfidf` — offline lexical baseline: Keras 3 `TextVectorization(output_mode="tf_idf")` fitted on the captions.

Tokens: lowercased, punctuation stripped, split on whitespace (Keras' defaults). The vocabulary keeps the
`max_tokens - 1` most frequent tokens plus "[UNK]" at index 0; Keras orders it by count, ties broken by the
token itself, so the same captions always give the same vocabulary. idf = log(1 + N / (1 + df)).
Rows are L2-normalised; dim = vocabulary size, fixed once fitted. `state()` = {"vocabulary": str [V],
"idf": float32 [V]}; `load_state` restores them so new text encodes byte-identically.
"""
from __future__ import annotations

import numpy as np

from embeddings.common import BatchedEncoder, Option, canonical_spec, resolve_options
from tools.errors import UserError

OPTIONS = {"max_tokens": Option(4096, "vocabulary size cap, including the [UNK] slot")}
FIT_BATCH = 4096  # captions per adapt step (bounds memory)


class TfidfEncoder(BatchedEncoder):
    needs_fit = True
    batch_size = 1024  # sparse-ish bag of words: large batches are cheap; sorting buys nothing
    normalize = True

    def __init__(self, options: dict):
        self.options = resolve_options("tfidf", OPTIONS, options)
        self.spec = canonical_spec("tfidf", "", self.options, OPTIONS)
        self.dim = 0  # known after fit / load_state
        self._layer = None

    def _new_layer(self):
        import keras  # Keras 3, whatever TF_USE_LEGACY_KERAS says about tf.keras

        return keras.layers.TextVectorization(max_tokens=self.options["max_tokens"], output_mode="tf_idf")

    def fit(self, texts) -> None:
        import tensorflow as tf

        texts = [str(t) for t in texts]
        if not texts:
            raise UserError("tfidf: cannot fit on an empty caption list")
        layer = self._new_layer()
        layer.adapt(tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string)).batch(FIT_BATCH))
        if layer.vocabulary_size() <= 1:
            raise UserError("tfidf: the captions contain no tokens to build a vocabulary from")
        self._set(layer)

    def _set(self, layer) -> None:
        self._layer = layer
        self.dim = int(layer.vocabulary_size())

    def state(self) -> dict[str, np.ndarray]:
        self._require_fitted()
        vocab = np.array(self._layer.get_vocabulary(), dtype=object).astype(str)  # [V] incl. "[UNK]" at 0
        # Keras 3 has no public idf getter; the lookup sub-layer holds the weights (keras 3.15)
        idf = np.asarray(self._layer._lookup_layer.idf_weights.numpy(), dtype=np.float32)  # [V]
        return {"vocabulary": vocab, "idf": idf}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        try:
            vocab = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(state["vocabulary"])]
            idf = np.asarray(state["idf"], dtype=np.float32)
        except KeyError as e:
            raise UserError(f"tfidf: fitted state lacks {e} (needs 'vocabulary' and 'idf')") from None
        if len(vocab) != len(idf) or len(vocab) > self.options["max_tokens"]:
            raise UserError(f"tfidf: fitted state has {len(vocab)} tokens and {len(idf)} idf weights "
                            f"(max_tokens {self.options['max_tokens']}) — the cache's encoder_state is damaged")
        layer = self._new_layer()
        layer.set_vocabulary(vocab, idf_weights=idf)
        self._set(layer)

    def _require_fitted(self) -> None:
        if self._layer is None:
            raise UserError("tfidf: encoder is not fitted — call fit(captions) or load_state(cache state) first")

    def encode(self, texts, **kwargs) -> np.ndarray:
        self._require_fitted()
        return super().encode(texts, **kwargs)

    def _run_batch(self, items, compiled) -> np.ndarray:
        import tensorflow as tf

        return np.asarray(self._layer(tf.constant(items, tf.string)), dtype=np.float32)  # [b, V]

    def config(self) -> dict:
        return {"spec": self.spec, "family": "tfidf", "arg": "", "options": dict(self.options), "dim": self.dim}


def build_tfidf(arg: str, options: dict) -> TfidfEncoder:
    if arg:
        raise UserError(f"tfidf takes no argument (got 'tfidf:{arg}'); options go after '?', e.g. tfidf?max_tokens=8192")
    return TfidfEncoder(options)
