"""The training loop around GanTrainer: run folder, data, checkpoints, progress lines, samples, NaN guard.

    from gan.loop import train
    result = train(cfg)                         # cfg from gan.config.resolve(...); see train_gan.py

Everything that is not a tensor op lives here, outside `train_step`: PNG grids, TensorBoard, the log line
`step 1200/5000 | d 0.61 | g 2.31 | kl 0.04 | 85 ms/step | ETA 6m12s`, and the guard that stops on a
non-finite loss without ever writing a checkpoint from non-finite weights.
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from gan import run_dir as R
from gan import strategy as S
from gan.config import GanConfig
from gan.data import BatchSampler, TrainingData, make_dataset, read_cache, sample_captions
from gan.image_cache import load_or_build_image_cache
from gan.trainer import GanTrainer, checkpoint_objects
from tools.errors import UserError

IMAGE_SIZE = 64


class TrainingDiverged(UserError):
    """A non-finite loss or weight: training stopped, the last good checkpoint is kept."""


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
    as the test suite sets) bf16 is emulated and far slower than float32."""
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


def conditions_for(cfg: GanConfig, data: TrainingData, run_dir: Path, resuming: bool):
    """[N, D] float16 vectors, or for ta80 [N, T] int32 word ids with the vocabulary (saved in the run)."""
    if cfg.arch != "ta80":
        return data.vectors, []
    from gan import ta80

    vocab_path = run_dir / "vocab.json"
    if resuming and vocab_path.exists():
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    else:
        vocab = ta80.build_vocab(data.texts)
        vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return ta80.encode_texts(data.texts, vocab), vocab


def total_steps(cfg: GanConfig, num_images: int) -> int | None:
    if cfg.steps:
        return cfg.steps
    if cfg.epochs:
        return math.ceil(cfg.epochs * num_images / cfg.batch_size)
    return None  # --minutes only


class Samples:
    """Fixed captions × fixed z -> samples/step_XXXXXX.png and a TensorBoard image."""

    def __init__(self, cfg: GanConfig, data: TrainingData, conditions, run_dir: Path, trainer: GanTrainer):
        rows = sample_captions(data.texts, data.caption_image, cfg.num_sample_captions)
        self.n_rows, n_z = len(rows), cfg.num_sample_z
        z = np.random.default_rng([cfg.seed, 3]).standard_normal((n_z, cfg.z_dim)).astype(np.float32)
        cond = conditions[rows]
        cond = cond.astype(np.float32) if cond.dtype.kind == "f" else cond
        self.cond = tf.constant(np.repeat(cond, n_z, axis=0))  # [R·Z, ...] row-major: caption r, then z
        self.z = tf.constant(np.tile(z, (self.n_rows, 1)))  # [R·Z, Z]
        self.fn = tf.function(trainer.sample)
        self.dir = run_dir / "samples"
        (run_dir / "samples_captions.json").write_text(json.dumps(
            {"captions": [data.texts[r] for r in rows], "cache_rows": rows, "num_z": n_z,
             "z_seed": [cfg.seed, 3], "layout": "row = caption, column = z"}, indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8")

    def save(self, step: int) -> Path:
        grid = R.image_grid(self.fn(self.cond, self.z).numpy(), self.n_rows)  # [R·64, Z·64, 3]
        path = self.dir / f"step_{step:06d}.png"
        R.save_png(grid, path)
        R.tb_image("samples", grid, step)
        return path


def _all_finite(variables) -> bool:
    checks = [tf.reduce_all(tf.math.is_finite(v)) for v in variables if "float" in str(v.dtype)]
    return bool(tf.reduce_all(checks).numpy())


def _progress(step, total, vals, ms, eta) -> str:
    head = f"step {step}/{total}" if total else f"step {step}"
    return (f"{head} | d {vals['d']:.2f} | g {vals['g']:.2f} | kl {vals['kl']:.2f} | {ms:.0f} ms/step"
            f" | ETA {R.format_duration(eta)}")


def prepare(cfg: GanConfig, data: TrainingData | None, resume_dir, echo: bool):
    """Run folder, log, images, sampler, conditions; returns what the loop needs."""
    data = data or read_cache(cfg.embeddings, need_vectors=cfg.arch != "ta80")
    if not cfg.cache.path:  # library use: train(resolve(...)) without the CLI filling in the cache section
        cfg = replace(cfg, cache=data.info)
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
    images, valid, image_cache = load_or_build_image_cache(cfg.cache.path, data.image_paths, IMAGE_SIZE, log,
                                                           progress=echo, dataset_name=cfg.cache.dataset_name)
    sampler = BatchSampler(data.caption_image, valid, cfg.batch_size, cfg.seed, cfg.caption_mean_k)
    conditions, vocab = conditions_for(cfg, data, run_dir, bool(resume_dir))
    total = total_steps(cfg, sampler.num_images)
    cfg = replace(cfg, run=dict(cfg.run, dir=str(run_dir.resolve()), image_cache=str(image_cache),
                                usable_images=sampler.num_images, total_steps=total, vocab_size=len(vocab),
                                created=cfg.run.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                **run_facts))
    R.save_config(run_dir, cfg)
    log(f"device: {run_facts['device']} | precision {run_facts['policy']} | "
        f"arch {cfg.arch} | loss {cfg.loss} | batch {cfg.batch_size} | ngf {cfg.ngf} | ndf {cfg.ndf} | "
        f"{sampler.num_images} usable images")
    log(dist.describe(cfg.batch_size))
    return cfg, data, run_dir, log, images, conditions, sampler, vocab, total


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
    cfg, data, run_dir, log, images, conditions, sampler, vocab, total = prepare(cfg, data, resume_dir, echo)
    dist = S.distribution(cfg)
    trainer = S.build_trainer(dist, cfg, len(vocab))  # in the strategy's scope, replica-aware
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(**checkpoint_objects(trainer, step_var))
    manager = tf.train.CheckpointManager(ckpt, str(run_dir / R.CHECKPOINTS), max_to_keep=cfg.keep_checkpoints,
                                         checkpoint_name="ckpt")
    latest = S.resume_checkpoint(resume_dir)  # in the chief's run folder: every worker restores it
    if latest:
        ckpt.restore(latest).assert_existing_objects_matched()
        trainer.g_optimizer.learning_rate = cfg.lr_g  # the one option besides the schedule a resume may change
        trainer.d_optimizer.learning_rate = cfg.lr_d
        log(f"resumed from {latest} at step {int(step_var.numpy())}")
    elif resume_dir:
        log("no checkpoint to resume from: starting at step 0 in the same folder")
    start = int(step_var.numpy())
    samples = Samples(cfg, data, conditions, run_dir, trainer)
    writer = tf.summary.create_file_writer(str(run_dir / "tb"))
    ds = make_dataset(images, conditions, sampler, start, total, negatives=hard_negatives(cfg, data, sampler, log))
    ds = S.distribute(dist, ds)  # each replica's rows of the global batches
    with writer.as_default():
        return _loop(cfg, trainer, ds, manager, step_var, samples, log, start, total, sampler, after_step, run_dir)


def hard_negatives(cfg: GanConfig, data: TrainingData, sampler: BatchSampler, log):
    """The mismatched-caption miner for cfg (None when hard_negatives is 0 or the arch reads raw captions)."""
    if not cfg.hard_negatives or cfg.arch == "ta80":
        return None
    from gan.negatives import HardNegatives

    margin = f", closer to their own image by >= {cfg.hard_neg_margin:.2f}" if cfg.hard_neg_margin else ""
    log(f"hard negatives: {cfg.hard_negatives:.0%} of mismatched captions mined at cosine "
        f"{cfg.hard_neg_low:.2f}-{cfg.hard_neg_high:.2f}{margin} from a pool of {cfg.hard_neg_pool} per step")
    return HardNegatives(data.vectors, data.caption_image, sampler.images, cfg.hard_negatives, cfg.hard_neg_low,
                         cfg.hard_neg_high, cfg.hard_neg_pool, cfg.seed, margin=cfg.hard_neg_margin)


def _loop(cfg, trainer, ds, manager, step_var, samples, log, start, total, sampler, after_step, run_dir):
    state = {"step": start, "last_good": manager.latest_checkpoint}
    try:
        return _steps(cfg, trainer, ds, manager, step_var, samples, log, start, total, sampler, after_step,
                      run_dir, state)
    except KeyboardInterrupt:
        step = state["step"]
        if step > start and _all_finite(_checked_variables(trainer)):
            step_var.assign(step)
            state["last_good"] = manager.save(checkpoint_number=step)
        log(f"interrupted at step {step}; checkpoint {state['last_good']}; continue with: "
            f"python train_gan.py --resume {run_dir}")
        raise


def _checked_variables(trainer):
    return trainer.variables + trainer.d_optimizer.variables + trainer.g_optimizer.variables


def _steps(cfg, trainer, ds, manager, step_var, samples, log, start, total, sampler, after_step, run_dir, state):
    step_fn = S.step_function(trainer, S.distribution(cfg))
    deadline = time.perf_counter() + cfg.minutes * 60 if cfg.minutes else None
    t0, s0, step, vals = time.perf_counter(), start, start, {}
    last_good = manager.latest_checkpoint
    if total is not None and start >= total:
        log(f"already at step {start} of {total}: nothing to do (raise --steps to continue)")
    for batch in ds:
        step_fn(batch, trainer.penalty_due(step))
        step += 1
        state["step"] = step
        if after_step is not None:
            after_step(trainer, step)
        out_of_time = deadline is not None and time.perf_counter() >= deadline
        final = step == total or out_of_time
        flags = [step % cfg.log_every == 0, step % cfg.ckpt_every == 0, step % cfg.sample_every == 0]
        if not (final or any(flags)):
            continue
        vals = {m.name: float(m.result()) for m in trainer.metrics}
        if not all(math.isfinite(v) for v in vals.values()):
            _diverged(log, vals, s0, step, last_good)
        if flags[0] or final:
            ms = (time.perf_counter() - t0) * 1000 / max(step - s0, 1)
            left = ((total - step) * ms / 1000) if total else math.inf
            if deadline is not None:
                left = min(left, max(deadline - time.perf_counter(), 0))
            log(_progress(step, total, vals, ms, left))
            for name, v in {**vals, "ms_per_step": ms}.items():
                R.tb_scalar(f"train/{name}", v, step)
            for m in trainer.metrics:
                m.reset_state()
        if flags[1] or final:
            if not _all_finite(_checked_variables(trainer)):
                _diverged(log, {"weights": math.nan}, s0, step, last_good)
            step_var.assign(step)
            last_good = state["last_good"] = manager.save(checkpoint_number=step)
        if flags[2] or final:
            samples.save(step)
        if flags[0] or final:
            t0, s0 = time.perf_counter(), step
        if out_of_time:
            log(f"time budget of {cfg.minutes:g} min reached at step {step}")
            break
    log(f"done: step {step} | epoch {sampler.epoch_of(step):.2f} | checkpoint {last_good} | samples {samples.dir}"
        f" | continue with: python train_gan.py --resume {run_dir} --steps N")
    return TrainResult(run_dir, step, last_good, vals)


def _diverged(log, vals, since: int, step: int, last_good) -> None:
    shown = ", ".join(f"{k} {v}" for k, v in vals.items())
    msg = (f"non-finite loss or weights between steps {since} and {step} ({shown}): training stopped; "
           f"last good checkpoint kept: {last_good or 'none'} — resume from it with lower --lr-g/--lr-d "
           f"(train_gan.py --resume RUN_DIR --lr-g 1e-4 --lr-d 1e-4) or start a new run with --loss hinge")
    log(f"error: {msg}")
    raise TrainingDiverged(msg)
