"""generate.py: the run's own encoder (identity check, cache reuse), DataLab naming, seeds, grid layout,
refusals. One tiny real run (synthetic flowers, tfidf cache, 2 training steps) serves every test."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import generate
import train_gan
from cache.reader import EmbeddingCache
from embeddings.registry import get_encoder
from tools import grids
from tools.errors import UserError
from tools.generation import sample_z

TINY = ["--ngf", "8", "--ndf", "8", "--batch-size", "4", "--z-dim", "8", "--c-dim", "8", "--preset", "cpu",
        "--steps", "2", "--log-every", "1", "--ckpt-every", "2", "--sample-every", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run folder, synthetic dataset folder) — a 2-step run on a tfidf cache of 24 synthetic flowers."""
    from cache.writer import build_cache
    from tools.datasets import load_dataset
    from tools.synthetic import generate_dataset

    tmp = tmp_path_factory.mktemp("gen")
    data = generate_dataset(tmp / "sf", n=24, seed=3, datalab=True, n_test=6, progress=False)
    cache = build_cache(load_dataset(data), get_encoder("tfidf"), tmp / "sf-tfidf.h5", log=lambda *_: None)
    train_gan.main(["--embeddings", str(cache), "--run-dir", str(tmp / "runs"), *TINY])
    (run_dir,) = (tmp / "runs").iterdir()
    return run_dir, data


def gen(run_dir, out, *args):
    generate.main(["--run", str(run_dir), "--out", str(out), "--no-progress", *map(str, args)])
    return sorted(p.name for p in out.iterdir())


def test_new_text_is_encoded_by_the_caches_encoder_and_cached_captions_are_reused(run, capsys):
    run_dir, _ = run
    cfg = json.loads((run_dir / "config.json").read_text())
    with EmbeddingCache.open(cfg["cache"]["path"]) as cache:
        known = cache.texts()[5]
        stored = cache.embeddings([5])[0]
        encoder = cache.build_encoder()
        # the rebuilt encoder reproduces the cache; a tfidf fitted on other text does not, and is refused
        assert cache.check_encoder(encoder) > 0.9999
        other = get_encoder("tfidf")
        other.fit(["completely different words here", "nothing about flowers at all"] * 3)
        with pytest.raises(UserError, match="does not reproduce the cache's vectors"):
            cache.check_encoder(other)
    from tools.generation import encode_texts, open_run_cache
    from gan.run_dir import load_config

    gcfg = load_config(run_dir)
    cache = open_run_cache(gcfg, run_dir)
    new = "a blue flower with eight round petals"
    enc = encode_texts(gcfg, cache, [known, new])
    cache.close()
    assert (enc.reused, enc.encoded) == (1, 1)
    np.testing.assert_array_equal(enc.vectors[0], stored)
    np.testing.assert_array_equal(enc.vectors[1], encoder.encode([new])[0])


def test_datalab_test_pickle_gives_one_inference_file_per_id(run, tmp_path, capsys):
    run_dir, data = run
    names = gen(run_dir, tmp_path / "sub", "--datalab-test", data / "datalab" / "dataset" / "testData.pkl")
    assert names == [f"inference_{i:04d}.jpg" for i in range(1, 7)]
    assert Image.open(tmp_path / "sub" / "inference_0001.jpg").size == (64, 64)
    assert "wrote 6 images" in capsys.readouterr().out


def test_seed_makes_output_reproducible_and_n_per_caption_names_files(run, tmp_path):
    run_dir, data = run
    captions = data / "test_captions.jsonl"
    a = gen(run_dir, tmp_path / "a", "--captions", captions, "--format", "png", "--seed", 7, "--n-per-caption", 2)
    a2 = gen(run_dir, tmp_path / "a2", "--captions", captions, "--format", "png", "--seed", 7, "--n-per-caption", 2)
    b = gen(run_dir, tmp_path / "b", "--captions", captions, "--format", "png", "--seed", 7, "--n-per-caption", 2,
            "--batch-size", 5)
    c = gen(run_dir, tmp_path / "c", "--captions", captions, "--format", "png", "--seed", 8, "--n-per-caption", 2)
    assert a == b == c == [f"inference_{i:04d}_{k}.png" for i in range(1, 7) for k in (0, 1)]
    pix = {d: np.stack([np.asarray(Image.open(tmp_path / d / n), np.int16) for n in a]) for d in "abc"}
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "a2" / n).read_bytes() for n in a2)
    assert np.abs(pix["a"] - pix["b"]).max() <= 1  # batch size does not change an image (float rounding at most)
    # another seed draws other noise (a 2-step generator is too flat to show it in uint8 pixels; the grid
    # test checks that images are G(text, z) for the seed's z)
    assert not np.allclose(sample_z(12, 8, 7, None), sample_z(12, 8, 8, None))
    trunc = sample_z(500, 8, 7, 0.5)
    assert np.abs(trunc).max() <= 0.5 and trunc.std() > 0.2  # truncation redraws, it does not clip


def test_grid_rows_are_captions_and_columns_share_noise(run, tmp_path):
    from gan.inference import load_generator

    run_dir, _ = run
    texts = ["a red flower with a black center", "this flower has eight pointed white petals",
             "a yellow flower with a brown middle"]
    args = sum((["--text", t] for t in texts), [])
    gen(run_dir, tmp_path, *args, "--grid", "--grid-captions", "2,0", "--grid-noise", 3, "--seed", 4)
    fig = np.asarray(Image.open(tmp_path / "grid.png"))
    loc = grids.tile_location(2, 3, 64, 64)
    assert fig.shape[1] == loc[0, -1, 0] + 128 + grids.PAD and fig.shape[0] == loc[-1, 0, 1] + 128 + grids.PAD
    g, cfg = load_generator(run_dir)
    cache = EmbeddingCache.open(cfg.cache.path)
    enc = cache.build_encoder()
    cache.close()
    z = sample_z(3, g.z_dim, 4 + 1, None)
    for row, text in enumerate([texts[2], texts[0]]):
        expect = g(np.repeat(enc.encode([text]), 3, axis=0), z)  # [3, 64, 64, 3]
        for k in range(3):
            x, y = loc[row, k]
            tile = fig[y : y + 128 : 2, x : x + 128 : 2]
            assert np.abs(tile.astype(int) - expect[k]).max() <= 1


def test_unsafe_ids_are_refused_before_anything_is_written(run, tmp_path):
    run_dir, _ = run
    bad = tmp_path / "caps.csv"
    bad.write_text("id,caption\n1,a red flower\n../../etc/x,a blue flower\n")
    with pytest.raises(UserError, match=r"row 2: id '\.\./\.\./etc/x' is not a safe file name"):
        generate.main(["--run", str(run_dir), "--out", str(tmp_path / "o"), "--captions", str(bad)])
    assert not (tmp_path / "o").exists()


def test_run_whose_encoder_is_unavailable_is_refused(tmp_path):
    from test_gan_fixtures import make_cache

    cache = make_cache(tmp_path)  # built with a test-only "testhash" encoder the registry does not know
    train_gan.main(["--embeddings", str(cache), "--run-dir", str(tmp_path / "runs"), *TINY])
    (run_dir,) = (tmp_path / "runs").iterdir()
    known = EmbeddingCache.open(cache).texts()[0]
    assert gen(run_dir, tmp_path / "ok", "--text", known) == ["inference_0000.jpg"]  # cached vector: no encoder needed
    with pytest.raises(UserError, match="cannot build the run's encoder testhash here"):
        gen(run_dir, tmp_path / "no", "--text", "a sentence the cache has never seen")


def test_ca_noise_option_draws_with_that_scale_and_refuses_out_of_range(run, tmp_path):
    from gan.inference import load_generator

    run_dir, _ = run
    text = "a red flower with a black center"
    gen(run_dir, tmp_path / "mean", "--text", text, "--format", "png", "--ca-noise", 0, "--seed", 2)
    g, cfg = load_generator(run_dir, ca_noise=0.0)
    cache = EmbeddingCache.open(cfg.cache.path)
    enc = cache.build_encoder()
    cache.close()
    expect = g(enc.encode([text]), sample_z(1, g.z_dim, 2, None))[0]
    got = np.asarray(Image.open(tmp_path / "mean" / "inference_0000.png"), int)
    assert np.abs(got - expect).max() <= 1
    with pytest.raises(UserError, match=r"^--ca-noise 2.5: must be in \[0, 2\]"):
        gen(run_dir, tmp_path / "far", "--text", text, "--ca-noise", 2.5)
    assert not (tmp_path / "far").exists()


def test_sampling_imports_no_training_code():
    """generate.py, the web server, evaluation and tools/generation.py draw images through gan.inference: importing
    them and sampling a run folder loads neither GanTrainer (gan.trainer) nor the training loop (gan.loop, gan.hooks)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = """
import importlib, pkgutil, sys
import numpy as np
import generate, tools.generation, tools.evaluate, tools.evaluation, tools.serve
for pkg in (tools.evaluation, tools.serve):
    for m in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{m.name}")
from gan.inference import load_generator
gen, cfg = load_generator("tests/data/runs/v2-dfgan")
images = gen(np.zeros((1, cfg.cache.dim), np.float32))
print(images.shape, sorted(m for m in sys.modules if m in ("gan.trainer", "gan.loop", "gan.hooks")))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "(1, 64, 64, 3) []"
