"""precompute_embeddings.py end to end, as a user runs it (subprocess): build, no-op re-run, --force,
--list-encoders, and one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cache.reader import EmbeddingCache

REPO = Path(__file__).resolve().parent.parent
CAPTIONS = ["a red flower with round petals", "a blue flower", "a red flower with round petals",
            "this flower is yellow"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    # the child's vectors are compared to this process's bit for bit: it inherits this process's oneDNN setting
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    return subprocess.run([sys.executable, "precompute_embeddings.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def error_line(run: subprocess.CompletedProcess) -> str:
    """The one-line error: the last stderr line (TensorFlow may print noise before it)."""
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert sum(line.startswith("error:") for line in lines) == 1, run.stderr
    assert lines[-1].startswith("error:")
    return lines[-1]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """6 images x 3 captions, 3 distinct captions."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "images").mkdir()
    with open(root / "manifest.jsonl", "w") as f:
        for i in range(6):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / "images" / f"{i:05d}.png")
            captions = [CAPTIONS[(i + k) % 4] for k in range(3)]
            f.write(json.dumps({"image_id": f"{i:05d}", "image_path": f"images/{i:05d}.png", "captions": captions}) + "\n")
    return root


def test_tfidf_end_to_end_then_noop_then_refusal(manifest, tmp_path):
    out = tmp_path / "tiny-tfidf.h5"
    run = run_cli("--data", str(manifest), "--encoder", "tfidf", "--out", str(out), "--no-progress")
    assert run.returncode == 0, run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"wrote {out}: 18 captions (3 unique), dim ")
    assert "captions/s" in summary and " MB; dataset skipped: none" in summary
    with EmbeddingCache.open(out) as cache:
        assert cache.num_captions == 18 and cache.num_images == 6 and cache.dataset_layout == "manifest"
        assert cache.encoder_spec == "tfidf" and cache.dataset_root == str(manifest.resolve())
        vectors, dim = cache.embeddings(), cache.dim
        np.testing.assert_array_equal(vectors, cache.build_encoder().encode(cache.texts()))
        assert vectors[0].tobytes() == vectors[cache.texts().index(cache.texts()[0], 1)].tobytes()
    before = out.read_bytes()

    again = run_cli("--data", str(manifest), "--encoder", "tfidf", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"cache is up to date: {out} (18 captions, dim {dim}) — use --force to rebuild"
    assert out.read_bytes() == before

    other = run_cli("--data", str(manifest), "--encoder", "tfidf", "--out", str(out), "--dtype", "float16")
    line = error_line(other)
    assert "fingerprint" in line and "--force" in line and str(out) in line


def test_force_rebuilds_and_float16_with_glove(manifest, tmp_path):
    """glove needs no TensorFlow, so these runs are quick."""
    vectors = tmp_path / "glove.tiny.txt"
    words = sorted({w for c in CAPTIONS for w in c.split()})
    vectors.write_text("".join(f"{w} {i} {len(w) / 4} -1.5\n" for i, w in enumerate(words)))
    out = tmp_path / "tiny-glove.h5"
    common = ["--data", str(manifest), "--encoder", f"glove:{vectors}", "--out", str(out), "--no-progress"]
    assert run_cli(*common).returncode == 0
    before = out.read_bytes()
    forced = run_cli(*common, "--force")
    assert forced.returncode == 0 and forced.stdout.strip().splitlines()[-1].startswith(f"wrote {out}: 18 captions")
    assert out.read_bytes() == before  # same inputs, same SOURCE_DATE_EPOCH: the same bytes
    assert "fingerprint" in error_line(run_cli(*common, "--dtype", "float16"))
    assert run_cli(*common, "--dtype", "float16", "--force").returncode == 0
    with EmbeddingCache.open(out) as cache:
        assert cache.dtype == "float16" and cache.dim == 3
        texts, got = cache.texts(), cache.embeddings()
    row = texts.index("a blue flower")  # mean of the word vectors, stored as float16
    expected = np.mean([[words.index(w), len(w) / 4, -1.5] for w in ("a", "blue", "flower")], axis=0)
    np.testing.assert_array_equal(got[row], expected.astype(np.float16).astype(np.float32))


def test_list_encoders():
    run = run_cli("--list-encoders")
    assert run.returncode == 0, run.stderr
    for spec in ("minilm", "tfidf", "hf:", "tfhub:", "glove:"):
        assert spec in run.stdout
    assert "384" in run.stdout


@pytest.mark.parametrize("args, expected", [
    (["--encoder", "no-such-encoder"], "unknown encoder family 'no-such-encoder'"),
    (["--encoder", "tfidf", "--encoder-option", "max_tokens"], "must look like KEY=VALUE"),
    (["--encoder", "tfidf", "--batch-size", "0"], "--batch-size 0 must be a positive integer"),
])
def test_one_line_errors(manifest, tmp_path, args, expected):
    line = error_line(run_cli("--data", str(manifest), "--out", str(tmp_path / "x.h5"), *args))
    assert expected in line


def test_missing_data_is_one_line(tmp_path):
    line = error_line(run_cli("--data", str(tmp_path / "nowhere"), "--encoder", "tfidf"))
    assert "nowhere" in line and "no such file" in line
