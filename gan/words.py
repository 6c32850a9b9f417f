"""`--arch dfgan-words`: dfgan reading the caption's words as well as its sentence vector (issue 30).

A sentence vector barely tells which colour belongs to which part ("yellow petals and a white center" vs "white
petals and a yellow center": cosine 0.996 for MiniLM), so this architecture also reads each caption's last-layer
token states from a cache built with `precompute_embeddings.py --tokens` (words [B, L, E] float16, lengths [B]):

    G: dfgan's generator (sentence -> CA -> fused blocks) with word attention after the 16 px block, after AttnGAN
       (Xu et al. 2018): every 16×16 position asks which words describe it,
           q = W_q·h_xy, k_l = W_k·LN(word_l), v_l = W_v·LN(word_l)          (key size K_G, value size = channels)
           h_xy <- h_xy + W_o·Σ_l softmax_l(⟨q, k_l⟩/√K_G) v_l               (padding tokens never attended)
       W_o starts at zero, so the step-0 generator is dfgan's.
    D: dfgan's discriminator plus a word–region term on its 8×8 features (each word against the image's 64
       regions, after XMC-GAN / AttnGAN's DAMSM, Zhang et al. 2021, Xu et al. 2018):
           e_lr = ⟨u_l, r_r⟩,  u_l = W_u·LN(word_l), r_r = W_r·f8_r                      (K_D each)
           s(image, caption) = mean over real words l of Σ_r softmax_r(e_lr)·e_lr     (each word's soft best region)
       added to the one-way logit (so real/wrong/fake pairs are judged by their words too) and to the batch
       contrastive term's pair scores (dfgan's projection scores + s for every image i, caption j of the batch),
       so D learns which words go where and G is pushed toward them.
    Word context (config word_context = c, off at 0): G's keys k_l and D's u_l read word l's c neighbours on either
    side as well, W·LN(word_l) -> Σ_{|o| <= c} W_o·LN(word_{l+o}) (ContextDense: one 1-D convolution over the
    tokens), so "yellow" next to "petals" has a different key from "yellow" next to "center". Without it G and D bind
    a colour to a part by word order (the first colour named is the petals'). G's values stay the word's own.

Conditioning augmentation stays on the sentence vector. Words carry no gradient into the MA-GP penalty (it keeps
dfgan's image + sentence inputs).

Conditions of new text (sampling: generate.py, the web page, evaluation) are packed rows, so every path that
slices and concatenates [N, X] condition arrays works unchanged:
    row = [sentence vector (D) | token states flattened (L·E) | length (1)]       float32 [D + L·E + 1]
gan.inference.sample_images unpacks them for a generator with word inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from gan import dfgan
from tools.errors import UserError

G_KEY_DIM = 32  # K_G: key size of G's word attention
D_KEY_DIM = 32  # K_D: size of D's word and region embeddings
G_ATTENTION_BLOCKS = (1,)  # after which up-blocks G attends to words: 1 = the 16 px block
NEG = -1e9  # logit of a padding token (float32)
MAX_WORD_CONTEXT = 4  # most neighbours on either side a word's features may include (config word_context)
# whether the batch contrastive term also scores every (image, caption) pair by words: B²·L·R word-region logits
# per pass (64·64·32·64 = 8.4 M at the cpu preset). Measured side by side (bf16 steps, batch 64, L 32, Zen 4, a busy
# machine, median of 10 rotating rounds): dfgan 1.00, dfgan-words 1.14, with words in the contrast 1.60 — over the
# issue's 1.2× budget, so the word-region term judges the matched, mismatched (half of them hard negatives: near
# captions) and fake pairs only
WORDS_IN_CONTRAST = False


# ------------------------------------------------------------------------------------------- pure functions
def token_mask(lengths, length: int):
    """lengths [B] int -> [B, L] bool, True for real tokens (positions < length)."""
    return ops.arange(length)[None, :] < ops.cast(lengths, "int32")[:, None]


def masked_mean(x, mask):
    """x [..., L], mask [..., L] bool -> [...]: mean over the True positions (0 where none)."""
    m = ops.cast(mask, x.dtype)
    return ops.sum(x * m, axis=-1) / ops.maximum(ops.sum(m, axis=-1), 1.0)


def soft_best(e):
    """e [..., R] -> [...]: Σ_r softmax_r(e)·e, a smooth maximum over regions (float32)."""
    e = ops.cast(e, "float32")
    return ops.sum(ops.softmax(e, axis=-1) * e, axis=-1)


def word_region_scores(words, lengths, regions):
    """All pairs: words [Bw, L, K], lengths [Bw], regions [Bi, R, K] -> S [Bi, Bw] float32,
    S[i, j] = mean over caption j's real words l of soft_best_r(⟨u_jl, r_ir⟩)."""
    e = ops.einsum("jlk,irk->ijlr", ops.cast(words, "float32"), ops.cast(regions, "float32"))  # [Bi, Bw, L, R]
    mask = token_mask(lengths, words.shape[1])[None, :, :]  # [1, Bw, L]
    return masked_mean(soft_best(e), mask)


def matched_word_region_scores(words, lengths, regions):
    """Each image with its own caption: words [B, L, K], lengths [B], regions [B, R, K] -> [B] float32
    (the diagonal of word_region_scores, at 1/B of its cost)."""
    e = ops.einsum("blk,brk->blr", ops.cast(words, "float32"), ops.cast(regions, "float32"))  # [B, L, R]
    return masked_mean(soft_best(e), token_mask(lengths, words.shape[1]))


@keras.saving.register_keras_serializable(package="gan")
class ContextDense(layers.Dense):
    """[x [B, L, E], lengths [B]] -> [B, L, units]: a bias-free Dense over each token's state and those of its `width`
    neighbours on either side, out_i = Σ_{o=-width..width} W_o·x_{i+o} (padding and positions outside the caption read
    as zeros): one 1-D convolution whose taps are the kernel's [E, (2·width + 1)·units] column blocks. A colour word
    then carries the noun beside it ("yellow petals", "white center") as features of its own, not only through the
    encoder's attention, where its position competes with it. width 0 is a plain Dense with the same kernel, so runs
    made without word context load unchanged."""

    def __init__(self, units: int, width: int = 0, **kwargs):
        kwargs.pop("use_bias", None)
        super().__init__(units * (2 * width + 1), use_bias=False, **kwargs)
        self.out_units, self.width = units, width

    def call(self, inputs, lengths=None):
        if not self.width:
            return super().call(inputs)
        x = inputs * ops.cast(token_mask(lengths, inputs.shape[1]), inputs.dtype)[:, :, None]  # padding reads as 0
        e, n = self.kernel.shape[0], 2 * self.width + 1
        kernel = ops.transpose(ops.reshape(ops.cast(self.kernel, x.dtype), (e, n, self.out_units)), (1, 0, 2))
        return ops.conv(x, kernel, padding="same")  # [n, E, units]: tap j reads token i + j - width

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.out_units)

    def get_config(self):
        return {**super().get_config(), "units": self.out_units, "width": self.width}


def attend(q, k, v, mask):
    """q [B, Q, K], k [B, L, K], v [B, L, C], mask [B, L] bool -> [B, Q, C]: softmax over real tokens only."""
    logits = ops.einsum("bqk,blk->bql", ops.cast(q, "float32"), ops.cast(k, "float32")) / float(q.shape[-1]) ** 0.5
    logits = ops.where(mask[:, None, :], logits, NEG)  # padding never attended
    weights = ops.softmax(logits, axis=-1)  # [B, Q, L]
    return ops.einsum("bql,blc->bqc", weights, ops.cast(v, "float32"))


# ------------------------------------------------------------------------------------------------- layers
@keras.saving.register_keras_serializable(package="gan")
class WordAttention(layers.Layer):
    """[h [B, H, W, C], words [B, L, E], lengths [B]] -> h + W_o·(attention of every position over the words).
    context: neighbours on either side each word's key also reads (ContextDense). The keys say which word a position
    reads (a 16×16 position in the petals asks for the colour whose key says "petals"); the value it gets is the
    word's own state, since values from 2·context + 1 tokens would multiply G's widest word projection (E × channels)."""

    def __init__(self, channels: int, key_dim: int = G_KEY_DIM, context: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.key_dim, self.context = channels, key_dim, context
        self.norm = layers.LayerNormalization(name="norm")
        self.q = layers.Dense(key_dim, use_bias=False, name="q")
        self.k = ContextDense(key_dim, context, name="k")
        self.v = layers.Dense(channels, use_bias=False, name="v")  # the word alone
        self.o = layers.Dense(channels, kernel_initializer="zeros", name="o")  # step 0: h unchanged

    def build(self, input_shape):
        h_shape, w_shape, _ = input_shape
        self.norm.build(w_shape)
        self.q.build(h_shape)
        self.k.build(w_shape)
        self.v.build(w_shape)
        self.o.build((None, None, self.channels))

    def call(self, inputs):
        h, words, lengths = inputs
        b, hh, ww = ops.shape(h)[0], h.shape[1], h.shape[2]
        w = self.norm(ops.cast(words, self.compute_dtype))
        q = ops.reshape(self.q(h), (b, hh * ww, self.key_dim))  # [B, HW, K]
        ctx = attend(q, self.k(w, lengths), self.v(w), token_mask(lengths, words.shape[1]))  # [B, HW, C] float32
        out = self.o(ops.cast(ctx, self.compute_dtype))
        return h + ops.reshape(out, (b, hh, ww, self.channels))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "key_dim": self.key_dim, "context": self.context}


@keras.saving.register_keras_serializable(package="gan")
class WordRegionTerm(layers.Layer):
    """D's word–region term: [f8 [B, 8, 8, C], words [B, L, E], lengths [B]] -> [B] float32 (each image with its
    own caption); pair_scores gives every (image, caption) pair of a batch. context: as WordAttention's."""

    def __init__(self, key_dim: int = D_KEY_DIM, context: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.key_dim, self.context = key_dim, context
        self.norm = layers.LayerNormalization(name="norm")
        init = lambda: keras.initializers.RandomNormal(0.0, 0.02)  # noqa: E731  D's DCGAN init (gan/dfgan.py)
        self.u = ContextDense(key_dim, context, kernel_initializer=init(), name="u")
        self.r = layers.Dense(key_dim, use_bias=False, kernel_initializer=init(), name="r")

    def build(self, input_shape):
        f_shape, w_shape, _ = input_shape
        self.norm.build(w_shape)
        self.u.build(w_shape)
        self.r.build(f_shape)

    def embed(self, f8, words, lengths):
        """-> regions [B, R, K], words [B, L, K]."""
        r = self.r(f8)
        regions = ops.reshape(r, (ops.shape(r)[0], r.shape[1] * r.shape[2], self.key_dim))
        w = self.norm(ops.cast(words, self.compute_dtype))  # cast first: float16 arithmetic is emulated on a CPU
        return regions, self.u(w, lengths)

    def call(self, inputs):
        f8, words, lengths = inputs
        regions, u = self.embed(f8, words, lengths)
        return matched_word_region_scores(u, lengths, regions)

    def pair_scores(self, f8, words, lengths):
        """f8 [Bi, 8, 8, C], words [Bw, L, E], lengths [Bw] -> [Bi, Bw] float32."""
        regions, u = self.embed(f8, words, lengths)
        return word_region_scores(u, lengths, regions)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0],)

    def get_config(self):
        return {**super().get_config(), "key_dim": self.key_dim, "context": self.context}


# ------------------------------------------------------------------------------------------------- models
def word_inputs(length: int, dim: int):
    return keras.Input((length, dim), name="words"), keras.Input((), dtype="int32", name="lengths")


def build_generator(cfg, length: int, word_dim: int) -> keras.Model:
    """dfgan's G with word attention after the blocks in G_ATTENTION_BLOCKS:
    [text [B, D], z, eps, words [B, L, E], lengths [B]] -> [image, μ, log σ²]."""
    words, lengths = word_inputs(length, word_dim)

    def after_block(i, h):
        if i not in G_ATTENTION_BLOCKS:
            return h
        return WordAttention(h.shape[-1], context=cfg.word_context, name=f"words{i}")([h, words, lengths])

    return dfgan.build_generator(cfg.cache.dim, cfg.z_dim, cfg.c_dim, cfg.ngf, cfg.upsample, image_size=cfg.image_size,
                                 extra_inputs=(words, lengths), after_block=after_block)


def build_discriminator(cfg, length: int, word_dim: int):
    """dfgan's (encoder, head) with the word-region term in the head: [f8, f4, text, words, lengths] -> [B]."""
    words, lengths = word_inputs(length, word_dim)

    def extra_terms(f8, f4):
        return [WordRegionTerm(context=cfg.word_context, name="word_region")([f8, words, lengths])]

    return dfgan.build_discriminator(cfg.cache.dim, cfg.ndf, proj4=cfg.proj4, image_size=cfg.image_size,
                                     extra_inputs=(words, lengths), extra_terms=extra_terms)


def pair_scores(head: keras.Model, f8, f4, text, words, lengths):
    """The batch contrastive term's [Bi, Bw] float32 scores: dfgan's projection pair scores, plus the word-region
    ones when WORDS_IN_CONTRAST (gan/dfgan.py pair_scores)."""
    scores = dfgan.pair_scores(head, f8, f4, text)
    if WORDS_IN_CONTRAST:
        scores += head.get_layer("word_region").pair_scores(f8, words, lengths)
    return scores


# ------------------------------------------------------------------------------------------ conditions
def pack(vectors: np.ndarray, states: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """[N, D], [N, L, E], [N] -> packed condition rows float32 [N, D + L·E + 1] (the module docstring's layout)."""
    n = len(vectors)
    return np.concatenate([np.asarray(vectors, np.float32), np.asarray(states, np.float32).reshape(n, -1),
                           np.asarray(lengths, np.float32).reshape(n, 1)], axis=1)


def unpack(cond, dim: int, length: int, word_dim: int):
    """Packed rows [B, D + L·E + 1] (tensor) -> (text [B, D], words [B, L, E], lengths [B] int32)."""
    text = cond[:, :dim]
    words = ops.reshape(cond[:, dim : dim + length * word_dim], (-1, length, word_dim))
    return text, words, ops.cast(ops.round(cond[:, -1]), "int32")


@dataclass
class WordConditions:
    """A run's training conditions: sentence vectors in memory, token states read from the cache by row.
    Indexing gives packed rows (what sampling takes)."""

    vectors: np.ndarray  # [N, D] float16
    tokens: object  # cache.tokens.TokenStates: .rows(caption_rows) -> (states float16 [n, L, E], lengths [n])

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        return pack(self.vectors[rows], *self.tokens.rows(rows))

    def __len__(self) -> int:
        return len(self.vectors)


def open_tokens(cache_path: str):
    """The token states of a cache built with --tokens (kept open for the run), else a one-line UserError."""
    from cache.reader import EmbeddingCache

    with EmbeddingCache.open(cache_path) as cache:
        tokens = cache.tokens()  # its own file handle: stays open after the cache closes
    if tokens is None:
        raise UserError(f"{cache_path}: built without token states, which --arch dfgan-words reads; rebuild it with "
                        f"precompute_embeddings.py --tokens (same data and encoder)")
    return tokens


class DfGanWords(dfgan.DfGan):
    name = "dfgan-words"
    words = True
    run_suffix = "-words"
    # word context 1 binds each colour to its part on its own (binding 0.490 for the sentence arm, 0.500 for this arch
    # without it; bench/results/binding-2026-12-06-keys-context.md); runs made before it lack the key and load as 0
    preset = {"word_context": 1}
    own_options = {**dfgan.DfGan.own_options,  # dfgan's options, with the same meaning, and its own:
                   "word_context": (0, "word context (the neighbours each word's key reads)")}

    def build(self, cfg, vocab_size: int = 0, generator_only: bool = False):
        length, word_dim = cfg.cache.token_length, cfg.cache.dim
        if not length:
            raise UserError(f"{cfg.cache.path}: no token states recorded for this run; --arch dfgan-words needs a "
                            f"cache built with precompute_embeddings.py --tokens")
        g = build_generator(cfg, length, word_dim)
        if generator_only:
            return g
        return (g, *build_discriminator(cfg, length, word_dim), None)

    def check(self, cfg) -> None:
        if not 0 <= cfg.word_context <= MAX_WORD_CONTEXT:
            raise UserError(f"--set word_context={cfg.word_context}: the neighbours on either side each word also "
                            f"reads; use 0 to {MAX_WORD_CONTEXT}")
        if cfg.caption_mean_k != 1:
            raise UserError(f"--caption-mean-k {cfg.caption_mean_k}: --arch dfgan-words reads one caption's words; "
                            f"use --caption-mean-k 1")

    def conditions(self, cfg, data, run_dir: Path, resuming: bool):
        return WordConditions(data.vectors, open_tokens(cfg.cache.path)), []

    def pair_scores(self, head, features, text, words):
        return pair_scores(head, *features, text, *words)


ARCH = DfGanWords()
