"""Rows of bench/train_step.py: a Row is one timed thing (n steps -> ms per step) with its FLOPs per step; a
ChildRow measures the plain step in a child process whose TF starts with other thread pools or oneDNN off.

    trainer, step = build_step(cfg, vocab_size, xla=True)  # tf.function of trainer.train_step
    row = step_row("arch", "dfgan", "xla", cfg, trainer, step, repeat(random_batch(cfg, 0)), warmup=2)
    row.run(8)                                             # ms per step over 8 steps

    python bench/step_rows.py '{"overrides": {...}, "dim": 384, ...}'   # a child (ChildRow starts it)
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass
class Row:
    table: str  # "arch" or "pipeline"
    arch: str
    name: str
    run: Callable[[int], float]  # n steps -> ms per step
    flops: float = 0.0  # FLOPs per step (mean over the row's penalty cycle); 0: not counted
    times: list = field(default_factory=list)

    @property
    def ms(self) -> float:
        return statistics.median(self.times)


def timed(step, batches, n: int, penalties=(True,)) -> float:
    """ms per step over n steps (cycling `penalties`); synchronises on the last loss (GPU work is asynchronous)."""
    t = time.perf_counter()
    for i in range(n):
        out = step(next(batches), penalties[i % len(penalties)])
    float(out["d"])
    return (time.perf_counter() - t) * 1000 / n


def repeat(batch):
    while True:
        yield batch


def random_batch(cfg, vocab_size: int):
    """(uint8 images [B, S, S, 3] (S = cfg.image_size), cond, wrong cond): [B, D] float32, or for an arch that reads
    raw text (ta80) [B, T] int32 word ids; an arch that reads words (dfgan-words) gets (states [B, L, D] float16,
    lengths [B]) of both captions after them, lengths drawn in [L/2, L]; with cfg.exchanged_cache, last, the exchanged
    rows' mask [B] float32 (every 4th row)."""
    import numpy as np
    import tensorflow as tf

    from gan.archs import get_arch
    from gan.ta80 import MAX_TOKENS

    b, rng = cfg.batch_size, np.random.default_rng(0)
    s = cfg.image_size
    images = tf.constant(rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8))
    if get_arch(cfg.arch).reads == "texts":
        def cond():
            return tf.constant(rng.integers(2, vocab_size + 2, (b, MAX_TOKENS), dtype=np.int32))
    else:
        def cond():
            return tf.constant(rng.standard_normal((b, cfg.cache.dim), dtype=np.float32))
    mask = (tf.constant((np.arange(b) % 4 == 0).astype(np.float32)),) if cfg.exchanged_cache else ()
    if not get_arch(cfg.arch).words:
        return images, cond(), cond(), *mask
    length = cfg.cache.token_length

    def words():
        states = rng.standard_normal((b, length, cfg.cache.dim), dtype=np.float32).astype(np.float16)
        return tf.constant(states), tf.constant(rng.integers(length // 2, length + 1, b, dtype=np.int32))

    return images, cond(), cond(), *words(), *words(), *mask


def build_step(cfg, vocab_size: int, xla: bool = False, policy: str = "float32"):
    """(trainer, tf.function step) for cfg, its layers built under the keras dtype `policy`."""
    import keras
    import tensorflow as tf

    from gan.trainer import build_trainer

    keras.mixed_precision.set_global_policy(policy)
    try:
        trainer = build_trainer(cfg, vocab_size)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return trainer, tf.function(trainer.train_step, jit_compile=xla)


def step_row(table, arch, name, cfg, trainer, step, batches, warmup, penalties=(True,)) -> Row:
    from gan.flops import train_step_flops

    timed(step, batches, max(warmup, len(penalties)), penalties)  # traces every penalty case
    flops = statistics.mean(train_step_flops(trainer, cfg.batch_size, p).total for p in penalties)
    return Row(table, arch, name, lambda n: timed(step, batches, n, penalties), flops)


# ------------------------------------------------------------------------------------------- child rows
class ChildRow:
    """A row measured in a child process (thread pools and oneDNN are fixed when TF starts)."""

    def __init__(self, name: str, arch: str, overrides: dict, dim: int, vocab_size: int, warmup: int, spec: dict):
        job = dict(overrides=overrides, dim=dim, vocab_size=vocab_size, warmup=warmup, intra=spec.get("intra"),
                   inter=spec.get("inter"))
        env = {**os.environ, **spec.get("env", {})}
        self.name, self.arch = name, arch
        self.proc = subprocess.Popen([sys.executable, __file__, json.dumps(job)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def _reply(self) -> str:
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                return line[3:].strip()
        raise RuntimeError(f"child row {self.name} ended without a reply (exit {self.proc.wait()})")

    def ready(self) -> Row:
        flops = float(self._reply())
        return Row("arch", self.arch, self.name, self.run, flops)

    def run(self, n: int) -> float:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return float(self._reply())

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def worker_main(job: dict) -> int:
    """Child: build the plain step for job's config, warm it up, then answer 'n' lines with ms per step."""
    import tensorflow as tf

    if job["intra"]:
        tf.config.threading.set_intra_op_parallelism_threads(job["intra"])
    if job["inter"]:
        tf.config.threading.set_inter_op_parallelism_threads(job["inter"])
    from gan.config import CacheInfo, resolve
    from gan.flops import train_step_flops
    from gan.loop import setup_runtime

    cfg = replace(resolve(job["overrides"], bool(tf.config.list_physical_devices("GPU"))),
                  cache=CacheInfo(dim=job["dim"]))
    setup_runtime(cfg)
    trainer, step = build_step(cfg, job["vocab_size"])
    batches = repeat(random_batch(cfg, job["vocab_size"]))
    timed(step, batches, job["warmup"])
    print(f"@@ {train_step_flops(trainer, cfg.batch_size).total}", flush=True)
    for line in sys.stdin:
        print(f"@@ {timed(step, batches, int(line))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(json.loads(sys.argv[1])))
