"""The training loop around GanTrainer in phases: prepare the run, build the trainer, restore, then step and
call the hooks (gan/hooks.py: progress line + TensorBoard, checkpoint + NaN guard, sample grids).

    from gan.loop import train
    result = train(cfg)                         # cfg from gan.config.resolve(...); see train_gan.py

Everything that is not a tensor op lives here or in the hooks, outside `train_step`: PNG grids, TensorBoard, the
log line `step 1200/5000 | d 0.61 | g 2.31 | kl 0.04 | 85 ms/step | ETA 6m12s`, and the guard that stops on a
non-finite loss without ever writing a checkpoint from non-finite weights.
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from gan import run_dir as R
from gan import strategy as S
from gan.archs import get_arch
from gan.config import GanConfig
from gan.aux_head import require_labels
from gan.data import BatchSampler, TrainingData, make_dataset, read_cache
from gan.hooks import CheckpointHook, ProgressHook, SampleHook, diverged
from gan.run_dir import TrainingDiverged  # noqa: F401  (what train raises on a divergence; callers import it here)
from gan.image_cache import load_or_build_image_cache
from gan.trainer import GanTrainer


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # steps done in total
    checkpoint: str | None  # latest checkpoint path
    losses: dict  # last logged {"d", "g", "kl"}


def setup_runtime(cfg: GanConfig) -> dict:
    """Seeds, op determinism, mixed precision. Returns the "run" facts recorded in config.json."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:  # take GPU memory as needed, not all of it up front (a shared or evaluating GPU)
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by the caller: keep its setting
            pass
    policy = compute_policy(cfg.mixed_precision, bool(gpus))
    keras.mixed_precision.set_global_policy(policy)
    mixed = policy != "float32"
    keras.utils.set_random_seed(cfg.seed)  # weight initialisers (python, numpy and TF seeds)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    device = "CPU"
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = f"GPU {details.get('device_name', gpus[0].name)}"
    return dict(device=device, mixed_precision=mixed, policy=policy, tensorflow=tf.__version__, keras=keras.__version__,
                python=platform.python_version(), numpy=np.__version__)


def cpu_has_bf16() -> bool:
    """Whether bfloat16 runs natively here: a CPU with AVX512-BF16 or AMX-BF16 and TF's oneDNN kernels on. There a
    dfgan step takes 0.74× the float32 one (bench/train_step.py, idle); elsewhere (no such CPU, or TF_ENABLE_ONEDNN_OPTS=0,
    as the tests marked onednn_off set) bf16 is emulated and far slower than float32."""
    from embeddings.bert_forward import onednn_enabled

    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: stay in float32
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and onednn_enabled()


def compute_policy(option: str, gpu: bool) -> str:
    """The Keras dtype policy for --mixed-precision: on = mixed_float16 (loss-scaled), bf16 = mixed_bfloat16
    (float32 weights, bf16 compute, no loss scaling needed), off = float32; auto picks float16 on a GPU and bf16 on
    a CPU that has it natively."""
    if option == "auto":
        option = "on" if gpu else ("bf16" if cpu_has_bf16() else "off")
    return {"on": "mixed_float16", "bf16": "mixed_bfloat16", "off": "float32"}[option]


def total_steps(cfg: GanConfig, num_images: int) -> int | None:
    if cfg.steps:
        return cfg.steps
    if cfg.epochs:
        return math.ceil(cfg.epochs * num_images / cfg.batch_size)
    return None  # --minutes only


@dataclass
class PreparedRun:
    """What prepare() sets up before any model exists."""

    cfg: GanConfig  # resolved, with the "cache" and "run" sections filled in (saved as config.json)
    data: TrainingData
    run_dir: Path
    log: R.RunLog
    images: np.ndarray  # uint8 [M, S, S, 3] image cache, S = cfg.image_size
    conditions: np.ndarray  # [N, D] float16 vectors, or [N, T] int32 word ids (archs that read raw text)
    sampler: BatchSampler
    total: int | None  # total steps (None: --minutes only)
    vocab: list = field(default_factory=list)  # the word vocabulary of an arch that reads raw text


def prepare(cfg: GanConfig, data: TrainingData | None, resume_dir, echo: bool) -> PreparedRun:
    """Run folder, log, images, sampler, conditions, config.json: everything before the models."""
    arch = get_arch(cfg.arch)
    data = data or read_cache(cfg.embeddings, need_vectors=arch.reads == "vectors")
    if not cfg.cache.path:  # library use: train(resolve(...)) without the CLI filling in the cache section
        cfg = replace(cfg, cache=data.info)
    require_labels(cfg, data.labels)  # --set aux_class on a cache without labels: one line
    run_facts = setup_runtime(cfg)
    dist = S.distribution(cfg)  # before TF's runtime starts: MultiWorkerMirroredStrategy must be made first
    run_facts.update(dist.facts())
    if not dist.is_chief:  # the chief writes the run folder; other workers write a private temporary one
        run_dir = dist.private_dir()
    else:
        run_dir = Path(resume_dir) if resume_dir else R.new_run_dir(cfg.run_dir, R.run_name(cfg))
    log = R.RunLog(run_dir / "train.log", echo)
    log(f"run folder: {run_dir}" + (" (resuming)" if resume_dir else ""))
    log(f"cache: {cfg.cache.path} | encoder {cfg.cache.encoder} | dim {cfg.cache.dim} | "
        f"{cfg.cache.num_captions} captions | {cfg.cache.num_images} images")
    images, valid, image_cache = load_or_build_image_cache(cfg.cache.path, data.image_paths, cfg.image_size, log,
                                                           progress=echo, dataset_name=cfg.cache.dataset_name)
    sampler = BatchSampler(data.caption_image, valid, cfg.batch_size, cfg.seed, cfg.caption_mean_k)
    conditions, vocab = arch.conditions(cfg, data, run_dir, bool(resume_dir))
    total = total_steps(cfg, sampler.num_images)
    cfg = replace(cfg, run=dict(cfg.run, dir=str(run_dir.resolve()), image_cache=str(image_cache),
                                usable_images=sampler.num_images, total_steps=total, vocab_size=len(vocab),
                                created=cfg.run.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                **run_facts))
    R.save_config(run_dir, cfg)
    log(f"device: {run_facts['device']} | precision {run_facts['policy']} | "
        f"arch {cfg.arch} | {cfg.image_size} px | loss {cfg.loss} | batch {cfg.batch_size} | ngf {cfg.ngf} | ndf {cfg.ndf} | "
        f"{sampler.num_images} usable images")
    log(dist.describe(cfg.batch_size))
    return PreparedRun(cfg, data, run_dir, log, images, conditions, sampler, total, vocab)


def train(cfg: GanConfig, data: TrainingData | None = None, resume_dir=None, *, echo: bool = True,
          after_step: Callable[[GanTrainer, int], None] | None = None) -> TrainResult:
    """Train (or resume) one run; `after_step(trainer, step)` is a test hook called after every step.
    The global Keras dtype policy the run sets is put back afterwards, so that what runs next in the process (an
    evaluation's classifier, the next arm of a comparison) is not built in bf16 or float16."""
    policy = keras.mixed_precision.global_policy()
    try:
        return _train(cfg, data, resume_dir, echo, after_step)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _train(cfg, data, resume_dir, echo, after_step) -> TrainResult:
    # phase 1: run folder, data, config.json
    run = prepare(cfg, data, resume_dir, echo)
    cfg, log = run.cfg, run.log
    # phase 2: models and optimizers (in the strategy's scope, replica-aware), restored from the last checkpoint
    dist = S.distribution(cfg)
    trainer = S.build_trainer(dist, cfg, len(run.vocab))
    checkpoints = CheckpointHook(cfg.ckpt_every, trainer, run.run_dir / R.CHECKPOINTS, cfg.keep_checkpoints, log)
    start = checkpoints.restore(S.resume_checkpoint(resume_dir), bool(resume_dir), cfg)
    # phase 3: the hooks, in the order they run at a step where several are due
    progress = ProgressHook(cfg.log_every, trainer.metrics, run.total, cfg.minutes, start, log)
    samples = SampleHook(cfg.sample_every, cfg, run.data, run.conditions, run.run_dir, trainer)
    # phase 4: the batches from `start` on, split over the replicas
    ds = make_dataset(run.images, run.conditions, run.sampler, start, run.total,
                      negatives=hard_negatives(cfg, run.data, run.sampler, log),
                      labels=run.data.labels if cfg.aux_class else None, exchanged=exchanged_negatives(cfg, run.data, log))
    ds = S.distribute(dist, ds)
    loop = Loop(trainer, S.step_function(trainer, dist), progress, checkpoints, samples, after_step, run.total)
    with tf.summary.create_file_writer(str(run.run_dir / "tb")).as_default():
        try:
            step, vals = loop.run(ds, start)
        except KeyboardInterrupt:
            checkpoints.save_on_interrupt(loop.step, start)
            log(f"interrupted at step {loop.step}; checkpoint {checkpoints.last_good}; continue with: "
                f"python train_gan.py --resume {run.run_dir}")
            raise
    log(f"done: step {step} | epoch {run.sampler.epoch_of(step):.2f} | checkpoint {checkpoints.last_good} | "
        f"samples {samples.dir} | continue with: python train_gan.py --resume {run.run_dir} --steps N")
    return TrainResult(run.run_dir, step, checkpoints.last_good, vals)


def train_run(cfg: GanConfig) -> Path:
    """Train one run from its resolved config in a fresh Keras session (the previous run's models gone); returns
    its run folder. What an encoder comparison (tools/evaluation/compare.Plan.train_run) trains each arm with."""
    keras.backend.clear_session()
    return Path(train(cfg).run_dir)


def hard_negatives(cfg: GanConfig, data: TrainingData, sampler: BatchSampler, log):
    """The mismatched-caption miner for cfg (None when hard_negatives is 0 or the arch reads raw captions)."""
    if not cfg.hard_negatives or get_arch(cfg.arch).reads != "vectors":
        return None
    from gan.negatives import HardNegatives

    log(f"hard negatives: {cfg.hard_negatives:.0%} of mismatched captions mined at cosine "
        f"{cfg.hard_neg_low:.2f}-{cfg.hard_neg_high:.2f} from a pool of {cfg.hard_neg_pool} per step")
    return HardNegatives(data.vectors, data.caption_image, sampler.images, cfg.hard_negatives, cfg.hard_neg_low,
                         cfg.hard_neg_high, cfg.hard_neg_pool, cfg.seed)


def exchanged_negatives(cfg: GanConfig, data: TrainingData, log):
    """The exchanged-colour mismatched captions of cfg (gan/exchanged.py), or None when exchanged_cache is unset."""
    if not cfg.exchanged_cache:
        return None
    from gan.exchanged import ExchangedNegatives

    ex = ExchangedNegatives(cfg.exchanged_cache, cfg.cache, data.image_ids, cfg.exchanged_share, cfg.seed,
                            tokens=bool(getattr(get_arch(cfg.arch), "words", False)))
    log(ex.describe())
    return ex


class Loop:
    """Steps over the dataset; at a step where a hook is due (or the last one) checks the losses, then runs the
    due hooks: progress line, checkpoint, sample grid."""

    def __init__(self, trainer, step_fn, progress, checkpoints, samples, after_step, total):
        self.trainer, self.step_fn, self.after_step, self.total = trainer, step_fn, after_step, total
        self.progress, self.checkpoints = progress, checkpoints
        self.hooks = [progress, checkpoints, samples]
        self.step = 0  # steps done, read after an interrupt

    def run(self, ds, start: int):
        """-> (last step, last losses {"d", "g", "kl"} read at a hook)."""
        self.step, vals, p = start, {}, self.progress
        p.start_clock(start)
        if self.total is not None and start >= self.total:
            p.log(f"already at step {start} of {self.total}: nothing to do (raise --steps to continue)")
        for batch in ds:
            self.step_fn(batch, self.trainer.penalty_due(self.step))
            self.step += 1
            step = self.step
            if self.after_step is not None:
                self.after_step(self.trainer, step)
            out_of_time = p.out_of_time()
            final = step == self.total or out_of_time
            due = [h for h in self.hooks if final or step % h.every == 0]
            if not due:
                continue
            vals = {m.name: float(m.result()) for m in self.trainer.metrics}
            if not all(math.isfinite(v) for v in vals.values()):
                diverged(p.log, vals, p.since, step, self.checkpoints.last_good)
            for hook in due:
                hook(step, vals, p.since)
            if p in due:
                p.restart(step)
            if out_of_time:
                p.log(f"time budget of {p.minutes:g} min reached at step {step}")
                break
        return self.step, vals
