"""A plain-TensorFlow BERT forward over a transformers TF BERT model's weights, with matmuls in bfloat16.

Used by `hf`/`minilm` with `precision=bfloat16`: on CPUs with AVX512-BF16 or AMX, oneDNN runs bf16 matmuls
at ~2.5x the fp32 rate (measured on the project machine, AMD EPYC with avx512_bf16: 108 vs 43 GFLOP/s for a
[2048, 384] x [384, 1536] matmul). Only the matmul operands are bf16 (weights stored once as bf16 constants,
activations cast at each matmul) with fp32 accumulation; embeddings, residual sums, LayerNorm, softmax, GELU
and pooling stay float32, so the sentence vectors keep cosine >= 0.9999 to the float32 ones (checked on the
real captions when a cache is built: cache/writer.py). Q, K and V are one fused [H, 3H] matmul.

Supports the plain BERT layout (model_type bert, absolute positions, gelu/relu) with TF's oneDNN kernels on;
anything else is refused in one line by `check_supported`.
"""
from __future__ import annotations

import numpy as np

from tools.errors import UserError

_ACTIVATIONS = ("gelu", "relu", "gelu_new")


def onednn_enabled() -> bool:
    """TF's oneDNN kernels are on (TF's default on x86 Linux; TF_ENABLE_ONEDNN_OPTS=0 turns them off)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a TF build without the probe: trust the documented switch
        import os

        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false")


def require_onednn(who: str) -> None:
    """One-line UserError when oneDNN is off. Without it, TF's Eigen bf16 matmul is slower than fp32 (26 vs 31
    GFLOP/s measured) and less exact (MiniLM: min cosine 0.99983 to float32 vs 0.99995 with oneDNN)."""
    if not onednn_enabled():
        raise UserError(f"{who}: precision=bfloat16 needs TensorFlow's oneDNN kernels, which are off "
                        "(TF_ENABLE_ONEDNN_OPTS=0) — unset TF_ENABLE_ONEDNN_OPTS, or use precision=float32")


def check_supported(config, who: str) -> None:
    """One-line UserError unless the fast forward reproduces this model (plain BERT)."""
    act = getattr(config, "hidden_act", None)
    ok = (config.model_type == "bert" and getattr(config, "position_embedding_type", "absolute") == "absolute"
          and act in _ACTIVATIONS)
    if not ok:
        raise UserError(f"{who}: precision=bfloat16 supports BERT checkpoints (model_type bert, absolute positions, "
                        f"gelu/relu), not model_type {config.model_type} ({act}) — use precision=float32")


class BertForward:
    """ids, mask [B, T] int32 -> last hidden states [B, T, H] float32, matmuls in `compute_dtype`."""

    def __init__(self, model, compute_dtype: str = "bfloat16"):
        import tensorflow as tf

        cfg = model.config
        self.heads, self.eps, self.act = int(cfg.num_attention_heads), float(cfg.layer_norm_eps), cfg.hidden_act
        self.dtype = tf.as_dtype(compute_dtype)
        w = {v.name.split("/", 1)[1].rsplit(":", 1)[0]: v.numpy() for v in model.weights}  # "bert/..." -> array
        f32 = lambda a: tf.constant(a, tf.float32)  # noqa: E731
        low = lambda a: tf.constant(a, self.dtype)  # noqa: E731
        e = "bert/embeddings/"
        self.word, self.pos = f32(w[e + "word_embeddings/weight"]), f32(w[e + "position_embeddings/embeddings"])
        self.type0 = f32(w[e + "token_type_embeddings/embeddings"][0])  # token type 0 for every token
        self.ln0 = (f32(w[e + "LayerNorm/gamma"]), f32(w[e + "LayerNorm/beta"]))
        self.layers = []
        for i in range(int(cfg.num_hidden_layers)):
            p = f"bert/encoder/layer_._{i}/"
            a = p + "attention/"
            qkv = [w[f"{a}self/{n}/kernel"] for n in ("query", "key", "value")]
            qkv_b = [w[f"{a}self/{n}/bias"] for n in ("query", "key", "value")]
            self.layers.append({
                "qkv": low(np.concatenate(qkv, axis=1)), "qkv_b": f32(np.concatenate(qkv_b)),  # [H, 3H], [3H]
                "o": low(w[a + "output/dense/kernel"]), "o_b": f32(w[a + "output/dense/bias"]),
                "ln1": (f32(w[a + "output/LayerNorm/gamma"]), f32(w[a + "output/LayerNorm/beta"])),
                "i": low(w[p + "intermediate/dense/kernel"]), "i_b": f32(w[p + "intermediate/dense/bias"]),
                "out": low(w[p + "output/dense/kernel"]), "out_b": f32(w[p + "output/dense/bias"]),
                "ln2": (f32(w[p + "output/LayerNorm/gamma"]), f32(w[p + "output/LayerNorm/beta"])),
            })

    def _dense(self, x, kernel, bias):
        """x [..., In] float32 -> [..., Out] float32; the matmul in the compute dtype, accumulated in fp32."""
        import tensorflow as tf

        y = tf.matmul(tf.cast(x, self.dtype), kernel)
        return tf.cast(y, tf.float32) + bias

    def _norm(self, x, gamma_beta):
        import tensorflow as tf

        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + self.eps) * gamma_beta[0] + gamma_beta[1]

    def _activation(self, x):
        import tensorflow as tf

        if self.act == "relu":
            return tf.nn.relu(x)
        return tf.nn.gelu(x, approximate=self.act == "gelu_new")  # HF "gelu" is the exact erf form

    def __call__(self, ids, mask):
        import tensorflow as tf

        b, t = tf.shape(ids)[0], tf.shape(ids)[1]
        h = self.word.shape[1]
        hd = h // self.heads
        x = tf.gather(self.word, ids) + self.pos[None, :t] + self.type0  # [B, T, H]
        x = tf.reshape(self._norm(x, self.ln0), [b * t, h])  # [B·T, H]
        bias = (1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * -1e9  # [B, 1, 1, T]: padded keys get 0 weight
        scale = 1.0 / float(np.sqrt(hd))
        for lay in self.layers:
            qkv = tf.reshape(self._dense(x, lay["qkv"], lay["qkv_b"]), [b, t, 3, self.heads, hd])
            q, k, v = (tf.cast(qkv[:, :, j], self.dtype) for j in range(3))  # [B, T, nh, hd]
            scores = tf.cast(tf.einsum("bqhd,bkhd->bhqk", q, k), tf.float32) * scale + bias  # [B, nh, T, T]
            probs = tf.cast(tf.nn.softmax(scores, axis=-1), self.dtype)
            ctx = tf.reshape(tf.einsum("bhqk,bkhd->bqhd", probs, v), [b * t, h])  # [B·T, H]
            x = self._norm(x + self._dense(ctx, lay["o"], lay["o_b"]), lay["ln1"])
            inner = self._activation(self._dense(x, lay["i"], lay["i_b"]))  # [B·T, I]
            x = self._norm(x + self._dense(inner, lay["out"], lay["out_b"]), lay["ln2"])
        return tf.reshape(x, [b, t, h])
