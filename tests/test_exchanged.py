"""Exchanged-colour mismatched captions: the text edit (tools/exchanged_captions.py), the step-keyed replacement of
mismatched rows (gan/exchanged.py), the refusal of a cache encoded otherwise, and a dfgan-words run that trains with
them and resumes bit-identically. A tiny BERT (tests/encoder_fixtures.py) stands in for MiniLM: same code."""
from __future__ import annotations

import json

import numpy as np
import pytest

import encoder_fixtures as fx
from test_gan_train import ckpt_tensors, cli
from tools.exchanged_captions import COLOURS, exchange_colours
from tools.errors import UserError

TINY = ["--arch", "dfgan-words", "--ngf", "8", "--ndf", "8", "--batch-size", "4", "--z-dim", "8", "--c-dim", "8",
        "--preset", "cpu", "--mixed-precision", "off", "--set", "num_sample_captions=2", "--set", "num_sample_z=2",
        "--set", "hard_neg_low=-1", "--set", "hard_neg_high=0.999", "--log-every", "2", "--sample-every", "4"]


@pytest.mark.parametrize("caption,expected", [
    ("this flower has yellow petals and a white center", "this flower has white petals and a yellow center"),
    ("Red petals surround a black centre.", "Black petals surround a red centre."),
    ("the center is WHITE and the petals are pink", "the center is PINK and the petals are white"),
    ("a yellow flower with yellow petals and a white middle", "a white flower with yellow petals and a yellow middle"),
    ("a bird with a red head, black wings and a white belly", "a bird with a black head, red wings and a white belly"),
    ("this flower has yellow petals", None),  # one colour
    ("reddish petals and a whitish center", None),  # whole words only
    ("yellow petals and a yellow center", None),  # the same colour twice: nothing to exchange
])
def test_exchange_colours_swaps_the_first_two_different_colour_words(caption, expected):
    assert exchange_colours(caption) == expected


def test_every_synthetic_palette_colour_is_an_exchangeable_word():
    from tools.synthetic import spec

    assert set(spec.COLOR_WORDS) <= set(COLOURS)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """12 synthetic flowers, their exchanged captions, both cached with token states by a tiny BERT at one L."""
    import precompute_embeddings
    from tools import exchanged_captions
    from tools.synthetic import generate_dataset

    tmp = tmp_path_factory.mktemp("exchanged")
    fx.save_tiny_bert_tf(str(tmp / "bert"))
    data = generate_dataset(tmp / "flowers", n=12, seed=0, n_test=4, progress=False)
    assert exchanged_captions.main(["--data", str(data), "--out", str(tmp / "exchanged")]) == 0
    caches = {"train": tmp / "train.h5", "exchanged": tmp / "exchanged.h5"}
    for name, folder in (("train", data), ("exchanged", tmp / "exchanged")):
        precompute_embeddings.main(["--data", str(folder), "--encoder", f"hf:{tmp / 'bert'}", "--out",
                                    str(caches[name]), "--no-progress", "--tokens", "--token-length", "32"])
    return tmp, data, caches


def test_the_tool_writes_each_image_its_exchanged_captions(work):
    tmp, data, _ = work
    own = {r["image_id"]: r["captions"] for r in map(json.loads, (data / "manifest.jsonl").open())}
    attrs = {r["image_id"]: r for r in map(json.loads, (data / "attributes.jsonl").open())}
    rows = [json.loads(line) for line in (tmp / "exchanged" / "manifest.jsonl").open()]
    assert rows and all(r["captions"] for r in rows)
    for r in rows:
        for text in r["captions"]:
            assert text not in own[r["image_id"]] and exchange_colours(text) in own[r["image_id"]]  # an involution
        assert attrs[r["image_id"]]["petal_color"] != attrs[r["image_id"]]["center_color"]
    # an image whose petals and centre share a colour has nothing to exchange, and every other one has something
    with_two = {i for i, a in attrs.items() if a["petal_color"] != a["center_color"]
                and any(exchange_colours(t) for t in own[i])}
    assert {r["image_id"] for r in rows} == with_two


def test_seen_only_keeps_the_exchanges_that_are_another_images_caption():
    from types import SimpleNamespace

    from tools.exchanged_captions import exchanged_rows

    captions = ["yellow petals and a white center", "white petals and a yellow center", "red petals and a brown center",
                "a red flower"]
    data = SimpleNamespace(captions=captions, caption_image=np.array([0, 1, 2, 2]), num_captions=4,
                           image_ids=["a", "b", "c"], image_paths=["a.png", "b.png", "c.png"])
    rows, counts = exchanged_rows(data)
    assert [(r["image_id"], r["captions"]) for r in rows] == [
        ("a", [captions[1]]), ("b", [captions[0]]), ("c", ["brown petals and a red center"])]
    assert counts["not_another_images_caption"] == 0 and counts["fewer_than_two_colours"] == 1
    rows, counts = exchanged_rows(data, seen_only=True)
    assert [(r["image_id"], r["captions"]) for r in rows] == [("a", [captions[1]]), ("b", [captions[0]])]
    assert counts["not_another_images_caption"] == 1 and counts["exchanged"] == 2 and counts["images"] == 2


def _negatives(caches, share, tokens=True):
    from gan.data import read_cache
    from gan.exchanged import ExchangedNegatives

    data = read_cache(caches["train"])
    return data, ExchangedNegatives(caches["exchanged"], data.info, data.image_ids, share, seed=3, tokens=tokens)


def test_replacement_is_keyed_by_step_and_draws_the_images_own_exchanged_captions(work):
    from cache.reader import EmbeddingCache

    _, _, caches = work
    data, ex = _negatives(caches, share=1.0)
    n = data.info.num_captions
    images = np.arange(12)
    wrong = np.full((12, 1), 7, np.int64)
    out = ex.replace(5, images, wrong)
    assert np.array_equal(out, ex.replace(5, images, wrong)) and not np.array_equal(out, ex.replace(6, images, wrong))
    with EmbeddingCache.open(caches["exchanged"]) as c:
        ex_image = [c.image_ids()[i] for i in c.image_index()]
        ex_text = c.texts()
    for img, row in zip(images, out[:, 0]):
        if ex.count[img]:  # share 1: every image that has an exchanged caption gets one of its own
            assert row >= n and ex_image[row - n] == data.image_ids[img]
            assert exchange_colours(ex_text[row - n]) in [t for t, i in zip(data.texts, data.caption_image) if i == img]
        else:
            assert row == 7
    _, none = _negatives(caches, share=0.0)
    assert np.array_equal(none.replace(5, images, wrong), wrong)
    # one row index for both kinds: training rows from the training vectors, N + j from the exchanged ones
    taken = ex.take(data.vectors, out)
    assert taken.shape == (12, 1, data.vectors.shape[1]) and taken.dtype == data.vectors.dtype
    for row, vec in zip(out[:, 0], taken[:, 0]):
        assert np.array_equal(vec, ex.vectors[row - n] if row >= n else data.vectors[row])


def test_each_batch_ends_with_the_mask_of_its_exchanged_rows(work):
    from gan.data import BatchSampler, make_batch_fn

    _, _, caches = work
    data, ex = _negatives(caches, share=0.5, tokens=False)
    sampler = BatchSampler(data.caption_image, np.ones(12, bool), batch_size=8, seed=0)
    batch = make_batch_fn(np.zeros((12, 4, 4, 3), np.uint8), data.vectors, sampler, exchanged=ex)
    plain = make_batch_fn(np.zeros((12, 4, 4, 3), np.uint8), data.vectors, sampler)
    masks = []
    for step in range(6):
        images, cond, wrong, mask = batch(step)
        img_rows, _, wrong_rows = sampler.batch(step)
        rows = ex.replace(step, img_rows, wrong_rows)[:, 0]
        assert mask.dtype == np.float32 and np.array_equal(mask, (rows >= data.info.num_captions).astype(np.float32))
        # where the mask is 0 the mismatched caption is the one the run without exchanged captions draws
        keep = mask == 0
        assert np.array_equal(wrong[keep], plain(step)[2][keep])
        masks.append(mask)
    assert 0 < np.mean(masks) < 1  # share 0.5 of the images that have one: some rows of each kind


@pytest.mark.parametrize("name", ["exchanged_g", "exchanged_d"])
def test_a_binding_term_needs_exchanged_captions_and_a_weight_of_zero_or_more(name):
    from gan.config import resolve

    for over, why in (({name: 1.0}, "needs --set exchanged_cache=FILE"),
                      ({name: -1.0, "exchanged_cache": "ex.h5"}, "must be >= 0")):
        with pytest.raises(UserError, match=f"--set {name}=.*{why}") as e:
            resolve({"arch": "dfgan-words", "preset": "cpu", "embeddings": "x.h5", **over}, False)
        assert "\n" not in str(e.value)


def test_an_arch_that_reads_raw_captions_refuses_exchanged_negatives_before_any_work():
    from gan.config import resolve

    with pytest.raises(UserError, match="--arch ta80 reads raw captions; exchanged-colour negatives are for") as e:
        resolve({"arch": "ta80", "preset": "cpu", "embeddings": "x.h5", "exchanged_cache": "ex.h5"}, False)
    assert "\n" not in str(e.value)


def test_stacked_tokens_read_training_rows_then_exchanged_rows(work):
    from cache.reader import EmbeddingCache
    from gan.exchanged import StackedTokens

    _, _, caches = work
    data, ex = _negatives(caches, share=0.5)
    with EmbeddingCache.open(caches["train"]) as c:
        train = c.tokens()
    stacked, n = StackedTokens(train, ex.tokens), data.info.num_captions
    states, lengths = stacked.rows([n + 1, 0, n, 2])
    s_ex, l_ex = ex.tokens.rows([1, 0])
    s_tr, l_tr = train.rows([0, 2])
    assert np.array_equal(states[[0, 2]], s_ex) and np.array_equal(lengths[[0, 2]], l_ex)
    assert np.array_equal(states[[1, 3]], s_tr) and np.array_equal(lengths[[1, 3]], l_tr)


def test_an_exchanged_cache_encoded_otherwise_is_refused_in_one_line(work):
    import precompute_embeddings

    tmp, _, caches = work
    other = tmp / "exchanged-tfidf.h5"
    precompute_embeddings.main(["--data", str(tmp / "exchanged"), "--encoder", "tfidf", "--out", str(other),
                                "--no-progress"])
    for cache, why in ((other, r"encoded with tfidf.*rebuild it with the training cache's encoder"),):
        with pytest.raises(UserError, match=why) as e:
            _negatives({**caches, "exchanged": cache}, share=0.5)
        assert "\n" not in str(e.value)


def test_a_words_run_trains_on_exchanged_negatives_and_resumes_bit_identically(work):
    tmp, _, caches = work
    opts = ["--embeddings", caches["train"], *TINY, "--set", f"exchanged_cache={caches['exchanged']}",
            "--set", "exchanged_share=0.5", "--set", "exchanged_g=1", "--ckpt-every", 2]
    cli([*opts, "--run-dir", tmp / "a", "--steps", 4])
    run_a = next((tmp / "a").iterdir())
    log = (run_a / "train.log").read_text()
    assert "exchanged-colour negatives: 50% of the mismatched captions" in log and "done: step 4" in log
    cli([*opts, "--run-dir", tmp / "b", "--steps", 2])
    run_b = next((tmp / "b").iterdir())
    cli(["--resume", run_b, "--steps", 4])
    a, b = ckpt_tensors(run_a / "checkpoints" / "ckpt-4"), ckpt_tensors(run_b / "checkpoints" / "ckpt-4")
    assert a.keys() == b.keys() and [k for k in a if not np.array_equal(a[k], b[k])] == []
    # the same run without them draws other mismatched captions, so D (and through it G) ends elsewhere
    cli(["--embeddings", caches["train"], *TINY, "--ckpt-every", 2, "--run-dir", tmp / "c", "--steps", 4])
    c = ckpt_tensors(next((tmp / "c").iterdir()) / "checkpoints" / "ckpt-4")
    assert any(not np.array_equal(a[k], c[k]) for k in a if k.startswith("d_optimizer"))
    # G's binding term: the same draws without it leave D's first update alone and move G elsewhere
    cli([*opts[:-4], "--ckpt-every", 1, "--run-dir", tmp / "g0", "--steps", 1])
    cli([*opts[:-2], "--ckpt-every", 1, "--run-dir", tmp / "g1", "--steps", 1])
    g0, g1 = (ckpt_tensors(next((tmp / n).iterdir()) / "checkpoints" / "ckpt-1") for n in ("g0", "g1"))
    moved = [k for k in g0 if not np.array_equal(g0[k], g1[k])]
    assert moved and all(k.startswith(("generator", "g_optimizer", "ema", "sampler")) for k in moved), moved[:5]
    # D's binding term: D's first update moves, G's (taken from the same forward pass) does not
    cli([*opts[:-4], "--set", "exchanged_d=1", "--ckpt-every", 1, "--run-dir", tmp / "d1", "--steps", 1])
    d1 = ckpt_tensors(next((tmp / "d1").iterdir()) / "checkpoints" / "ckpt-1")
    moved = [k for k in g0 if not np.array_equal(g0[k], d1[k])]
    assert moved and all(k.startswith("d_optimizer") for k in moved), moved[:5]
