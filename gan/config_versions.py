"""config.json versions and their migration to the current one (gan.config.CONFIG_VERSION), applied on reading.

    version 1  no `config_version` key (runs written up to 2026-12-05). GanConfig's defaults were StackGAN's (the
               dfgan recipe came from a per-arch preset); the options hard_neg_margin, mode_seeking, proj8 existed.
    version 2  `config_version: 2`; the defaults are dfgan's recipe; those three options removed
               (bench/results/REMOVED_OPTIONS.md says what measured each).

Keys added later with a default that is what older runs ran with need no new version: `image_size` (64; added
2026-12-06 with --image-size) is missing from the v1 and v2 fixtures, which load, resume and generate at 64 px.
A run folder of any version loads, resumes and generates: tests/test_config_versions.py holds a fixture of each.
Resuming rewrites config.json at the current version.
"""
from __future__ import annotations

from typing import Any

from tools.errors import UserError

# version-1 options that are gone: the value that meant off, and the last commit that had the option
REMOVED_IN_2: dict[str, tuple[Any, str]] = {
    "hard_neg_margin": (0.0, "0fa487c"),
    "mode_seeking": (0.0, "0fa487c"),
    "proj8": ("pooled", "0fa487c"),
}
# what a version-1 run without the key ran with (an option added after it started, whose default then was
# StackGAN's or off); keys not listed have the same default in both versions
V1_DEFAULTS: dict[str, Any] = dict(loss="bce", lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999, ema=False, diffaug="",
                                   hard_negatives=0.0, kl_weight=2.0, proj4="pooled", contrastive=0.0, ca_noise=0.0)


def migrate(data: dict, where: str) -> dict:
    """A config.json dict of any version -> the current version's dict (a copy); one-line UserError when the run
    used a removed option or comes from newer code."""
    from gan.config import CONFIG_VERSION

    version = data.get("config_version", 1)
    if not isinstance(version, int) or not 1 <= version <= CONFIG_VERSION:
        raise UserError(f"{where}: config_version {version!r} is not one this code reads (1 to {CONFIG_VERSION}); "
                        "update the code (git pull) to read this run")
    data = dict(data)
    if version == 1:
        data = v1_to_v2(data, where)
    return data


def v1_to_v2(data: dict, where: str) -> dict:
    """Drop the removed options (refused when the run used them), fill keys the run predates with the values
    it ran with, and stamp version 2."""
    for name, (off, commit) in REMOVED_IN_2.items():
        value = data.pop(name, off)
        if value != off:
            raise UserError(f"{where}: the run used {name}={value}, an option removed after commit {commit} "
                            f"(bench/results/REMOVED_OPTIONS.md); check out {commit} to resume or sample this run")
    for name, value in V1_DEFAULTS.items():
        data.setdefault(name, value)
    data["config_version"] = 2
    return data
