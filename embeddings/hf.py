"""`hf:<name-or-dir>` — BERT-family Hugging Face checkpoints run with transformers' TensorFlow classes (no torch).

Weights, first found wins: `tf_model.h5` or TF-layout `model.safetensors` (TFAutoModel.from_pretrained);
PyTorch-layout `model.safetensors` (+ sharded index) loaded as a numpy state dict with
`load_pytorch_state_dict_in_tf2_model` (TFAutoModel cannot read these in 4.57, transformers issue #40028);
`pytorch_model.bin` only when torch is installed. Hub names download into the Hugging Face cache
(`HF_HOME`); set `HF_HUB_OFFLINE=1` to use only what is cached.

Speed: texts are tokenised once, sorted by token length, run in batches through one `tf.function` whose
input signature is [None, None] int32 (no retrace per shape), and returned in input order.
transformers is imported only inside the builders (it sets TF_USE_LEGACY_KERAS for its own tf_keras).
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np

from embeddings.common import (BatchedEncoder, Option, as_text_list, batch_order, canonical_spec, dedup, is_remote,
                               l2_normalize, pool, require, resolve_options)
from tools.errors import UserError

OPTIONS = {
    "pooling": Option("mean", "token pooling", ("mean", "cls", "pooler")),
    "max_length": Option(128, "tokens per text; longer texts are truncated"),
    "normalize": Option(True, "L2-normalise each vector"),
    "precision": Option("float32", "matmul precision; bfloat16 (BERT only) is ~1.5x faster on CPUs with AVX512-BF16 "
                        "or AMX, and a cache build refuses it unless cosine to float32 >= 0.9999",
                        ("float32", "bfloat16")),
}
MIN_BF16_COSINE = 0.9999  # bfloat16 vectors must stay this close to the float32 ones (checked per cache build)
PIP_TRANSFORMERS = "'transformers>=4.57,<5' tf-keras==2.21.0"


class _DropTfDeprecation(logging.Filter):
    """transformers 4.57 warns on every TF model that its TF classes go away in v5. We pin <5 on purpose
    (5.x has no TF classes; see README), so that line is noise on every precompute/generate run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "TensorFlow and JAX classes are deprecated" not in record.getMessage()


logging.getLogger("transformers.modeling_tf_utils").addFilter(_DropTfDeprecation())


def _find(source: str, filename: str) -> str | None:
    """Local path or hub-cached download of one checkpoint file, None if the checkpoint lacks it."""
    if os.path.isdir(source):
        path = os.path.join(source, filename)
        return path if os.path.isfile(path) else None
    from transformers.utils import cached_file

    return cached_file(
        source, filename, _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False
    )


def _safetensors_format(path: str) -> str:
    from safetensors import safe_open

    with safe_open(path, "np") as f:
        return (f.metadata() or {}).get("format", "pt")


def _load_state_dict(model, state: dict) -> dict:
    """Numpy PyTorch-layout weights into the TF model; missing keys are reported (checked by the encoder)."""
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    _, info = load_pytorch_state_dict_in_tf2_model(
        model, state, allow_missing_keys=True, output_loading_info=True, skip_logger_warnings=True
    )
    return info


def load_tf_model(source: str):
    """(TF model, loading info, weights file name) for a local dir or hub name, without torch."""
    require("transformers", PIP_TRANSFORMERS, f"hf:{source}")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise UserError(
            f"hf: cannot load the config of '{source}' ({str(e).splitlines()[0]}) — pass a local model directory "
            "containing config.json, or a Hugging Face hub name (needs internet the first time)"
        ) from None
    for name in ("tf_model.h5", "model.safetensors"):
        path = _find(source, name)
        if path and (name == "tf_model.h5" or _safetensors_format(path) == "tf"):
            return (*_from_pretrained(config, source), name)
        if path:
            from safetensors.numpy import load_file

            model = _from_config(config, source)
            return model, _load_state_dict(model, load_file(path)), name
    index = _find(source, "model.safetensors.index.json")
    if index:
        from safetensors.numpy import load_file

        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_file(_find(source, shard)))
        model = _from_config(config, source)
        return model, _load_state_dict(model, state), "model.safetensors.index.json"
    if _find(source, "pytorch_model.bin"):
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UserError(
                f"hf: '{source}' has only PyTorch weights (pytorch_model.bin) and torch is not installed — "
                "pip install torch, or convert the checkpoint to safetensors (model.safetensors)"
            ) from None
        return (*_from_pretrained(config, source, from_pt=True), "pytorch_model.bin")
    raise UserError(
        f"hf: no weights in '{source}' (looked for tf_model.h5, model.safetensors, pytorch_model.bin) — "
        "save the model with save_pretrained() into that directory"
    )


def _no_tf_class(config, source: str, e: Exception) -> UserError:
    return UserError(
        f"hf: '{source}' (model_type {config.model_type}) has no TensorFlow class in transformers "
        f"({str(e).splitlines()[0]}) — use a BERT-family checkpoint (bert, roberta, distilbert, electra, ...)"
    )


def _from_config(config, source: str):
    from transformers import TFAutoModel

    try:
        return TFAutoModel.from_config(config)
    except ValueError as e:
        raise _no_tf_class(config, source, e) from None


def _from_pretrained(config, source: str, **kwargs):
    """(model, loading info) for weights TFAutoModel reads natively (tf_model.h5, TF-layout safetensors, torch)."""
    from transformers import TFAutoModel

    try:
        return TFAutoModel.from_pretrained(source, output_loading_info=True, **kwargs)
    except ValueError as e:
        raise _no_tf_class(config, source, e) from None


class HFEncoder(BatchedEncoder):
    """Token states of a transformers TF model, pooled (mean/cls/pooler) and optionally L2-normalised."""

    def __init__(self, source: str, options: dict, *, family: str = "hf", declared: dict = OPTIONS, info=None):
        self.family, self.source = family, source
        self.options = resolve_options(family, declared, options)
        self.pooling, self.max_length = self.options["pooling"], self.options["max_length"]
        self.normalize, self.precision = self.options["normalize"], self.options["precision"]
        self._info = dict(info or {})
        if self.precision == "bfloat16":  # before loading any weights
            from embeddings.bert_forward import require_onednn

            require_onednn(f"{family}:{source}" if family == "hf" else family)
        model, loading, weights = load_tf_model(source)
        self._check_loading(loading)
        if model.config.model_type == "mpnet":  # before any trace: transformers' buckets drift in graphs
            from embeddings.mpnet import exact_relative_buckets

            exact_relative_buckets(model)
        self.model = model
        self.dim = int(model.config.hidden_size)
        max_pos = getattr(model.config, "max_position_embeddings", None)
        if max_pos and self.max_length > max_pos:  # the model cannot see further: clamp, record what is used
            self.max_length = self.options["max_length"] = int(max_pos)
        self.spec = canonical_spec(family, "" if family != "hf" else source, self.options, declared)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self._token_types = "token_type_ids" in self.tokenizer.model_input_names
        self._pad_id = self.tokenizer.pad_token_id or 0
        self._info.update(model_type=model.config.model_type, weights=weights)
        self._fast = None  # BertForward in bfloat16, when precision=bfloat16
        if self.precision == "bfloat16":
            from embeddings.bert_forward import BertForward, check_supported

            check_supported(model.config, f"{family}:{source}" if family == "hf" else family)
            if self.pooling == "pooler":
                raise UserError(f"{family}: precision=bfloat16 computes token states only — use pooling=mean or cls")
            self._fast = BertForward(model, "bfloat16")
            self.batch_size = 64  # measured: bf16 64 > 128 and > 32 (oneDNN, 2 cores)
        self._compiled = self._compile()
        self._compiled_tokens = None  # encode_tokens' graph, traced on first use
        self._run_batch(self._prepare(["probe"])[0], compiled=True)  # trace once now; fails early on bad pooling

    def _check_loading(self, loading: dict) -> None:
        missing = [k for k in loading.get("missing_keys", []) if k]
        pooler_missing = [k for k in missing if "pooler" in k]
        if pooler_missing and self.pooling == "pooler":
            raise UserError(f"{self.family}: '{self.source}' has no trained pooler weights — use pooling=mean or cls")
        other = sorted(set(missing) - set(pooler_missing))
        if other:
            raise UserError(f"{self.family}: '{self.source}' lacks weights for {', '.join(other[:3])} (... "
                            f"{len(other)} in all) — is it a complete base-model checkpoint?")

    def _forward(self, ids, mask):
        """ids, mask [B, T] int32 -> [B, H] pooled (unnormalised)."""
        return self._forward_tokens(ids, mask)[0]

    def _forward_tokens(self, ids, mask):
        """ids, mask [B, T] int32 -> ([B, H] pooled (unnormalised), [B, T, H] last-layer token states)."""
        import tensorflow as tf

        if self._fast is not None:
            hidden = self._fast(ids, mask)
            return pool(hidden, mask, self.pooling), hidden
        kwargs = {"input_ids": ids, "attention_mask": mask, "training": False}
        if self._token_types:
            kwargs["token_type_ids"] = tf.zeros_like(ids)
        out = self.model(**kwargs)
        pooled = getattr(out, "pooler_output", None)
        if self.pooling == "pooler" and pooled is None:
            raise UserError(f"{self.family}: '{self.source}' has no pooler output — use pooling=mean or cls")
        return pool(out.last_hidden_state, mask, self.pooling, pooled), out.last_hidden_state

    def _compile(self, fn=None):
        import tensorflow as tf

        spec = tf.TensorSpec([None, None], tf.int32)
        return tf.function(fn or self._forward, input_signature=[spec, spec])

    def _prepare(self, texts):
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return ids, [len(x) for x in ids]

    def _pad(self, items) -> tuple[np.ndarray, np.ndarray]:
        """Token id lists -> ids, mask [b, T] int32, right-padded to the longest."""
        width = max(len(x) for x in items)
        ids = np.full((len(items), width), self._pad_id, dtype=np.int32)  # [b, T]
        mask = np.zeros((len(items), width), dtype=np.int32)
        for row, x in enumerate(items):
            ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        return ids, mask

    def _run_batch(self, items, compiled):
        import tensorflow as tf

        ids, mask = self._pad(items)
        fn = self._compiled if compiled else self._forward
        return fn(tf.constant(ids), tf.constant(mask)).numpy()

    def token_lengths(self, texts) -> np.ndarray:
        """int32 [n]: tokens each text gives the model (special tokens included, cut at max_length)."""
        return np.asarray(self._prepare(as_text_list(texts))[1], dtype=np.int32)

    def encode_tokens(self, texts, length: int, *, batch_size: int | None = None):
        """Sentence vectors and last-layer token states from ONE forward pass per length-sorted batch.

        Returns (vectors float32 [n, D], byte-equal to encode(texts, batch_size=...); states float32 [n, L, D],
        zeros beyond each length; lengths int32 [n] = min(tokens, L); ids int32 [n, L], pad id beyond length).
        The states are every token the pooling sees ([CLS]/[SEP] included) up to L; a longer text's vector
        still pools all of its tokens (up to max_length), its states keep the first L.
        """
        import tensorflow as tf

        texts, size = as_text_list(texts), int(length)
        uniq, inverse = dedup(texts)
        n = len(uniq)
        vectors = np.zeros((n, self.dim), np.float32)
        states = np.zeros((n, size, self.dim), np.float32)  # [n, L, D]
        ids = np.full((n, size), self._pad_id, np.int32)  # [n, L]
        items, counts = self._prepare(uniq) if uniq else ([], [])
        lengths = np.minimum(np.asarray(counts, np.int64), size).astype(np.int32)
        if self._compiled_tokens is None:
            self._compiled_tokens = self._compile(self._forward_tokens)
        for idx in batch_order(counts, batch_size or self.batch_size, True):  # the batches encode() runs
            batch_ids, mask = self._pad([items[i] for i in idx])
            pooled, hidden = self._compiled_tokens(tf.constant(batch_ids), tf.constant(mask))
            vectors[idx] = pooled.numpy()
            width = min(size, batch_ids.shape[1])
            states[idx, :width] = hidden.numpy()[:, :width]
            ids[idx, :width] = batch_ids[:, :width]
        states[np.arange(size)[None, :] >= lengths[:, None]] = 0.0  # batch padding is not a token
        if self.normalize:
            vectors = l2_normalize(vectors)
        return vectors[inverse], states[inverse], lengths[inverse], ids[inverse]

    def config(self) -> dict:
        # precision is listed only when it is not the default, so float32 configs (and the fingerprints of the
        # caches built before the option existed) are unchanged
        options = {k: v for k, v in self.options.items() if k != "precision" or v != "float32"}
        return {"spec": self.spec, "family": self.family, "arg": self.source if self.family == "hf" else "",
                "options": options, "dim": self.dim, **self._info}

    def precision_check(self, texts: list[str]) -> dict | None:
        """bfloat16 only: encode `texts` both ways; {"precision", "against", "texts", "min_cosine"}. A UserError
        if the cosine to the float32 vectors falls below MIN_BF16_COSINE. None for float32 (nothing to check)."""
        if self._fast is None or not texts:
            return None
        from embeddings.bert_forward import BertForward

        low = self.encode(texts)
        fast = self._fast
        try:  # the same forward and batches in float32 (equals the transformers model to ~2e-7), run eagerly:
            self._fast = BertForward(self.model, "float32")  # tracing a second graph would cost as much as
            ref = self.encode(texts, compiled=False)  # encoding thousands of captions
        finally:
            self._fast = fast
        cos = np.sum(low * ref, axis=1) / np.maximum(np.linalg.norm(low, axis=1) * np.linalg.norm(ref, axis=1), 1e-12)
        worst = float(cos.min())
        if worst < MIN_BF16_COSINE:
            raise UserError(f"{self.spec}: bfloat16 vectors drift from float32 (min cosine {worst:.6f} < "
                            f"{MIN_BF16_COSINE} on {len(texts)} captions) — use precision=float32")
        return {"precision": "bfloat16", "against": "float32", "texts": len(texts), "min_cosine": worst}


def build_hf(arg: str, options: dict) -> HFEncoder:
    if not arg:
        raise UserError("hf: name the checkpoint, e.g. hf:bert-base-uncased or hf:/path/to/model_dir")
    local = os.path.expanduser(arg)
    if os.path.isdir(local):
        return HFEncoder(os.path.abspath(local), options)
    path_like = arg.startswith((".", "/", "~")) or "\\" in arg or arg.count("/") > 1 or os.path.exists(local)
    if path_like or is_remote(arg):
        raise UserError(
            f"hf: '{arg}' is not an existing model directory — pass an existing directory saved with save_pretrained() "
            "(config.json + weights + tokenizer files), or a hub name such as bert-base-uncased"
        )
    return HFEncoder(arg, options)  # a hub name ("bert-base-uncased", "org/name")
