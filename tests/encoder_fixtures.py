"""Builders for tiny encoder models the tests save and load like real ones (all offline, seconds each).

- tiny BERT (transformers TF) saved as tf_model.h5, or as PyTorch-layout model.safetensors (names/transposes
  converted here, as a torch `BertModel.save_pretrained` would write them);
- a USE-like `tf.Module` SavedModel: strings [N] -> [N, D] by hashing words into a fixed random table;
- a TF Hub BERT pair: a preprocessor that really uses tensorflow_text ops (BertTokenizer, lower_case -> CaseFoldUTF8)
  and an encoder returning {pooled_output, sequence_output};
- a tiny glove.txt.
"""
from __future__ import annotations

import os

import numpy as np

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "flower", "has", "red", "yellow", "white",
         "pink", "petals", "with", "and", "is", "this", "large", "small", "green", "leaves", "##s", ".", ","]
USE_BUCKETS, USE_DIM = 64, 8  # hashing table [64, 8]
BERT_SEQ, BERT_HIDDEN = 16, 8  # tiny TF Hub BERT: fixed preprocess length 16, hidden 8


def write_vocab(path: str) -> str:
    with open(path, "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    return path


def _tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64, type_vocab_size=2)


def _save_tokenizer(model_dir: str) -> None:
    from transformers import BertTokenizerFast

    vocab = write_vocab(os.path.join(model_dir, "vocab.txt"))
    BertTokenizerFast(vocab_file=vocab, do_lower_case=True).save_pretrained(model_dir)


def save_tiny_bert_tf(model_dir: str, seed: int = 0):
    """TFBertModel with random weights saved with save_pretrained (tf_model.h5) + tokenizer; returns the model."""
    import tensorflow as tf
    from transformers import TFBertModel

    os.makedirs(model_dir, exist_ok=True)
    tf.random.set_seed(seed)
    model = TFBertModel(_tiny_bert_config())
    model(model.dummy_inputs)
    model.save_pretrained(model_dir)  # tf_model.h5 + config.json
    _save_tokenizer(model_dir)
    return model


def save_tiny_bert_pt_safetensors(model_dir: str, model) -> dict:
    """Write `model`'s weights as a PyTorch-layout model.safetensors (torch BertModel names, [out, in] kernels).

    TF `save_pretrained(safe_serialization=True)` writes TF names (metadata format "tf"), so convert here with
    transformers' own TF->PT name mapping.
    """
    from safetensors.numpy import save_file
    from transformers.modeling_tf_pytorch_utils import TransposeType, convert_tf_weight_name_to_pt_weight_name

    os.makedirs(model_dir, exist_ok=True)
    state = {}
    for w in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(w.name, tf_weight_shape=w.shape)
        name = name.removeprefix("bert.")  # BertModel keys have no "bert." prefix
        value = w.numpy()
        state[name] = np.ascontiguousarray(value.T if transpose == TransposeType.SIMPLE else value)
    save_file(state, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(model_dir)
    _save_tokenizer(model_dir)
    return state


def save_tiny_use(path: str, seed: int = 0) -> np.ndarray:
    """USE-like SavedModel: lowercase, split on spaces, hash words into [USE_BUCKETS, USE_DIM], mean. Returns table."""
    import tensorflow as tf

    table = np.random.default_rng(seed).normal(size=(USE_BUCKETS, USE_DIM)).astype(np.float32)

    class TinyUSE(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(table)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts):  # [N] -> [N, D]
            words = tf.strings.split(tf.strings.lower(texts))  # ragged [N, (w)]
            ids = tf.strings.to_hash_bucket_fast(words, USE_BUCKETS)
            vecs = tf.gather(self.table, ids)  # ragged [N, (w), D]
            count = tf.cast(tf.maximum(words.row_lengths(), 1), tf.float32)[:, None]
            return tf.reduce_sum(vecs, axis=1) / count

    tf.saved_model.save(TinyUSE(), path)
    return table


def use_expected(texts: list[str], table: np.ndarray) -> np.ndarray:
    """What the tiny USE must output, computed in numpy (hash ids from the same TF hash function)."""
    import tensorflow as tf

    out = np.zeros((len(texts), table.shape[1]), np.float32)
    for i, t in enumerate(texts):
        words = t.lower().split()
        if words:
            out[i] = table[tf.strings.to_hash_bucket_fast(words, USE_BUCKETS).numpy()].mean(axis=0)
    return out


def save_tiny_bert_preprocess(path: str) -> None:
    """TF Hub BERT-API preprocessor using tensorflow_text.BertTokenizer (lower_case -> CaseFoldUTF8 op)."""
    import tensorflow as tf
    import tensorflow_text as text

    class Preprocess(tf.Module):
        def __init__(self):
            super().__init__()
            init = tf.lookup.KeyValueTensorInitializer(VOCAB, tf.range(len(VOCAB), dtype=tf.int64))
            self.table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)
            self.tokenizer = text.BertTokenizer(self.table, lower_case=True, token_out_type=tf.int64)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts):
            ids = self.tokenizer.tokenize(texts).merge_dims(-2, -1)[:, : BERT_SEQ - 2]  # ragged [N, (t)]
            n = ids.nrows()
            cls = tf.fill([n, 1], tf.constant(VOCAB.index("[CLS]"), tf.int64))
            sep = tf.fill([n, 1], tf.constant(VOCAB.index("[SEP]"), tf.int64))
            ids = tf.concat([cls, ids, sep], axis=1)
            word_ids = tf.cast(ids.to_tensor(0, shape=[None, BERT_SEQ]), tf.int32)  # [N, S]
            mask = tf.cast(tf.ones_like(ids).to_tensor(0, shape=[None, BERT_SEQ]), tf.int32)
            return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": tf.zeros_like(word_ids)}

    tf.saved_model.save(Preprocess(), path)


def save_tiny_bert_encoder(path: str, seed: int = 0, fixed_length: bool = False) -> None:
    """Encoder: sequence_output = tanh((word_emb + pos_emb) @ W), pooled_output = tanh(seq[:, 0] @ Wp).

    fixed_length=True accepts only [None, BERT_SEQ] inputs (like some exported encoders), to test the untrimmed path.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    mats = [rng.normal(size=s).astype(np.float32) for s in
            [(len(VOCAB) + 1, BERT_HIDDEN), (BERT_SEQ, BERT_HIDDEN), (BERT_HIDDEN, BERT_HIDDEN), (BERT_HIDDEN, BERT_HIDDEN)]]
    width = BERT_SEQ if fixed_length else None
    spec = {k: tf.TensorSpec([None, width], tf.int32) for k in ("input_word_ids", "input_mask", "input_type_ids")}

    class Encoder(tf.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.pos, self.w, self.wp = (tf.Variable(m) for m in mats)

        @tf.function(input_signature=[spec])
        def __call__(self, inputs):
            ids = inputs["input_word_ids"]
            if fixed_length:  # fails at run time on trimmed batches, as a fixed-shape export would
                ids = tf.ensure_shape(ids, [None, BERT_SEQ])
            h = tf.gather(self.emb, ids) + self.pos[None, : tf.shape(ids)[1]]  # [N, T, H]
            seq = tf.tanh(tf.einsum("nth,hk->ntk", h, self.w))
            pooled = tf.tanh(seq[:, 0] @ self.wp)  # [N, H]
            return {"pooled_output": pooled, "sequence_output": seq, "default": pooled}

    tf.saved_model.save(Encoder(), path)


def write_tiny_glove(path: str) -> dict[str, np.ndarray]:
    words = {"a": [1, 0, 0], "red": [0, 2, 0], "flower": [0, 0, 3], "petals": [1, 1, 1], "with": [-1, 0, 1]}
    with open(path, "w") as f:
        for w, v in words.items():
            f.write(w + " " + " ".join(f"{x:.1f}" for x in v) + "\n")
    return {w: np.asarray(v, np.float32) for w, v in words.items()}
