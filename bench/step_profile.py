"""Where a training step's time goes: the TF profiler's per-op times, summed by phase of GanTrainer.train_step.

    from bench.step_profile import instrument, profile_step
    instrument(trainer)                          # before the step is traced: name scopes for EMA, DiffAugment, D loss
    phases, top_ops, wall_ms, kinds = profile_step(tf.function(trainer.train_step), batch, steps=5)

The phases come from the op names TF gives inside the traced step: Keras scopes every model call
(`generator_1/…`, `d_encoder_3/…`), the tapes prefix backward ops with `gradient_tape/`, a gradient of a gradient
gets it twice (the MA-GP term's gradient w.r.t. D's weights), the optimizers are `adam*/…`. `instrument` adds
name scopes (no other change) around three trainer methods, so the EMA update, DiffAugment and the loss arithmetic
are told apart too. The MA-GP's first-order ∂D/∂(x, t) is named like D's backward and counted there (the tape
names gradients outside the caller's scope); the nogp row of bench/train_step.py gives the penalty's whole cost.
Times are per-op kernel times: with inter-op parallelism their sum can exceed the wall time, so read shares.
"""
from __future__ import annotations

import collections
import glob
import tempfile
import time

import tensorflow as tf

PHASES = (  # (phase, test on the op name), first match wins
    ("MA-GP 2nd order (grad of ∂D/∂x)", lambda n: n.startswith("gradient_tape/d_loss/gradient_tape/")
     or n.startswith("gradient_tape/gradient_tape/")),
    ("G forward", lambda n: n.startswith("generator")),
    ("text encoder forward", lambda n: n.startswith("ta80_text_encoder")),
    ("D forward", lambda n: n.startswith(("d_encoder", "d_head", "ta80_d_"))),
    ("G backward", lambda n: n.startswith(("gradient_tape/generator", "gradient_tape/ta80_generator"))),
    ("D backward (D and G tapes, MA-GP ∂D/∂x)", lambda n: n.startswith(("gradient_tape/d_encoder", "gradient_tape/d_head",
                                                         "gradient_tape/ta80_d_", "gradient_tape/ta80_text"))),
    ("DiffAugment (fwd + bwd)", lambda n: "diffaugment/" in n),
    ("optimizer apply (2 Adams)", lambda n: n.startswith("adam") or n.startswith("loss_scale")),
    ("EMA update", lambda n: n.startswith("ema/")),
    ("losses", lambda n: n.startswith(("d_loss/", "gradient_tape/d_loss/"))),
)
OTHER = "other (input cast, RNG, gradient sums, metrics)"


def _scoped(fn, scope: str):
    def wrapped(*args, **kwargs):
        with tf.name_scope(scope):
            return fn(*args, **kwargs)
    return wrapped


def instrument(trainer) -> None:
    """Name scopes around the trainer's EMA update, DiffAugment and D loss (instance attributes only)."""
    if trainer.ema is not None:
        trainer.ema.update = _scoped(trainer.ema.update, "ema")
    trainer.augment_for_d = _scoped(trainer.augment_for_d, "diffaugment")
    trainer._d_loss = _scoped(trainer._d_loss, "d_loss")


def phase_of(op_name: str) -> str:
    for phase, test in PHASES:
        if test(op_name):
            return phase
    return OTHER


def _op_events(logdir: str):
    """(op name, op type, duration in ms) of every op kernel the profile recorded on the host."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    for path in glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU") and not plane.name.startswith("/device:"):
                continue
            meta = plane.event_metadata
            for line in plane.lines:
                for ev in line.events:
                    name = meta[ev.metadata_id].name
                    op, sep, kind = name.rpartition(":")
                    if not sep or "::" in name or " " in op or not kind.isidentifier():  # runtime events
                        continue
                    yield op, kind, ev.duration_ps / 1e9


def profile_step(step, batch, steps: int = 5, penalties=(True,), top: int = 12):
    """Profile `steps` calls of `step(batch, penalty)` (already traced and warm), cycling `penalties`.
    Returns ({phase: op ms per step}, [(op ms per step, op name, type)] top ops, wall ms per step,
    {op type: op ms per step})."""
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        t = time.perf_counter()
        for i in range(steps):
            out = step(batch, penalties[i % len(penalties)])
        float(out["d"])
        wall = (time.perf_counter() - t) * 1000 / steps
        tf.profiler.experimental.stop()
        phases, ops, kinds = collections.Counter(), collections.Counter(), collections.Counter()
        for op, kind, ms in _op_events(logdir):
            phases[phase_of(op)] += ms / steps
            ops[(op, kind)] += ms / steps
            kinds[kind] += ms / steps
    top_ops = [(ms, op, kind) for (op, kind), ms in ops.most_common(top)]
    return dict(phases), top_ops, wall, dict(kinds)


def print_profile(title: str, phases: dict, top_ops, wall_ms: float, kinds: dict, top: int = 10) -> None:
    total = sum(phases.values())
    print(f"\n{title}: op time {total:.0f} ms/step summed over ops, wall {wall_ms:.0f} ms/step under the profiler")
    print(f"{'phase':<48} {'ms/step':>8} {'share':>7}")
    for phase, ms in sorted(phases.items(), key=lambda kv: -kv[1]):
        print(f"{phase:<48} {ms:>8.1f} {ms / total:>6.1%}")
    print(f"\n{'op type (all calls)':<48} {'ms/step':>8} {'share':>7}")
    for kind, ms in sorted(kinds.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{kind:<48} {ms:>8.1f} {ms / total:>6.1%}")
    print(f"\ntop single ops ({title})")
    print(f"{'ms/step':>8}  {'phase':<40} op (type)")
    for ms, op, kind in top_ops:
        print(f"{ms:>8.1f}  {phase_of(op):<40} {op} ({kind})")
