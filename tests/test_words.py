"""--arch dfgan-words (gan/words.py): the pure word-region and attention functions (golden values), padding never
attended, packed conditions, and a train step that moves G's and D's word layers."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from gan import words as W


# ------------------------------------------------------------------------------------------ pure functions
def test_token_mask_marks_real_tokens_only():
    got = W.token_mask(tf.constant([2, 0, 3]), 3).numpy()
    assert got.tolist() == [[True, True, False], [False, False, False], [True, True, True]]


def test_soft_best_is_the_softmax_weighted_mean_of_the_logits():
    # softmax([0, ln 3]) = [1/4, 3/4]  ->  3/4 · ln 3
    assert float(W.soft_best(tf.constant([0.0, math.log(3.0)]))) == pytest.approx(0.75 * math.log(3.0), rel=1e-6)


def test_matched_word_region_scores_golden_and_padding_ignored():
    words = tf.constant([[[1.0], [2.0]]])  # [B=1, L=2, K=1]
    regions = tf.constant([[[0.0], [1.0]]])  # [B=1, R=2, K=1]
    s1 = 1.0 / (1.0 + math.exp(-1.0))  # word 1: e = [0, 1] -> softmax·e = σ(1)
    s2 = 2.0 / (1.0 + math.exp(-2.0))  # word 2: e = [0, 2] -> 2σ(2)
    assert float(W.matched_word_region_scores(words, tf.constant([1]), regions)[0]) == pytest.approx(s1, rel=1e-6)
    assert float(W.matched_word_region_scores(words, tf.constant([2]), regions)[0]) == pytest.approx(
        (s1 + s2) / 2, rel=1e-6)


def test_pair_scores_diagonal_is_the_matched_score_and_padding_never_counts():
    rng = np.random.default_rng(0)
    words = rng.standard_normal((3, 5, 4)).astype(np.float32)
    regions = rng.standard_normal((3, 6, 4)).astype(np.float32)
    lengths = np.array([5, 2, 3], np.int32)
    all_pairs = W.word_region_scores(words, lengths, regions).numpy()  # [Bi, Bw]
    matched = W.matched_word_region_scores(words, lengths, regions).numpy()
    np.testing.assert_allclose(np.diag(all_pairs), matched, rtol=1e-5)
    noisy = words.copy()
    noisy[1, 2:] = 1e3  # padding of caption 1
    np.testing.assert_allclose(W.word_region_scores(noisy, lengths, regions).numpy(), all_pairs, rtol=1e-6)


def test_attention_never_attends_padding_and_one_token_returns_its_value():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 7, 4)).astype(np.float32)
    k = rng.standard_normal((2, 3, 4)).astype(np.float32)
    v = rng.standard_normal((2, 3, 5)).astype(np.float32)
    mask = W.token_mask(tf.constant([1, 2]), 3)
    out = W.attend(q, k, v, mask).numpy()
    np.testing.assert_allclose(out[0], np.repeat(v[0, :1], 7, axis=0), rtol=1e-6)  # one real token: its value
    k2, v2 = k.copy(), v.copy()
    k2[:, 2], v2[:, 2] = 50.0, -50.0  # padding of both rows (and token 1 of row 0)
    k2[0, 1], v2[0, 1] = 50.0, -50.0
    np.testing.assert_allclose(W.attend(q, k2, v2, mask).numpy(), out, rtol=1e-6)


def test_context_dense_golden_with_padding_and_edges_read_as_zeros():
    layer = W.ContextDense(1, width=1)
    words = tf.constant([[[1.0], [2.0], [3.0], [9.0]]])  # [B=1, L=4, E=1]; token 3 is padding
    layer.build(words.shape)
    layer.kernel.assign([[1.0, 10.0, 100.0]])  # taps: left neighbour, the word, right neighbour
    got = layer(words, tf.constant([3])).numpy()[0, :3, 0]
    assert got.tolist() == [0 + 10 + 200, 1 + 20 + 300, 2 + 30 + 0]  # the 9 is never read


@pytest.mark.parametrize("width", [1, 2])
def test_context_dense_is_a_dense_on_the_concatenated_neighbours(width):
    rng = np.random.default_rng(5)
    x, lengths = rng.standard_normal((2, 6, 4)).astype(np.float32), np.array([6, 3])
    layer = W.ContextDense(3, width)
    got = layer(tf.constant(x), tf.constant(lengths)).numpy()
    taps = layer.kernel.numpy().reshape(4, 2 * width + 1, 3)  # [E, tap, units]
    masked = np.pad(x * (np.arange(6)[None, :] < lengths[:, None])[:, :, None], [(0, 0), (width, width), (0, 0)])
    want = sum(masked[:, j: j + 6] @ taps[:, j] for j in range(2 * width + 1))  # token i + j - width through tap j
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(got[b, :n], want[b, :n], rtol=1e-5, atol=1e-5)
    plain = W.ContextDense(3, 0)
    assert plain(tf.constant(x)).shape == (2, 6, 3) and plain.kernel.shape == (4, 3)  # width 0: a Dense's kernel


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(2)
    vec, states, lengths = rng.standard_normal((3, 4)), rng.standard_normal((3, 5, 6)), np.array([5, 1, 3])
    packed = W.pack(vec, states, lengths)
    assert packed.shape == (3, 4 + 5 * 6 + 1) and packed.dtype == np.float32
    text, words, lens = W.unpack(tf.constant(packed), 4, 5, 6)
    np.testing.assert_allclose(text.numpy(), vec, rtol=1e-6)
    np.testing.assert_allclose(words.numpy(), states, rtol=1e-6)
    assert lens.numpy().tolist() == [5, 1, 3]


# ------------------------------------------------------------------------------------------------ models
def _cfg(**options):
    from gan.config import CacheInfo, resolve

    cfg = resolve(dict(embeddings="tiny.h5", arch="dfgan-words", ngf=8, ndf=8, batch_size=4, z_dim=8, c_dim=8,
                       mixed_precision="off", **options), False)
    return replace(cfg, cache=CacheInfo(dim=16, token_length=6))


def _batch(cfg, seed=0):
    from bench.step_rows import random_batch

    tf.keras.utils.set_random_seed(seed)
    return random_batch(cfg, 0)


@pytest.mark.parametrize("context", [0, 1])
def test_word_attention_starts_as_the_identity_and_ignores_padding(context):
    layer = W.WordAttention(3, key_dim=4, context=context)
    rng = np.random.default_rng(3)
    h = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    words = rng.standard_normal((2, 5, 6)).astype(np.float32)
    lengths = np.array([2, 5], np.int32)
    np.testing.assert_allclose(layer([h, words, lengths]).numpy(), h, rtol=1e-6)  # W_o = 0 at step 0
    layer.o.kernel.assign(rng.standard_normal(layer.o.kernel.shape).astype(np.float32))
    out = layer([h, words, lengths]).numpy()
    assert np.abs(out - h).max() > 1e-3
    noisy = words.copy()
    noisy[0, 2:] = 100.0  # padding of row 0
    np.testing.assert_allclose(layer([h, noisy, lengths]).numpy(), out, rtol=1e-5, atol=1e-6)


def test_word_context_is_on_for_new_runs_and_off_for_runs_made_before_it(tmp_path):
    import json

    from gan.run_dir import load_config

    cfg = _cfg()
    assert cfg.word_context == 1 and _cfg(word_context=0).word_context == 0  # the arch's preset, and the user's
    older = cfg.to_dict()
    del older["word_context"]  # config.json of a dfgan-words run trained before the option existed
    (tmp_path / "config.json").write_text(json.dumps(older))
    assert load_config(tmp_path).word_context == 0  # rebuilt as it was trained, so its checkpoints still load


def test_config_refuses_caption_mean_k_and_a_run_without_tokens():
    from gan.archs import get_arch
    from gan.config import CacheInfo, resolve
    from tools.errors import UserError

    with pytest.raises(UserError, match="word_context=5: .*use 0 to 4"):
        _cfg(word_context=5)
    with pytest.raises(UserError, match="word_context=1: only --arch dfgan-words has word context"):
        resolve(dict(embeddings="x.h5", arch="dfgan", word_context=1), False)

    with pytest.raises(UserError, match="caption-mean-k 2.*dfgan-words reads one caption"):
        _cfg(caption_mean_k=2)
    with pytest.raises(UserError, match="precompute_embeddings.py --tokens"):
        get_arch("dfgan-words").build(replace(_cfg(), cache=CacheInfo(dim=16, path="x.h5")))


@pytest.mark.parametrize("context", [0, 1])
def test_one_word_step_is_finite_and_moves_the_word_layers_of_g_and_d(context):
    from bench.step_rows import build_step

    cfg = _cfg(word_context=context)
    trainer, step = build_step(cfg, 0)
    g_attn = trainer.generator.get_layer("words1")
    d_words = trainer.d_head.get_layer("word_region")
    before = {v.path: v.numpy().copy() for v in [*g_attn.weights, *d_words.weights]}
    batch = _batch(cfg)
    losses = {k: float(v) for k, v in step(batch, True).items()}
    losses2 = {k: float(v) for k, v in step(batch, False).items()}
    assert all(math.isfinite(v) for v in [*losses.values(), *losses2.values()])
    moved = {p for p, v in before.items()
             if not np.allclose(v, next(w for w in [*g_attn.weights, *d_words.weights] if w.path == p).numpy())}
    assert any("words1" in p and "/o/" in p for p in moved), moved  # G's attention output starts to read words
    assert any("word_region" in p and "/u/" in p for p in moved), moved  # D's word embedding
    assert any("word_region" in p and "/r/" in p for p in moved), moved  # D's region embedding
    taps = 2 * context + 1  # G's keys and D's word embedding read the word and its neighbours; G's values the word
    assert g_attn.k.kernel.shape == (16, W.G_KEY_DIM * taps) and d_words.u.kernel.shape == (16, W.D_KEY_DIM * taps)
    assert g_attn.v.kernel.shape == (16, g_attn.channels)


def test_sampling_unpacks_conditions_and_words_change_the_image():
    from gan.inference import sample_images

    cfg = _cfg()
    g = W.build_generator(cfg, 6, 16)
    g.get_layer("words1").o.kernel.assign(tf.random.stateless_normal(g.get_layer("words1").o.kernel.shape, [1, 2]))
    rng = np.random.default_rng(4)
    vec, states = rng.standard_normal((2, 16)), rng.standard_normal((2, 6, 16))
    z = tf.constant(rng.standard_normal((2, 8)).astype(np.float32))
    a = sample_images(g, None, True, W.pack(vec, states, [6, 3]), z).numpy()
    states_b = states.copy()
    states_b[1, 3:] = 9.0  # padding of row 1: same images
    b = sample_images(g, None, True, W.pack(vec, states_b, [6, 3]), z).numpy()
    np.testing.assert_array_equal(a, b)
    states_c = states.copy()
    states_c[0, :2] *= -1.0  # real words of row 0: its image changes, row 1's does not
    c = sample_images(g, None, True, W.pack(vec, states_c, [6, 3]), z).numpy()
    assert np.abs(c[0].astype(int) - a[0]).max() > 0 and np.array_equal(c[1], a[1])
