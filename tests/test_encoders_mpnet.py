"""`mpnet`: all-mpnet-base-v2 from the models dir equals sentence-transformers' vectors (tests/data/mpnet_reference.npz)
with the model's own settings (384 tokens, mean pooling, normalised). Skips, saying why, until `make encoders`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embeddings.models import models_dir, read_marker
from embeddings.pins import MPNET

REFERENCE = Path(__file__).parent / "data" / "mpnet_reference.npz"
FOLDER = models_dir() / MPNET.folder
pytestmark = pytest.mark.skipif(read_marker(FOLDER) is None,
                                reason=f"mpnet is not installed in {FOLDER}: `make encoders` installs it (~470 MB)")


@pytest.fixture(scope="module")
def mpnet():
    from embeddings.registry import get_encoder

    return get_encoder("mpnet")


def test_mpnet_reproduces_sentence_transformers(mpnet):
    ref = np.load(REFERENCE)
    sentences, expected = [str(s) for s in ref["sentences"]], ref["embeddings"]
    got = mpnet.encode(sentences)
    assert got.shape == expected.shape == (25, 768) and got.dtype == np.float32
    cos = np.sum(got * expected, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() >= 0.99999, cos.min()
    assert np.abs(got - expected).max() < 1e-5  # measured 2.2e-7, the 482-token sentence truncated at 384 included


def test_mpnet_follows_the_models_own_config(mpnet):
    cfg = mpnet.config()
    assert (cfg["spec"], cfg["family"], cfg["arg"], cfg["dim"]) == ("mpnet", "mpnet", "", 768)
    assert cfg["options"] == {"pooling": "mean", "max_length": 384, "normalize": True}
    assert cfg["sha256"] == MPNET.files["model.safetensors"][1] and cfg["size"] == 437971872
    assert cfg["model_type"] == "mpnet" and len(cfg["packages"]) == 5
    long = " ".join(["the petals are deep violet and curl backwards around orange anthers."] * 40)
    assert len(mpnet._prepare([long])[0][0]) == 384  # truncated where sentence-transformers truncates
    assert mpnet._compiled.experimental_get_tracing_count() == 1
