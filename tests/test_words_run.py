"""--arch dfgan-words end to end on a tiny token cache (a tiny BERT's token states): trains, resumes bit-identically,
samples its grid, generates new and cached text with the cache's own token features; a sentence-only cache is
refused in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

import encoder_fixtures as fx
from test_gan_train import ckpt_tensors, cli
from tools.errors import UserError

TINY = ["--arch", "dfgan-words", "--ngf", "8", "--ndf", "8", "--batch-size", "4", "--z-dim", "8", "--c-dim", "8",
        "--preset", "cpu", "--mixed-precision", "off", "--set", "num_sample_captions=2", "--set", "num_sample_z=2",
        "--set", "hard_neg_low=-1", "--set", "hard_neg_high=0.999", "--log-every", "2", "--sample-every", "2"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A 12-image synthetic-flowers set cached by a tiny BERT with and without token states."""
    import precompute_embeddings
    from tools.synthetic import generate_dataset

    tmp = tmp_path_factory.mktemp("words")
    fx.save_tiny_bert_tf(str(tmp / "bert"))
    data = tmp / "flowers"
    generate_dataset(data, n=12, seed=0, n_test=4, progress=False)
    caches = {}
    for name, extra in (("tokens", ["--tokens"]), ("plain", [])):
        caches[name] = tmp / f"{name}.h5"
        precompute_embeddings.main(["--data", str(data), "--encoder", f"hf:{tmp / 'bert'}", "--out",
                                    str(caches[name]), "--no-progress", *extra])
    return tmp, caches


@pytest.fixture(scope="module")
def run6(work):
    tmp, caches = work
    cli(["--embeddings", caches["tokens"], "--run-dir", tmp / "runs", "--steps", 6, "--ckpt-every", 3, *TINY])
    return next((tmp / "runs").iterdir())


def test_a_sentence_only_cache_is_refused_in_one_line(work):
    tmp, caches = work
    with pytest.raises(UserError, match="built without token states.*--tokens") as e:
        cli(["--embeddings", caches["plain"], "--run-dir", tmp / "refused", "--steps", 1, *TINY])
    assert "\n" not in str(e.value)


def test_run_records_its_token_length_and_samples_a_grid(run6):
    cfg = json.loads((run6 / "config.json").read_text())
    assert cfg["arch"] == "dfgan-words" and cfg["cache"]["token_length"] > 0
    assert run6.name.endswith("-words") and (run6 / "samples" / "step_000006.png").exists()


def test_resume_reaches_the_same_weights(work, run6):
    tmp, caches = work
    cli(["--embeddings", caches["tokens"], "--run-dir", tmp / "runs-b", "--steps", 3, "--ckpt-every", 3, *TINY])
    run = next((tmp / "runs-b").iterdir())
    cli(["--resume", run, "--steps", 6])
    a, b = ckpt_tensors(run6 / "checkpoints" / "ckpt-6"), ckpt_tensors(run / "checkpoints" / "ckpt-6")
    # the checkpoint holds the word layers (G's and D's through their optimizers' variable lists; by name in the
    # EMA generator: its attention's output projection W_o)
    assert a.keys() == b.keys() and any(n.startswith("generator_ema/") and "/o/_kernel" in n for n in a)
    assert [n for n in a if not np.array_equal(a[n], b[n])] == []


def test_generation_uses_stored_tokens_for_cached_text_and_the_encoder_for_new(work, run6):
    from cache.reader import EmbeddingCache
    from gan.inference import load_generator
    from gan.words import pack
    from tools.generation import encode_texts, open_run_cache

    gen, cfg = load_generator(run6)
    cache = open_run_cache(cfg, run6)
    cached = cache.texts()[0]
    enc = encode_texts(cfg, cache, [cached, "a flower with purple petals and a black center"])
    assert (enc.reused, enc.encoded) == (1, 1)
    with EmbeddingCache.open(cfg.cache.path) as c:
        states, lengths = c.tokens().rows(np.array([0]))
        vec = c.embeddings([0])
    np.testing.assert_array_equal(enc.vectors[:1], pack(vec, states, lengths))
    images = gen(enc.vectors, seed=0)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8
    # without the cache file the run's recorded encoder gives the same features (float16 rounding of the states)
    fresh = encode_texts(cfg, None, [cached])
    np.testing.assert_allclose(fresh.vectors, enc.vectors[:1], atol=2e-3)
