"""Default cache file names: `cache/<dataset name>-<encoder slug>.h5`, so a different encoder never
overwrites another's cache.

    encoder_slug("hf:bert-base-uncased")           -> "hf-bert-base-uncased"
    encoder_slug("tfidf?max_tokens=8192")          -> "tfidf-max_tokens-8192"
    encoder_slug("glove:/data/glove.6B.300d.txt")  -> "glove-glove.6B.300d.txt-1a2b3c4d"  (basename + path hash)
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / "cache"
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")


def _is_path(arg: str) -> bool:
    return arg.startswith(("/", "./", "../", "~", "\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", arg)) \
        or Path(arg).expanduser().exists()


def _argument_slug(arg: str) -> str:
    """Hub names are kept readable; paths and URLs become their last part(s) + a short hash of the whole."""
    if _URL.match(arg):
        tail = [p for p in re.split(r"[/?#]", _URL.sub("", arg)) if p][1:][-2:]  # drop the host
        return _safe("-".join(tail)) + "-" + hashlib.sha256(arg.encode()).hexdigest()[:8]
    if _is_path(arg):
        full = str(Path(arg).expanduser().resolve())
        return _safe(Path(full).name) + "-" + hashlib.sha256(full.encode()).hexdigest()[:8]
    return _safe(arg)


def encoder_slug(spec: str) -> str:
    """A file-name-safe, readable version of an encoder spec (see the module docstring)."""
    from embeddings.common import parse_spec  # light: no TF / transformers

    family, arg, options = parse_spec(spec)
    parts = [_safe(family)]
    if arg:
        parts += [_argument_slug(a) for a in arg.split(",")]  # tfhub-bert:<preprocess>,<encoder>
    parts += [_safe(f"{k}-{v}") for k, v in sorted(options.items())]
    return "-".join(p for p in parts if p) or "encoder"


def default_cache_path(dataset_name: str, encoder_spec: str, directory: str | Path = DEFAULT_CACHE_DIR) -> Path:
    """Where precompute_embeddings.py writes (and train_gan.py can look for) a dataset's cache."""
    return Path(directory) / f"{_safe(dataset_name) or 'dataset'}-{encoder_slug(encoder_spec)}.h5"
