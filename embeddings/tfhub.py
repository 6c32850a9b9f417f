"""TF Hub SavedModels, loaded with `tensorflow_hub.load` and called directly (hub.KerasLayer is Keras 2 only).

`tfhub:<handle-or-dir>`: Universal-Sentence-Encoder style, strings [N] -> [N, D]; D is found by encoding a probe.
`tfhub-bert:<preprocess>,<encoder>`: the TF Hub BERT API — preprocess(strings) -> {input_word_ids, input_mask,
input_type_ids}; encoder(dict) -> {pooled_output, sequence_output, ...}; output=pooled (default) or mean
(mask-mean over sequence_output). `tensorflow_text` is imported before `hub.load` (its ops, e.g. CaseFoldUTF8,
must be registered first).

Downloads are cached where tensorflow_hub puts them: $TFHUB_CACHE_DIR if set (tensorflow_hub reads it itself;
nothing here sets or overrides it), else a folder under the system temp dir. Handles are URLs
(https://tfhub.dev/..., https://www.kaggle.com/models/...); anything else is a local SavedModel directory.
"""
from __future__ import annotations

import os

import numpy as np

from embeddings.common import BatchedEncoder, Option, canonical_spec, is_remote, pool, require, resolve_options
from tools.errors import UserError

USE_OPTIONS = {"normalize": Option(False, "L2-normalise each vector (USE outputs are already ~unit length)")}
BERT_OPTIONS = {
    "output": Option("pooled", "sentence vector", ("pooled", "mean")),
    "normalize": Option(True, "L2-normalise each vector"),
}
PIP_HUB = "tensorflow-hub==0.16.1"
PIP_TEXT = "tensorflow-text==2.21.*"


def _resolve_handle(family: str, handle: str) -> str:
    if not handle:
        raise UserError(f"{family}: name a TF Hub handle (https://...) or a local SavedModel directory")
    if is_remote(handle):
        return handle
    path = os.path.abspath(os.path.expanduser(handle))
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        what = "has no saved_model.pb" if os.path.isdir(path) else "does not exist"
        raise UserError(f"{family}: SavedModel directory '{handle}' {what} — pass a TF Hub handle (https://...) "
                        "or a directory written by tf.saved_model.save")
    return path


def _hub_load(family: str, handle: str):
    hub = require("tensorflow_hub", PIP_HUB, family)
    try:
        return hub.load(handle)
    except Exception as e:  # noqa: BLE001 — network, format and op-registry errors all mean "cannot load"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{family}: cannot load '{handle}' ({first}) — check the handle/directory and your "
                        f"internet connection; downloads are cached in $TFHUB_CACHE_DIR") from None


def _single_output(out):
    """USE-style models return a tensor; some return a dict ({"outputs": ...} or {"default": ...})."""
    if isinstance(out, dict):
        for key in ("outputs", "default", "pooled_output"):
            if key in out:
                return out[key]
        if len(out) == 1:
            return next(iter(out.values()))
        raise UserError(f"tfhub: model returns several outputs {sorted(out)}; expected one [N, D] tensor")
    return out


class TFHubEncoder(BatchedEncoder):
    """strings [N] -> [N, D] through a loaded SavedModel's __call__."""

    def __init__(self, handle: str, options: dict):
        self.handle = _resolve_handle("tfhub", handle)
        self.options = resolve_options("tfhub", USE_OPTIONS, options)
        self.normalize = self.options["normalize"]
        self.spec = canonical_spec("tfhub", self.handle, self.options, USE_OPTIONS)
        try:  # multilingual USE needs tensorflow_text ops; harmless otherwise
            import tensorflow_text  # noqa: F401
        except ImportError:
            pass
        self.model = _hub_load("tfhub", self.handle)
        probe = np.asarray(self._call(["probe"]))
        if probe.ndim != 2 or probe.shape[0] != 1:
            raise UserError(f"tfhub: '{handle}' returned shape {probe.shape} for one string; expected [1, D]")
        self.dim = int(probe.shape[1])

    def _call(self, texts):
        import tensorflow as tf

        return _single_output(self.model(tf.constant(texts, tf.string)))

    def _run_batch(self, items, compiled) -> np.ndarray:
        return np.asarray(self._call(items), dtype=np.float32)  # [b, D]; the SavedModel is already a graph

    def config(self) -> dict:
        return {"spec": self.spec, "family": "tfhub", "arg": self.handle, "options": dict(self.options),
                "dim": self.dim}


class TFHubBertEncoder(BatchedEncoder):
    """BERT preprocess + encoder SavedModels, pooled or mask-mean, in one tf.function over string batches."""

    def __init__(self, preprocess: str, encoder: str, options: dict):
        require("tensorflow_text", PIP_TEXT, "tfhub-bert")  # registers CaseFoldUTF8 etc. before hub.load
        self.handles = (_resolve_handle("tfhub-bert", preprocess), _resolve_handle("tfhub-bert", encoder))
        self.options = resolve_options("tfhub-bert", BERT_OPTIONS, options)
        self.normalize = self.options["normalize"]
        self.spec = canonical_spec("tfhub-bert", ",".join(self.handles), self.options, BERT_OPTIONS)
        self.preprocess = _hub_load("tfhub-bert", self.handles[0])
        self.encoder = _hub_load("tfhub-bert", self.handles[1])
        import tensorflow as tf

        self._fn = self._compile(trim=True)
        try:  # trimming padding needs an encoder that accepts any sequence length
            probe = self._fn(["probe"]).numpy()
        except (TypeError, ValueError, tf.errors.InvalidArgumentError):
            self._fn = self._compile(trim=False)
            probe = self._fn(["probe"]).numpy()
        self.dim = int(probe.shape[1])

    def _forward(self, texts, trim: bool):
        """texts [B] string -> [B, H]."""
        import tensorflow as tf

        inputs = dict(self.preprocess(texts))  # each [B, S] int32, S fixed by the preprocessor (e.g. 128)
        if trim:  # cut to the longest real sequence in the batch: exact, since padding is masked
            width = tf.reduce_max(tf.reduce_sum(tf.cast(inputs["input_mask"], tf.int32), axis=1))
            inputs = {k: v[:, :width] for k, v in inputs.items()}
        try:
            out = self.encoder(inputs, training=False)
        except (TypeError, ValueError):  # SavedModels exported without a `training` argument
            out = self.encoder(inputs)
        mode = "pooler" if self.options["output"] == "pooled" else "mean"
        return pool(out["sequence_output"], inputs["input_mask"], mode, out.get("pooled_output"))

    def _compile(self, trim: bool):
        import tensorflow as tf

        return tf.function(lambda t: self._forward(t, trim), input_signature=[tf.TensorSpec([None], tf.string)])

    def _run_batch(self, items, compiled) -> np.ndarray:
        import tensorflow as tf

        batch = tf.constant(items, tf.string)
        out = self._fn(batch) if compiled else self._forward(batch, trim=False)
        return np.asarray(out, dtype=np.float32)

    def config(self) -> dict:
        return {"spec": self.spec, "family": "tfhub-bert", "arg": ",".join(self.handles),
                "options": dict(self.options), "dim": self.dim}


def build_tfhub(arg: str, options: dict) -> TFHubEncoder:
    return TFHubEncoder(arg, options)


def build_tfhub_bert(arg: str, options: dict) -> TFHubBertEncoder:
    parts = [p.strip() for p in arg.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UserError(f"tfhub-bert: expected '<preprocess>,<encoder>' (two handles or dirs), got '{arg}'")
    return TFHubBertEncoder(parts[0], parts[1], options)
