"""`--arch ta80`: the seed course notebook's baseline, kept as a reference to compare against.

It takes RAW captions, not cached vectors: a word vocabulary is built from the cache's caption texts
(lowercase, whitespace split, surrounding punctuation stripped, at most MAX_TOKENS words, pad 0, unknown 1),
and a GRU text encoder over the word ids is trained INSIDE the loop, by the discriminator's loss (it is part of
the conditional discriminator; the generator sees its output as a constant). Generator and discriminator are
MLPs on the flattened 64×64×3 image:

    text encoder: ids [B, 20] -> embedding 256 -> GRU 128                 => [B, 128]
    G: text [B, 128] -> dense 128, lrelu; [z, ·] -> dense 64·64·3 -> tanh  => [B, 64, 64, 3]
    D encoder: image -> flatten -> dense 128, lrelu                        => [B, 128]
    D head: [features, text] -> text dense 128, lrelu; concat -> dense 1  => logit [B]
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Sequence

import keras
import numpy as np
from keras import layers

from gan.archs import Architecture
from tools.errors import UserError

MAX_TOKENS = 20
PAD, UNK = 0, 1
_PUNCT = ".,;:!?\"'()[]{}"


def tokenize(text: str) -> list[str]:
    """Lowercase whitespace split; punctuation stripped from each word's ends; empty words dropped."""
    words = (w.strip(_PUNCT) for w in text.lower().split())
    return [w for w in words if w]


def build_vocab(texts: Sequence[str]) -> list[str]:
    """Words by descending frequency (ties alphabetical); word i of the list gets id i + 2."""
    counts = Counter(w for t in texts for w in tokenize(t))
    return sorted(counts, key=lambda w: (-counts[w], w))


def encode_texts(texts: Sequence[str], vocab: Sequence[str], max_tokens: int = MAX_TOKENS) -> np.ndarray:
    """int32 [N, max_tokens] word ids, right-padded with 0, unknown words 1, longer captions cut."""
    index = {w: i + 2 for i, w in enumerate(vocab)}
    out = np.zeros((len(texts), max_tokens), dtype=np.int32)
    for row, text in enumerate(texts):
        ids = [index.get(w, UNK) for w in tokenize(text)][:max_tokens]
        out[row, : len(ids)] = ids
    return out


def build_text_encoder(vocab_size: int, embed_dim: int = 256, rnn_dim: int = 128,
                       max_tokens: int = MAX_TOKENS) -> keras.Model:
    """ids int32 [B, T] -> [B, rnn_dim] float32 (the GRU's last state over the unpadded words)."""
    ids = keras.Input((max_tokens,), dtype="int32", name="ids")
    h = layers.Embedding(vocab_size + 2, embed_dim, mask_zero=True, name="embed")(ids)  # [B, T, E]
    h = layers.GRU(rnn_dim, name="gru")(h)  # [B, R]
    out = layers.Activation("linear", dtype="float32", name="text")(h)
    return keras.Model(ids, out, name="ta80_text_encoder")


def build_generator(text_dim: int = 128, z_dim: int = 100, dense_dim: int = 128) -> keras.Model:
    """Inputs [text [B, T], z [B, Z]] -> image [B, 64, 64, 3] float32 in [-1, 1]."""
    text = keras.Input((text_dim,), name="text")
    z = keras.Input((z_dim,), name="z")
    t = layers.LeakyReLU(0.2)(layers.Dense(dense_dim, name="text_dense")(text))  # [B, 128]
    h = layers.Concatenate()([z, t])
    h = layers.Dense(64 * 64 * 3, name="to_pixels")(h)  # [B, 12288]
    h = layers.Reshape((64, 64, 3))(h)
    image = layers.Activation("tanh", dtype="float32", name="image")(h)
    return keras.Model([text, z], image, name="ta80_generator")


def build_discriminator(text_dim: int = 128, dense_dim: int = 128):
    """Returns (encoder image -> [B, 128], head [features, text [B, T]] -> logit [B] float32)."""
    image = keras.Input((64, 64, 3), name="image")
    f = layers.LeakyReLU(0.2)(layers.Dense(dense_dim, name="img_dense")(layers.Flatten()(image)))
    encoder = keras.Model(image, f, name="ta80_d_encoder")

    feat = keras.Input((dense_dim,), name="features")
    text = keras.Input((text_dim,), name="text")
    t = layers.LeakyReLU(0.2)(layers.Dense(dense_dim, name="text_dense")(text))
    h = layers.Concatenate()([t, feat])
    logit = layers.Dense(1, dtype="float32", name="logit")(h)
    logit = layers.Reshape((), dtype="float32")(logit)  # [B]
    head = keras.Model([feat, text], logit, name="ta80_d_head")
    return encoder, head


class Ta80(Architecture):
    name = "ta80"
    reads, has_ca, run_suffix = "texts", False, "-ta80"
    # the course notebook's recipe (StackGAN's optimiser settings; the CA and dfgan options do not apply)
    preset = dict(loss="bce", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, ema=False, diffaug="",
                  hard_negatives=0.0, kl_weight=2.0, proj4="pooled", contrastive=0.0, ca_noise=0.0)

    def build(self, cfg, vocab_size: int = 0, generator_only: bool = False):
        text = build_text_encoder(vocab_size, cfg.ta80_embed_dim, cfg.ta80_rnn_dim)
        g = build_generator(cfg.ta80_rnn_dim, cfg.z_dim, cfg.ta80_dense_dim)
        if generator_only:
            return g
        return (g, *build_discriminator(cfg.ta80_rnn_dim, cfg.ta80_dense_dim), text)

    def check(self, cfg) -> None:
        if cfg.ema or cfg.hard_negatives:
            raise UserError("--arch ta80 trains its own text encoder on raw captions: EMA and hard negatives are for "
                            "the cached-vector archs (dfgan, stackgan); drop --set ema / hard_negatives")
        if cfg.caption_mean_k != 1:
            raise UserError(f"--caption-mean-k {cfg.caption_mean_k}: --arch ta80 reads one raw caption; use 1")

    def conditions(self, cfg, data, run_dir, resuming: bool):
        """[N, T] int32 word ids and the vocabulary, written to run_dir/vocab.json (read back when resuming)."""
        path = run_dir / "vocab.json"
        if resuming and path.exists():
            vocab = json.loads(path.read_text(encoding="utf-8"))
        else:
            vocab = build_vocab(data.texts)
            path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        return encode_texts(data.texts, vocab), vocab

    def sampling_vocab(self, run_dir):
        return json.loads((run_dir / "vocab.json").read_text(encoding="utf-8"))

    def encode(self, texts, vocab):
        return encode_texts(list(texts), vocab)


ARCH = Ta80()
