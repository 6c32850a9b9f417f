"""The architecture registry: `--arch NAME` -> its module's `ARCH`, one object with the interface below.

    from gan.archs import get_arch
    arch = get_arch(cfg.arch)
    g, d_encoder, d_head, text_encoder = arch.build(cfg, vocab_size)

A new architecture is one module that defines `ARCH = MyArch()` (a subclass of `Architecture`) plus one line in
REGISTRY. Everything outside the registry and the architecture modules asks the object, never the name: what it
reads (cached vectors or raw text), whether it has conditioning augmentation, its preset, its own options and
checks, how training data and new text become conditions. Modules are imported on first use (they import keras).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tools.errors import UserError

REGISTRY = {  # --arch name -> module defining ARCH; the first is the default run's
    "dfgan": "gan.dfgan",
    "stackgan": "gan.stackgan",
    "ta80": "gan.ta80",
    "dfgan-words": "gan.words",
}
ARCHS = tuple(REGISTRY)


class Architecture:
    """What an architecture declares. Defaults describe a cached-vector architecture with CA and no options."""

    name: str = ""
    reads: str = "vectors"  # "vectors": the cache's text vectors; "texts": raw captions through its own encoder
    has_ca: bool = True  # G takes [text, z, eps] -> [image, μ, log σ²] (else [text, z] -> image)
    words: bool = False  # also reads each caption's token states (a cache built with --tokens): G and D take
    #                      [..., words [B, L, E], lengths [B]] after their usual inputs
    preset: dict[str, Any] = {}  # the recipe it trains with: applied after the cpu/gpu preset, before user options
    # options only this architecture has: name -> (the value that means off / the one way, what the others lack)
    own_options: dict[str, tuple[Any, str]] = {}
    run_suffix: str = ""  # appended to the run folder's name
    image_sizes: tuple[int, ...] = (64,)  # image sides (px) it builds; GanConfig.image_size must be one of them

    def build(self, cfg, vocab_size: int = 0, generator_only: bool = False):
        """(generator, d_encoder, d_head, text_encoder or None) under the global dtype policy; with
        generator_only just the generator (the EMA copy)."""
        raise NotImplementedError

    def d_text_scale(self, cfg) -> float:
        """Factor on the text vector D reads (dfgan: unit scale per dimension)."""
        return 1.0

    def check(self, cfg) -> None:
        """Its own refusals (one-line UserErrors), after the generic option checks."""

    def conditions(self, cfg, data, run_dir: Path, resuming: bool):
        """Training conditions per caption row and the vocabulary (saved in the run; [] when none):
        [N, D] float16 vectors for a cached-vector architecture."""
        return data.vectors, []

    def pair_scores(self, head, features, text, words=()):
        """D's score of every (image i, caption j) pair of a batch, [Bi, Bj] float32, for the batch contrastive
        term (GanConfig.contrastive); features: the D encoder's outputs; words: (states, lengths) when it reads them."""
        raise NotImplementedError(f"--arch {self.name} has no pair scores for the contrastive term")

    def sampling_vocab(self, run_dir: Path):
        """What sampling needs from the run folder to turn new text into conditions (None: nothing)."""
        return None

    def encode(self, texts: list[str], vocab):
        """New caption texts -> conditions (only for reads == "texts")."""
        raise NotImplementedError(f"--arch {self.name} reads cached vectors, not texts")


def get_arch(name: str) -> Architecture:
    """The ARCH object of `name`; an unknown name is a UserError listing the choices."""
    if name not in REGISTRY:
        raise UserError(f"--arch {name!r}: choose one of {', '.join(ARCHS)}")
    return importlib.import_module(REGISTRY[name]).ARCH


def check_image_size(cfg) -> None:
    """--image-size must be one the architecture builds: `--arch stackgan --image-size 128` fails in one line."""
    sizes = get_arch(cfg.arch).image_sizes
    if cfg.image_size not in sizes:
        others = [a for a in ARCHS if cfg.image_size in get_arch(a).image_sizes]
        raise UserError(f"--image-size {cfg.image_size}: --arch {cfg.arch} draws {', '.join(map(str, sizes))} px "
                        f"only; use --image-size {sizes[0]}" + (f" or --arch {others[0]}" if others else ""))


def check_own_options(cfg) -> None:
    """Options another architecture owns must keep their off value: `--arch stackgan --set proj4=spatial` fails."""
    mine = get_arch(cfg.arch).own_options
    for owner in ARCHS:
        if owner == cfg.arch:
            continue
        for name, (off, what) in get_arch(owner).own_options.items():
            value = getattr(cfg, name)
            if name not in mine and value != off:
                raise UserError(f"--set {name}={value}: only --arch {owner} has {what.format(arch=cfg.arch)}; "
                                f"drop it or use --arch {owner}")
