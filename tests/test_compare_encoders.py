"""Encoder comparison: the linear probe's golden bounds, and tools/compare_encoders.py end to end on a 40-image
synthetic set with two cheap encoders (tfidf, tfidf?max_tokens=16) and a 2-step tiny GAN, re-run for reuse.

The evaluation's attribute classifier comes from cache/attribute_classifier (trained once per checkout); the
R-precision matcher cannot train on 40 images and says so, which the comparison records.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.evaluation.compare import run_speed
from tools.evaluation.probe import fit_softmax, linear_probe

ENCODERS = ["tfidf", "tfidf?max_tokens=16"]
TINY = ["--steps", "2", "--preset", "cpu", "--set", "ngf=8", "--set", "ndf=8", "--set", "batch_size=4",
        "--set", "z_dim=8", "--set", "c_dim=8", "--n-per-caption", "2"]


# --- the probe -------------------------------------------------------------------------------------------------
def test_probe_reads_a_perfect_code_exactly():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(200), 3)  # 200 images x 3 captions
    labels = rng.integers(0, 7, 200)[groups]  # one value per image, 7 classes like petal_color
    vectors = np.concatenate([np.eye(7)[labels], np.zeros((600, 5))], axis=1)  # one-hot + dead dimensions
    out = linear_probe(vectors, labels, groups, 7, seed=0)
    assert out["accuracy"] == 1.0
    assert (out["n_train"], out["n_test"]) == (480, 120)  # 160 / 40 images, split by image
    assert out["majority"] < 0.3  # ignoring the vector does far worse


def test_probe_on_random_vectors_is_chance():
    rng = np.random.default_rng(1)
    groups = np.arange(2000)
    labels = rng.integers(0, 2, 2000)
    out = linear_probe(rng.normal(size=(2000, 32)), labels, groups, 2, seed=0)
    assert 0.42 < out["accuracy"] < 0.58  # 400 held-out rows of a coin: sd 0.025
    assert 0.42 < out["majority"] < 0.58


def test_softmax_fit_is_deterministic_and_matches_the_optimum_direction():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64)  # linearly separable along (1, -1, 0, 0)
    w1, b1 = fit_softmax(x, y, 2)
    w2, b2 = fit_softmax(x, y, 2)
    assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    direction = w1[:, 1] - w1[:, 0]
    cos = direction @ np.array([1, -1, 0, 0]) / (np.linalg.norm(direction) * np.sqrt(2))
    assert cos > 0.95
    assert np.mean(np.argmax(x @ w1 + b1, 1) == y) > 0.97


def test_probe_refuses_to_split_one_image():
    out = linear_probe(np.eye(3), [0, 1, 2], [0, 0, 0], 3)
    assert out["accuracy"] is None and "too few" in out["why"]


def test_run_speed_reads_the_log(tmp_path):
    (tmp_path / "train.log").write_text(
        "run folder: x\nstep 50/100 | d 0.61 | g 2.31 | kl 0.04 | 900 ms/step | ETA 1m\n"
        "step 100/100 | d 0.61 | g 2.31 | kl 0.04 | 85 ms/step | ETA 0s\n"
        "step 150/100 | d 0.61 | g 2.31 | kl 0.04 | 95 ms/step | ETA 0s\ndone: step 150 | epoch 1.00 | ...\n")
    assert run_speed(tmp_path) == {"steps": 150, "ms_per_step": 90.0}  # the first interval (tracing) left out
    (tmp_path / "train.log").write_text("step 50/100 | d 0.61 | g 2.31 | kl 0.04 | 900 ms/step | ETA 1m\n")
    assert run_speed(tmp_path) == {"steps": None, "ms_per_step": 900.0}  # unfinished


def test_split_specs_keeps_two_path_specs_whole():
    from tools.compare_encoders import split_specs

    assert split_specs("minilm, tfhub-bert:/p,/e ,tfidf?max_tokens=16") == ["minilm", "tfhub-bert:/p,/e",
                                                                            "tfidf?max_tokens=16"]


# --- end to end ------------------------------------------------------------------------------------------------
def _compare(args) -> str:
    from tools.compare_encoders import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([str(a) for a in args]) == 0
    return buf.getvalue()


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    from tools.synthetic import generate_dataset

    tmp = tmp_path_factory.mktemp("compare")
    with contextlib.redirect_stdout(io.StringIO()):
        data = generate_dataset(tmp / "flowers", n=40, seed=0, n_test=20, progress=False)
    args = ["--data", data, "--encoders", ",".join(ENCODERS), "--out", tmp / "out", "--cache-dir", tmp / "cache",
            *TINY]
    first = _compare(args)
    state1 = json.loads((tmp / "out" / "comparison.json").read_text())
    second = _compare(args)
    return tmp / "out", first, second, state1


def test_markdown_has_one_row_per_encoder(compared):
    out, first, _, _ = compared
    md = (out / "comparison.md").read_text()
    for spec in ENCODERS:
        assert sum(line.startswith(f"| {spec} |") for line in md.splitlines()) == 2  # GAN table + probe table
    assert "| real reference |" in md and "petal_color accuracy" in md
    assert "[1/2 tfidf] probe:" in first and "[2/2 tfidf?max_tokens=16] evaluate:" in first


def test_png_is_a_chart(compared):
    out = compared[0]
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out / "comparison.png") as im:
        assert im.size[0] > 600 and im.size[1] > 300


def test_json_holds_the_numbers(compared):
    out = compared[0]
    state = json.loads((out / "comparison.json").read_text())
    assert state["order"] == ENCODERS and state["dataset"]["synthetic"] is True
    small, full = state["arms"]["tfidf?max_tokens=16"], state["arms"]["tfidf"]
    assert small["dim"] == 16 and full["dim"] > 16  # the cap applies; the full vocabulary is larger
    for entry in (small, full):
        assert entry["steps"] == 2 and entry["eval"]["step"] == 2
        m = entry["metrics"]
        assert m["n_captions"] == 20 and m["n_images"] == 40
        assert 0.0 <= m["attribute_accuracy"]["mean"] <= 1.0 and m["fid"] > 0
        for key in ("r_precision", "r_precision_shared"):  # 40 images: neither matcher can train, both say why
            assert m[key]["value"] is None and "matcher needs" in m[key]["why"]
        assert m["metrics_version"] == entry["eval"]["metrics_version"] == 2
        for a in ("petal_color", "center_color", "petal_count", "petal_shape"):
            assert 0.0 <= entry["probe"][a]["accuracy"] <= 1.0 and entry["probe"][a]["n_test"] > 0
    # tfidf sees the words: the count word and the shape word alone decide those attributes
    assert full["probe"]["petal_count"]["accuracy"] >= 0.8 and full["probe"]["petal_shape"]["accuracy"] >= 0.8


def test_rerun_reuses_everything(compared):
    out, _, second, state1 = compared
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == len(ENCODERS)  # the second call trained nothing
    assert "new run" not in second and second.count("train: reusing finished run") == len(ENCODERS)
    assert second.count("evaluate: reused metrics") == len(ENCODERS)
    assert second.count("probe: reused") == len(ENCODERS)
    state2 = json.loads((out / "comparison.json").read_text())
    for spec in ENCODERS:
        assert state2["arms"][spec]["run_dir"] == state1["arms"][spec]["run_dir"]
        assert state2["arms"][spec]["metrics"] == state1["arms"][spec]["metrics"]


def test_sampling_noise_reuses_the_runs_and_evaluates_again(compared):
    """ca_noise changes how images are drawn, not the weights: a comparison that asks for another value reuses every
    run and draws its evaluation images with that value (runs keep what they recorded in config.json)."""
    out, _, _, state1 = compared
    assert all(state1["arms"][s]["eval"]["ca_noise"] == 1.0 for s in ENCODERS)  # the dfgan preset's
    assert all(state1["arms"][s]["metrics"]["sampling"]["ca_noise"] == 1.0 for s in ENCODERS)
    data = Path(state1["dataset"]["root"])
    args = ["--data", data, "--encoders", ",".join(ENCODERS), "--out", out, "--cache-dir", out.parent / "cache",
            *TINY, "--set", "ca_noise=0"]
    third = _compare(args)
    assert "new run" not in third and third.count("train: reusing finished run") == len(ENCODERS)
    assert third.count("evaluate: step 2") == len(ENCODERS)
    state3 = json.loads((out / "comparison.json").read_text())
    for spec in ENCODERS:
        entry = state3["arms"][spec]
        assert entry["run_dir"] == state1["arms"][spec]["run_dir"]
        assert entry["eval"]["ca_noise"] == 0.0 and entry["metrics"]["sampling"]["ca_noise"] == 0.0
        assert Path(entry["metrics"]["images"]).name == "step_000002_ca0"  # beside the run's own step_000002
