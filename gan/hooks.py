"""The training loop's side effects as hooks (gan/loop.py calls each every `every` steps and at the last step):
progress line + TensorBoard scalars, checkpoint + NaN guard, sample grids.

A hook is called as `hook(step, vals, since)`: the step just done, the losses {"d", "g", "kl"} averaged since the
last progress line, and the step that interval started at (what a divergence message names).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from gan import run_dir as R
from gan.data import sample_captions
from gan.run_dir import TrainingDiverged
from gan.trainer import checkpoint_objects


def diverged(log, vals, since: int, step: int, last_good) -> None:
    shown = ", ".join(f"{k} {v}" for k, v in vals.items())
    msg = (f"non-finite loss or weights between steps {since} and {step} ({shown}): training stopped; "
           f"last good checkpoint kept: {last_good or 'none'} — resume from it with lower --lr-g/--lr-d "
           f"(train_gan.py --resume RUN_DIR --lr-g 1e-4 --lr-d 1e-4) or start a new run with --loss hinge")
    log(f"error: {msg}")
    raise TrainingDiverged(msg)


class ProgressHook:
    """`step 1200/5000 | d 0.61 | g 2.31 | kl 0.04 | 85 ms/step | ETA 6m12s` and the TensorBoard scalars; resets
    the loss means. Owns the interval clock and the --minutes deadline."""

    def __init__(self, every: int, metrics, total: int | None, minutes: float, start: int, log):
        self.every, self.metrics, self.total, self.minutes, self.log = every, metrics, total, minutes, log
        self.deadline = None
        self.restart(start)

    def start_clock(self, start: int) -> None:
        """At the first step: the --minutes budget counts from here."""
        self.deadline = time.perf_counter() + self.minutes * 60 if self.minutes else None
        self.restart(start)

    def restart(self, step: int) -> None:
        self.t0, self.since = time.perf_counter(), step

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def __call__(self, step: int, vals: dict, since: int) -> None:
        ms = (time.perf_counter() - self.t0) * 1000 / max(step - self.since, 1)
        left = ((self.total - step) * ms / 1000) if self.total else math.inf
        if self.deadline is not None:
            left = min(left, max(self.deadline - time.perf_counter(), 0))
        head = f"step {step}/{self.total}" if self.total else f"step {step}"
        cls = f" | cls {vals['cls']:.2f}" if "cls" in vals else ""  # the auxiliary classifier's CE on real images
        self.log(f"{head} | d {vals['d']:.2f} | g {vals['g']:.2f} | kl {vals['kl']:.2f}{cls} | {ms:.0f} ms/step"
                 f" | ETA {R.format_duration(left)}")
        for name, v in {**vals, "ms_per_step": ms}.items():
            R.tb_scalar(f"train/{name}", v, step)
        for m in self.metrics:
            m.reset_state()


class CheckpointHook:
    """Checkpoints (last N kept) of everything a resume needs; never written from non-finite weights."""

    def __init__(self, every: int, trainer, folder: Path, keep: int, log):
        self.every, self.trainer, self.log = every, trainer, log
        self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.ckpt = tf.train.Checkpoint(**checkpoint_objects(trainer, self.step_var))
        self.manager = tf.train.CheckpointManager(self.ckpt, str(folder), max_to_keep=keep, checkpoint_name="ckpt")
        self.last_good = self.manager.latest_checkpoint

    def restore(self, latest: str | None, resuming: bool, cfg) -> int:
        """Restore `latest` (the chief's newest checkpoint: every worker restores it) -> the step to start at."""
        if latest:
            self.ckpt.restore(latest).assert_existing_objects_matched()
            self.trainer.g_optimizer.learning_rate = cfg.lr_g  # the one option besides the schedule a resume may change
            self.trainer.d_optimizer.learning_rate = cfg.lr_d
            self.log(f"resumed from {latest} at step {int(self.step_var.numpy())}")
        elif resuming:
            self.log("no checkpoint to resume from: starting at step 0 in the same folder")
        self.last_good = self.manager.latest_checkpoint
        return int(self.step_var.numpy())

    def _finite(self) -> bool:
        t = self.trainer
        variables = t.variables + t.d_optimizer.variables + t.g_optimizer.variables
        checks = [tf.reduce_all(tf.math.is_finite(v)) for v in variables if "float" in str(v.dtype)]
        return bool(tf.reduce_all(checks).numpy())

    def _save(self, step: int) -> None:
        self.step_var.assign(step)
        self.last_good = self.manager.save(checkpoint_number=step)

    def __call__(self, step: int, vals: dict, since: int) -> None:
        if not self._finite():
            diverged(self.log, {"weights": math.nan}, since, step, self.last_good)
        self._save(step)

    def save_on_interrupt(self, step: int, start: int) -> None:
        """Ctrl-C: keep the steps done since `start` when the weights are finite."""
        if step > start and self._finite():
            self._save(step)


class SampleHook:
    """Fixed captions × fixed z -> samples/step_XXXXXX.png and a TensorBoard image; the captions are recorded in
    samples_captions.json."""

    def __init__(self, every: int, cfg, data, conditions, run_dir: Path, trainer):
        self.every = every
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

    def __call__(self, step: int, vals: dict, since: int) -> Path:
        grid = R.image_grid(self.fn(self.cond, self.z).numpy(), self.n_rows)  # [R·64, Z·64, 3]
        path = self.dir / f"step_{step:06d}.png"
        R.save_png(grid, path)
        R.tb_image("samples", grid, step)
        return path
