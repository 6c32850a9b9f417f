"""The resolved training config: every option with its default, presets, and all option checks in one place.

Precedence: field defaults (the default run's recipe: dfgan's) < preset (cpu | gpu) < the arch's preset
(gan/archs.py) < explicit options. `config.json` in a run folder is `GanConfig.to_dict()`: `config_version`, the
options at top level plus two recorded sections, "cache" (what the run was trained on: encoder spec and config,
dim, fingerprint, ...) and "run" (folder, device, versions, ...). Older versions are migrated when read
(gan/config_versions.py). Unknown keys are errors everywhere: in overrides, `--set KEY=VALUE` and config.json.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from gan.archs import ARCHS, check_image_size, check_own_options, get_arch
from tools.errors import UserError

CONFIG_VERSION = 2  # config.json's layout; 1: before the key existed (gan/config_versions.py migrates)
LOSSES = ("bce", "hinge", "magp")
UPSAMPLING = ("nearest", "bilinear")  # dfgan's ×2 resizes (keras UpSampling2D interpolation)
# dfgan D's 4×4 projection term: one W for the pooled features, or one per position
PROJECTIONS = ("pooled", "spatial")
IMAGE_SIZES = (64, 128, 256)  # --image-size choices; each arch says which it builds (Architecture.image_sizes)
MAX_CA_NOISE = 2.0  # largest sampling CA noise scale (ca_noise); 1 is the noise G trained with
PRESETS: dict[str, dict[str, Any]] = {
    # 2 CPU cores: ~0.3 s/step at ngf=ndf=32, batch 64 (263 ms: bench/results/ablation-2026-12-02.md); 5000 steps ≈ 30 min
    "cpu": dict(ngf=32, ndf=32, batch_size=64, steps=5000, log_every=50, sample_every=500, ckpt_every=500),
    "gpu": dict(ngf=64, ndf=64, batch_size=128, steps=20000, log_every=100, sample_every=1000, ckpt_every=1000),
}
# what a preset changes at a larger --image-size. gpu at 256 px (dfgan): 1.39 TFLOP/step at batch 128 (2.5x the
# 64 px step, gan/flops.py) and ~6.3 GB of layer outputs in float16 before the backward passes keep theirs, so batch
# 64 (~3.2 GB) fits a 16-24 GB card (an estimate from the layer shapes, not measured on a GPU here; docs/training.md)
SIZE_PRESETS: dict[tuple[str, str], dict[str, Any]] = {  # (preset, image size as given)
    ("gpu", "256"): dict(batch_size=64),
}


@dataclass
class CacheInfo:
    """What the run was trained on, read from the embedding cache's attributes (recorded, not options)."""

    path: str = ""  # absolute path of the embedding cache (.h5)
    encoder: str = ""  # encoder spec, e.g. "minilm"
    encoder_config: dict = field(default_factory=dict)  # the encoder's full config (rebuilds it for new text)
    dim: int = 0  # text vector dimension D
    fingerprint: str = ""  # dataset + encoder fingerprint of the cache
    dataset_name: str = ""  # e.g. "synthetic-flowers"
    num_images: int = 0  # images in the cache (before masking bad ones)
    num_captions: int = 0  # caption rows
    token_length: int = 0  # L of the cache's token states (built with --tokens; 0: none)
    labels: str = ""  # where the cache's class labels came from ("class", "petal_color,petal_shape"); "": none
    num_classes: int = 0  # K classes of a labelled cache (0: no labels)


@dataclass
class GanConfig:
    """Every option with its default; the defaults are the default run's recipe, DF-GAN's (Tao et al. 2022): hinge +
    MA-GP, Adam (0.0, 0.9), TTUR 1e-4 / 4e-4, plus EMA G, DiffAugment and hard mismatched pairs (without them FID
    117 -> 147, 209 and 220 at 2 000 steps: bench/results/ablation-2026-12-02.md); a weaker CA KL term and D's 4×4
    projection per position (bench/results/count-2026-12-03.md: centre 0.80 -> 0.96 at 5 000 steps, before the CA
    fix); with CA fixed KL 0.5 keeps diversity 0.48x where 0.1 gives 0.38x (ca-probe-2026-12-05.md); the batch
    contrastive term takes the petal count 0.44 -> 0.77 and FID 100 -> 40 at 5 000 steps, and sampling with CA's
    full noise (ca_noise 1) keeps diversity at 0.55x (bench/results/contrastive-2026-12-05.md)."""

    # data
    embeddings: str = ""  # embedding cache .h5 (images are found from its images/path)
    caption_mean_k: int = 1  # condition on the mean of k captions of the image (1 = one random caption)
    augment: bool = False  # light augmentation of real images: horizontal flip + small shifts
    shift_px: int = 4  # largest shift in pixels when augment is on
    hard_negatives: float = 0.5  # share of mismatched captions mined near the real one (0: all random)
    hard_neg_low: float = 0.80  # mined mismatched captions have cosine in [low, high] with the real caption
    hard_neg_high: float = 0.95  # (the upper bound keeps out captions that describe the image equally well)
    hard_neg_pool: int = 4096  # random caption pool searched per step
    exchanged_cache: str = ""  # cache of the images' captions with two colour words exchanged (gan/exchanged.py;
    #                            tools/exchanged_captions.py), used as mismatched captions; "": off
    exchanged_share: float = 0.25  # share of mismatched captions that become exchanged ones (images that have one)
    exchanged_g: float = 0.0  # weight of G's binding term: softplus(D(fake, exchanged caption) - D(fake, caption)),
    #                           a batch mean over the rows whose mismatched caption is an exchanged one; 0: off
    exchanged_d: float = 0.0  # weight of D's binding term: softplus(D(real, exchanged caption) - D(real, caption)),
    #                           the same ranking on the real images, which widens D's binding gap; 0: off
    word_context: int = 0  # dfgan-words: each word's key in G's attention and its embedding in D's word-region term
    #                        also read its neighbours' states, this many on either side (gan/words.py ContextDense); 0: off
    #                        (dfgan-words' preset: 1)
    # model
    image_size: int = 64  # image side in px: 64 | 128 | 256 (the archs that support it: gan/archs.py image_sizes)
    arch: str = "dfgan"  # dfgan (fused G, multi-scale D) | stackgan (StackGAN-I) | ta80 (course baseline, raw captions)
    #                      | dfgan-words (dfgan + word attention in G and a word-region term in D; a --tokens cache)
    ngf: int = 32  # generator width (channels at 64 px = ngf/2, at 4 px = 8·ngf)
    ndf: int = 32  # discriminator width (channels at 4 px = 8·ndf)
    z_dim: int = 100  # noise dimension
    c_dim: int = 128  # conditioning-augmentation dimension
    upsample: str = "nearest"  # dfgan: how G's blocks double the resolution: nearest | bilinear
    proj4: str = "spatial"  # dfgan D: the 4×4 projection term per position (weights per position), or pooled
    d_norm: str = "auto"  # stackgan D's normalisation: auto (none for magp, else batch) | batch | none
    ta80_embed_dim: int = 256  # ta80: word embedding size
    ta80_rnn_dim: int = 128  # ta80: GRU size (= text vector size)
    ta80_dense_dim: int = 128  # ta80: hidden dense size in G and D
    ema: bool = True  # keep an EMA of G's weights; samples, generate.py and evaluation use it
    ema_decay: float = 0.999  # EMA decay (with a (1 + n) / (10 + n) warm-up)
    diffaug: str = "translation,cutout"  # DiffAugment policy before D: "" | translation | cutout | translation,cutout
    diffaug_translation: float = 0.125  # largest shift, as a share of the image size
    diffaug_cutout: float = 0.25  # side of the cut-out square, as a share of the image size
    # loss and optimiser
    loss: str = "magp"  # bce | hinge | magp (hinge + DF-GAN matching-aware gradient penalty)
    kl_weight: float = 0.5  # weight of the CA KL term in the generator loss (StackGAN: 2)
    ca_noise: float = 1.0  # sampling only: c = μ + ca_noise·σ·ε(z) in sample grids, generate.py, evaluation (0: μ)
    contrastive: float = 1.0  # dfgan: weight λ of the batch contrastive term on D's projection scores (own caption
    # against the batch's others; D on real images, G on its fakes; gan/dfgan.py pair_scores); 0: off
    aux_class: float = 0.0  # weight W of TAC-GAN's auxiliary classifier (gan/aux_head.py): D classifies real images,
    # G is rewarded when D finds its fakes' caption class; needs a labelled cache (precompute --labels); 0: off
    magp_weight: float = 2.0  # MA-GP k (DF-GAN: 2)
    magp_power: float = 6.0  # MA-GP p (DF-GAN: 6)
    magp_every: int = 1  # lazy MA-GP: the penalty every k steps with weight ×k (1: every step)
    lr_g: float = 1e-4  # generator Adam learning rate
    lr_d: float = 4e-4  # discriminator Adam learning rate
    beta1: float = 0.0  # Adam β1
    beta2: float = 0.9  # Adam β2
    # schedule
    preset: str = "auto"  # auto (gpu if a GPU is visible, else cpu) | cpu | gpu
    batch_size: int = 64  # images per step
    steps: int = 0  # total steps (0: from epochs, else minutes only, else the preset's)
    epochs: float = 0.0  # total epochs over the valid images (0: unused)
    minutes: float = 0.0  # wall-clock budget for this invocation (0: none)
    log_every: int = 50  # steps between progress lines / TensorBoard scalars
    sample_every: int = 500  # steps between sample grids
    ckpt_every: int = 500  # steps between checkpoints
    keep_checkpoints: int = 3  # checkpoints kept (last N)
    num_sample_captions: int = 8  # rows of the sample grid (fixed captions)
    num_sample_z: int = 8  # columns of the sample grid (fixed z)
    # reproducibility and hardware
    seed: int = 0  # seeds weights, data order, noise
    deterministic: bool = False  # tf op determinism (bit-identical reruns, slower)
    mixed_precision: str = "auto"  # auto (float16 on a GPU, bf16 on a CPU with AVX512-BF16/AMX, else off) | on (float16) | bf16 | off
    run_dir: str = "runs"  # parent folder of numbered run folders
    strategy: str = "auto"  # auto (multiworker if TF_CONFIG, mirrored on 2+ GPUs, else none) | none | mirrored | multiworker
    # recorded sections (not options)
    cache: CacheInfo = field(default_factory=CacheInfo)
    run: dict = field(default_factory=dict)  # folder, device, mixed precision in effect, versions, created

    # ------------------------------------------------------------------------------------------------
    @staticmethod
    def option_names() -> list[str]:
        return [f.name for f in dataclasses.fields(GanConfig) if f.name not in ("cache", "run")]

    def to_dict(self) -> dict:
        return {"config_version": CONFIG_VERSION, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "GanConfig":
        d = dict(d)
        if d.pop("config_version", CONFIG_VERSION) != CONFIG_VERSION:  # run folders: gan.config_versions.migrate
            raise UserError(f"{where}: config_version must be {CONFIG_VERSION} here; read run folders with "
                            "gan.run_dir.load_config, which migrates older versions")
        _check_keys(d, [f.name for f in dataclasses.fields(cls)], where)
        cache = d.pop("cache", {}) or {}
        _check_keys(cache, [f.name for f in dataclasses.fields(CacheInfo)], f"{where} section 'cache'")
        return cls(**d, cache=CacheInfo(**cache))

    def with_overrides(self, overrides: dict, where: str = "option") -> "GanConfig":
        _check_keys(overrides, self.option_names(), where)
        return dataclasses.replace(self, **{k: _coerce(k, v, getattr(self, k)) for k, v in overrides.items()})


def _check_keys(d: dict, allowed: list[str], where: str) -> None:
    from gan.config_versions import REMOVED_IN_2

    for name in sorted(set(d) & set(REMOVED_IN_2) - set(allowed)):
        raise UserError(f"{where} {name}: removed after commit {REMOVED_IN_2[name][1]} (measured as no gain: "
                        f"bench/results/REMOVED_OPTIONS.md); drop it")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise UserError(f"unknown {where} key(s) {', '.join(unknown)}; valid keys: {', '.join(allowed)}")


def _coerce(name: str, value: Any, current: Any) -> Any:
    """Strings from `--set KEY=VALUE` become the field's type; other values pass through."""
    if not isinstance(value, str) or isinstance(current, str):
        return value
    try:
        if isinstance(current, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        return type(current)(value)
    except ValueError:
        raise UserError(f"{name}={value!r}: expected a {type(current).__name__}") from None


def parse_set(items: list[str]) -> dict:
    """['kl_weight=1', 'augment=true'] -> {'kl_weight': '1', 'augment': 'true'} (typed later)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set kl_weight=1.0")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def resolve(overrides: dict, gpu_available: bool) -> GanConfig:
    """Defaults < preset < overrides, then validate. `overrides` holds only options the user gave."""
    preset = overrides.get("preset", "auto")
    if preset not in ("auto", *PRESETS):
        raise UserError(f"--preset {preset!r}: choose one of auto, {', '.join(PRESETS)}")
    if preset == "auto":
        preset = "gpu" if gpu_available else "cpu"
    preset_values = {k: v for k, v in PRESETS[preset].items() if k != "steps"}
    preset_values.update(SIZE_PRESETS.get((preset, str(overrides.get("image_size", GanConfig.image_size))), {}))
    arch = overrides.get("arch", GanConfig.arch)
    arch_values = get_arch(arch).preset  # an unknown arch: one line listing the choices
    cfg = GanConfig().with_overrides({**preset_values, **arch_values, **overrides, "preset": preset})
    if not (cfg.steps or cfg.epochs or cfg.minutes):
        cfg = dataclasses.replace(cfg, steps=PRESETS[preset]["steps"])
    validate(cfg)
    return cfg


# options a resumed run may change (schedule, and learning rates to recover from a divergence);
# every other option must equal the run's
# which generator load_generator restores: auto (the EMA when the run kept one), ema, or raw (the trained G)
GENERATOR_WEIGHTS = ("auto", "ema", "raw")
RESUME_CHANGEABLE = ("steps", "epochs", "minutes", "log_every", "sample_every", "ckpt_every", "keep_checkpoints",
                     "embeddings", "run_dir", "lr_g", "lr_d", "strategy")


def resume_config(saved: GanConfig, overrides: dict, cache: CacheInfo, run_dir) -> GanConfig:
    """The run's own config with only schedule options changed; refuses a cache whose encoder, dim or
    fingerprint differs from the run's, and options that would change the model or the data."""
    for name in ("encoder", "dim", "fingerprint"):
        mine, theirs = getattr(saved.cache, name), getattr(cache, name)
        if mine != theirs:
            raise UserError(f"--resume {run_dir}: cache {name} differs: the run was trained with {name} {mine!r}, "
                            f"{cache.path} has {theirs!r}; resume with the run's cache (--embeddings "
                            f"{saved.cache.path}) or start a new run")
    _check_keys(overrides, GanConfig.option_names(), "option")
    for name, value in overrides.items():
        current = getattr(saved, name)
        if name not in RESUME_CHANGEABLE and _coerce(name, value, current) != current:
            raise UserError(f"--{name.replace('_', '-')} {value!r} differs from the resumed run's {current!r} "
                            f"({run_dir}/config.json); a resumed run keeps its options — drop it or start a new run")
    schedule = {}
    if "steps" in overrides:
        schedule["epochs"] = 0.0
    if "epochs" in overrides:
        schedule["steps"] = 0
    cfg = saved.with_overrides({**schedule, **{k: v for k, v in overrides.items() if k in RESUME_CHANGEABLE}})
    cfg = dataclasses.replace(cfg, cache=cache)
    validate(cfg)
    return cfg


def validate(cfg: GanConfig) -> None:
    """Every option check, each failure one UserError line naming the option, the value and what is allowed."""
    def choice(name, allowed):
        if getattr(cfg, name) not in allowed:
            raise UserError(f"--{name.replace('_', '-')} {getattr(cfg, name)!r}: choose one of {', '.join(allowed)}")

    def positive(name, strict=True):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (v <= 0 if strict else v < 0):
            raise UserError(f"--{name.replace('_', '-')} {v!r}: must be a number {'> 0' if strict else '>= 0'}")

    choice("arch", ARCHS)
    if cfg.image_size not in IMAGE_SIZES:
        raise UserError(f"--image-size {cfg.image_size!r}: choose one of {', '.join(map(str, IMAGE_SIZES))}")
    choice("loss", LOSSES)
    choice("preset", tuple(PRESETS))
    choice("d_norm", ("auto", "batch", "none"))
    for name, allowed in (("upsample", UPSAMPLING), ("proj4", PROJECTIONS)):  # dfgan's choices
        v = getattr(cfg, name)
        if v not in allowed:
            raise UserError(f"--set {name}={v!r}: choose one of {', '.join(allowed)}")
    check_own_options(cfg)  # another arch's option set on this one
    check_image_size(cfg)  # a size this arch does not build
    choice("mixed_precision", ("auto", "on", "bf16", "off"))
    choice("strategy", ("auto", "none", "mirrored", "multiworker"))
    for name in ("batch_size", "ngf", "ndf", "z_dim", "c_dim", "caption_mean_k", "log_every", "sample_every",
                 "ckpt_every", "keep_checkpoints", "num_sample_captions", "num_sample_z", "lr_g", "lr_d",
                 "ta80_embed_dim", "ta80_rnn_dim", "ta80_dense_dim", "magp_power", "magp_every", "hard_neg_pool"):
        positive(name)
    for name in ("steps", "epochs", "minutes", "kl_weight", "magp_weight", "shift_px", "seed", "contrastive"):
        positive(name, strict=False)
    for name in ("batch_size", "ngf", "ndf", "z_dim", "c_dim", "caption_mean_k", "steps", "seed", "shift_px",
                 "magp_every", "hard_neg_pool"):
        if not isinstance(getattr(cfg, name), int) or isinstance(getattr(cfg, name), bool):
            raise UserError(f"--{name.replace('_', '-')} {getattr(cfg, name)!r}: must be an integer")
    if cfg.steps and cfg.epochs:
        raise UserError(f"--steps {cfg.steps} and --epochs {cfg.epochs:g}: give one of them (--minutes may be added)")
    if not 0 <= cfg.beta1 < 1 or not 0 <= cfg.beta2 < 1:
        raise UserError(f"--beta1 {cfg.beta1} / --beta2 {cfg.beta2}: Adam betas must be in [0, 1)")
    if cfg.batch_size < 2:
        raise UserError(f"--batch-size {cfg.batch_size}: must be >= 2 (batch statistics, mismatched pairs)")
    if cfg.shift_px >= 16:
        raise UserError(f"--set shift_px={cfg.shift_px}: must be < 16 (a light shift of a 64 px image)")
    _validate_recipe(cfg)
    check_ca_noise(cfg.ca_noise, "--set ca_noise=")
    get_arch(cfg.arch).check(cfg)
    from gan.aux_head import check_aux

    check_aux(cfg, get_arch(cfg.arch).reads)
    if cfg.exchanged_cache and get_arch(cfg.arch).reads != "vectors":
        raise UserError(f"--set exchanged_cache: --arch {cfg.arch} reads raw captions; exchanged-colour negatives are for "
                        f"the archs that read cached vectors (dfgan, dfgan-words, stackgan)")
    for name in ("exchanged_g", "exchanged_d"):
        weight = getattr(cfg, name)
        if weight < 0 or (weight and not cfg.exchanged_cache):
            raise UserError(f"--set {name}={weight}: must be >= 0, and needs --set exchanged_cache=FILE (the exchanged "
                            f"captions the images must not match)")
    if not cfg.embeddings:
        raise UserError("--embeddings is required: the embedding cache .h5 written by precompute_embeddings.py")


def check_ca_noise(value: float, flag: str = "--ca-noise ") -> None:
    """The sampling CA noise scale must be in [0, MAX_CA_NOISE]; flag: how the user gave it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_CA_NOISE:
        raise UserError(f"{flag}{value}: must be in [0, {MAX_CA_NOISE:g}] (0: CA's mean; 1: CA's training noise)")


def _validate_recipe(cfg: GanConfig) -> None:
    """EMA, DiffAugment and hard-negative options."""
    from gan.diffaugment import parse_policy

    try:
        parse_policy(cfg.diffaug)
    except ValueError as e:
        raise UserError(f"--set diffaug={cfg.diffaug!r}: {e}") from None
    for name in ("diffaug_translation", "diffaug_cutout", "hard_negatives", "exchanged_share"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise UserError(f"--set {name}={getattr(cfg, name)}: must be in [0, 1]")
    if not 0 <= cfg.ema_decay < 1:
        raise UserError(f"--set ema_decay={cfg.ema_decay}: must be in [0, 1)")
    if not -1 <= cfg.hard_neg_low < cfg.hard_neg_high <= 1:
        raise UserError(f"--set hard_neg_low={cfg.hard_neg_low} hard_neg_high={cfg.hard_neg_high}: need "
                        f"-1 <= low < high <= 1 (a cosine band)")

