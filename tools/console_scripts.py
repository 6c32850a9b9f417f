"""The installed commands (pyproject.toml [project.scripts]): the three top-level CLIs under t2i-* names.

    t2i-precompute --data data/synthetic-flowers --encoder minilm --out cache/synthetic-flowers-minilm.h5
    t2i-train --embeddings cache/synthetic-flowers-minilm.h5 --steps 5000
    t2i-generate --run runs/00001-synthetic-flowers-minilm --out out/mine --text "a red flower with a black center"

Each is `python <script>.py` with the same options, through run_cli (a UserError is one line, exit 1).
"""
from __future__ import annotations

from tools.errors import run_cli


def precompute() -> None:
    """t2i-precompute = python precompute_embeddings.py"""
    import precompute_embeddings

    run_cli(precompute_embeddings.main)


def train() -> None:
    """t2i-train = python train_gan.py"""
    import train_gan

    run_cli(train_gan.main)


def generate() -> None:
    """t2i-generate = python generate.py"""
    import generate as generate_cli

    run_cli(generate_cli.main)
