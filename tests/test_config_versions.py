"""config.json versions: GanConfig's defaults are the default run's recipe, every arch resolves to the options it
resolved to before the defaults moved (golden dicts), version-1 configs migrate, and a run folder of every version
ever written (tests/data/runs/) loads, resumes one step and generates."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gan.config import CONFIG_VERSION, GanConfig, resolve
from gan.config_versions import REMOVED_IN_2, migrate
from tools.errors import UserError

RUNS = Path(__file__).parent / "data" / "runs"
# resolve({"arch": A, "preset": "cpu", "embeddings": "x.h5"}) as computed by the code before the defaults moved
# (commit 3780f5e, removed options dropped: each was at its off value; options added since at theirs: aux_class,
# exchanged_cache — exchanged_share, exchanged_g and exchanged_d only matter with a cache)
DFGAN_CPU = {
    "embeddings": "x.h5", "caption_mean_k": 1, "augment": False, "shift_px": 4, "hard_negatives": 0.5,
    "hard_neg_low": 0.8, "hard_neg_high": 0.95, "hard_neg_pool": 4096, "exchanged_cache": "", "exchanged_share": 0.25,
    "exchanged_g": 0.0, "exchanged_d": 0.0, "word_context": 0, "image_size": 64, "arch": "dfgan",
    "ngf": 32, "ndf": 32,
    "z_dim": 100, "c_dim": 128, "upsample": "nearest", "proj4": "spatial", "d_norm": "auto", "ta80_embed_dim": 256,
    "ta80_rnn_dim": 128, "ta80_dense_dim": 128, "ema": True, "ema_decay": 0.999, "diffaug": "translation,cutout",
    "diffaug_translation": 0.125, "diffaug_cutout": 0.25, "loss": "magp", "kl_weight": 0.5, "ca_noise": 1.0,
    "contrastive": 1.0, "aux_class": 0.0, "magp_weight": 2.0, "magp_power": 6.0, "magp_every": 1, "lr_g": 0.0001, "lr_d": 0.0004,
    "beta1": 0.0, "beta2": 0.9, "preset": "cpu", "batch_size": 64, "steps": 5000, "epochs": 0.0, "minutes": 0.0,
    "log_every": 50, "sample_every": 500, "ckpt_every": 500, "keep_checkpoints": 3, "num_sample_captions": 8,
    "num_sample_z": 8, "seed": 0, "deterministic": False, "mixed_precision": "auto", "run_dir": "runs",
    "strategy": "auto"}
STACKGAN_RECIPE = {"hard_negatives": 0.0, "proj4": "pooled", "ema": False, "diffaug": "", "loss": "bce",
                   "kl_weight": 2.0, "ca_noise": 0.0, "contrastive": 0.0, "lr_g": 0.0002, "lr_d": 0.0002,
                   "beta1": 0.5, "beta2": 0.999}
GOLDEN_CPU = {"dfgan": DFGAN_CPU, "stackgan": {**DFGAN_CPU, **STACKGAN_RECIPE, "arch": "stackgan"},
              "ta80": {**DFGAN_CPU, **STACKGAN_RECIPE, "arch": "ta80"}}
GPU = {"ngf": 64, "ndf": 64, "preset": "gpu", "batch_size": 128, "steps": 20000, "log_every": 100,
       "sample_every": 1000, "ckpt_every": 1000}


def _options(cfg: GanConfig) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k not in ("cache", "run", "config_version")}


@pytest.mark.parametrize("arch", sorted(GOLDEN_CPU))
def test_every_arch_resolves_to_the_options_it_had_before_the_defaults_moved(arch):
    assert _options(resolve({"arch": arch, "preset": "cpu", "embeddings": "x.h5"}, False)) == GOLDEN_CPU[arch]
    assert _options(resolve({"arch": arch, "preset": "gpu", "embeddings": "x.h5"}, False)) == {**GOLDEN_CPU[arch], **GPU}


def test_the_dataclass_defaults_are_the_default_run():
    default = _options(GanConfig())
    # what only the preset (cpu | gpu) and the command line decide
    assert {k: v for k, v in default.items() if DFGAN_CPU[k] != v} == {"embeddings": "", "preset": "auto", "steps": 0}
    assert GanConfig().to_dict()["config_version"] == CONFIG_VERSION == 2


def _v1_dict() -> dict:
    return json.loads((RUNS / "v1-dfgan" / "config.json").read_text())


def test_version_1_migrates_fills_what_it_predates_and_drops_removed_options_at_their_off_value():
    old = _v1_dict()
    assert "config_version" not in old and {"hard_neg_margin", "mode_seeking", "proj8"} <= set(old)
    new = migrate(old, "v1")
    assert new["config_version"] == 2 and not set(REMOVED_IN_2) & set(new)
    assert {k: new[k] for k in new if k != "config_version"} == {k: v for k, v in old.items() if k not in REMOVED_IN_2}
    # a version-1 run from before contrastive / ca_noise / proj4 existed ran with them off (StackGAN's defaults)
    for name in ("contrastive", "ca_noise", "proj4", "ema", "loss"):
        del old[name]
    filled = GanConfig.from_dict(migrate(old, "v1"))
    assert (filled.contrastive, filled.ca_noise, filled.proj4, filled.ema, filled.loss) == (0.0, 0.0, "pooled",
                                                                                              False, "bce")


@pytest.mark.parametrize("name,value", [("mode_seeking", 0.1), ("hard_neg_margin", 0.02), ("proj8", "spatial")])
def test_a_version_1_run_that_used_a_removed_option_is_refused_in_one_line(name, value):
    old = {**_v1_dict(), name: value}
    with pytest.raises(UserError, match=rf"run/config.json: the run used {name}={value}, an option removed after "
                                        rf"commit {REMOVED_IN_2[name][1]} .*check out {REMOVED_IN_2[name][1]}") as e:
        migrate(old, "run/config.json")
    assert "\n" not in str(e.value)


def test_a_newer_version_is_refused():
    with pytest.raises(UserError, match=r"config_version 3 is not one this code reads \(1 to 2\); update the code"):
        migrate({**_v1_dict(), "config_version": 3}, "x")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The fixtures' cache rebuilt (same fingerprint: it depends on the images and captions, not on paths)."""
    from test_gan_fixtures import make_cache

    return make_cache(tmp_path_factory.mktemp("versions"), n_images=6, dim=8)


@pytest.mark.parametrize("version", [1, 2])
def test_a_run_folder_of_every_version_loads_resumes_one_step_and_generates(version, cache, tmp_path):
    import train_gan
    from gan.inference import load_generator
    from gan.run_dir import load_config

    run = tmp_path / f"v{version}"
    shutil.copytree(RUNS / f"v{version}-dfgan", run)
    assert json.loads((run / "config.json").read_text()).get("config_version", 1) == version
    cfg = load_config(run)
    assert (cfg.arch, cfg.ngf, cfg.proj4, cfg.ema, cfg.contrastive, cfg.cache.dim) == ("dfgan", 1, "spatial", True,
                                                                                     1.0, 8)
    assert "image_size" not in json.loads((run / "config.json").read_text()) and cfg.image_size == 64
    gen, _ = load_generator(run)
    vectors = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    first = gen(vectors, seed=0)
    assert gen.step == 1 and first.shape == (2, 64, 64, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, gen(vectors, seed=0))
    assert train_gan.main(["--resume", str(run), "--embeddings", str(cache), "--steps", "2"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["config_version"] == CONFIG_VERSION and not set(REMOVED_IN_2) & set(saved)
    assert saved["image_size"] == 64  # resuming writes the key the run predates, with the size it trained at
    assert "ckpt-2" in (run / "checkpoints" / "checkpoint").read_text()
    again, cfg2 = load_generator(run)
    assert again.step == 2 and _options(cfg2) == {**_options(cfg), "embeddings": str(cache), "steps": 2}
    assert np.abs(again(vectors, seed=0).astype(int) - first.astype(int)).max() > 0  # the step moved G
