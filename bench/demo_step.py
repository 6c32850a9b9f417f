"""What `make demo`'s training costs against an earlier demo recipe: both steps side by side in one process.

    python bench/demo_step.py                                   # the Makefile's recipe vs the 2026-12-02 one
    ONEDNN_MAX_CPU_ISA=AVX2 python bench/demo_step.py           # oneDNN limited to AVX2 kernels, in float32:
                                                                # the ratio an AVX2-only machine would see

Each recipe is `--preset cpu` plus the `--set` options and widths the Makefile passes (DEMO_BATCH and DEMO_SET,
widths included), trained on random tensors in float32 (an AVX2-only CPU has no bf16, so auto picks float32 there).
Rounds alternate the recipes (--steps each, order rotating), and each figure is the median over rounds, so a
busy machine slows both alike; lazy MA-GP is timed over its whole cycle. It prints ms/step, the ratio, and the
training seconds each recipe's step budget costs at those speeds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# the demo recipe before 2026-12-06 (DEMO_STEPS=400, DEMO_BATCH=32, DEMO_SET="diffaug= magp_every=4 ca_noise=0")
PREVIOUS = dict(steps=400, overrides=dict(batch_size=32, diffaug="", magp_every=4, ca_noise=0.0))


def makefile_recipe(path: str = "Makefile") -> dict:
    """The demo recipe the Makefile runs now: {"steps", "overrides"} from its DEMO_* variables."""
    values = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            name, sep, value = line.partition("?=")
            if sep and name.strip().startswith("DEMO_"):
                values[name.strip()] = value.split("#")[0].strip()
    overrides = dict(batch_size=int(values["DEMO_BATCH"]))
    for kv in values.get("DEMO_SET", "").split():
        key, _, value = kv.partition("=")
        overrides[key] = value
    return dict(steps=int(values["DEMO_STEPS"]), overrides=overrides)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4, help="timed steps per recipe per round (default 4: one MA-GP cycle)")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds, median taken (default 7)")
    p.add_argument("--dim", type=int, default=384, help="text vector size (default 384, MiniLM's)")
    args = p.parse_args(argv)

    import tensorflow as tf

    from bench.step_rows import build_step, random_batch, repeat, timed
    from gan.config import CacheInfo, resolve
    from gan.flops import train_step_flops

    recipes = {"previous demo": PREVIOUS, "make demo now": makefile_recipe()}
    rows = {}
    for name, recipe in recipes.items():
        options = {"preset": "cpu", "embeddings": "-", **recipe["overrides"]}  # no cache is read: random tensors
        cfg = replace(resolve(options, False), cache=CacheInfo(dim=args.dim))
        trainer, step = build_step(cfg, 0)
        penalties = tuple(i % cfg.magp_every == 0 for i in range(cfg.magp_every))  # what trainer.penalty_due gives
        batches = repeat(random_batch(cfg, 0))
        timed(step, batches, 2 * len(penalties), penalties)  # trace both penalty cases, warm up
        flops = statistics.mean(train_step_flops(trainer, cfg.batch_size, pen).total for pen in penalties)
        rows[name] = dict(cfg=cfg, step=step, batches=batches, penalties=penalties, flops=flops, times=[])
    names = list(rows)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            row = rows[name]
            row["times"].append(timed(row["step"], row["batches"], args.steps, row["penalties"]))

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "all")
    print(f"TF {tf.__version__} | ONEDNN_MAX_CPU_ISA={isa} | float32 | {args.rounds} rounds x {args.steps} steps")
    base = statistics.median(rows[names[0]]["times"])
    print(f"{'recipe':<15} {'options':<62} {'ms/step':>8} {'x prev':>7} {'GFLOP':>6} {'steps':>6} {'train s':>8}")
    for name in names:
        row, recipe = rows[name], recipes[name]
        ms = statistics.median(row["times"])
        opts = " ".join(f"{k}={v}" for k, v in recipe["overrides"].items())
        print(f"{name:<15} {opts:<62} {ms:8.1f} {ms / base:7.2f} {row['flops'] / 1e9:6.1f} {recipe['steps']:6d} "
              f"{recipe['steps'] * ms / 1000:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
