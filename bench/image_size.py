"""Training-step cost per image size, side by side in one run: dfgan at 64, 128 and 256 px, G's channel schedules
beyond 64 px, ms/step, GFLOP/step, GFLOP/s and share of the fp32 peak, and the same step on AVX2 kernels.

    python bench/image_size.py                          # cpu preset (ngf = ndf = 32, batch 64), the default rows
    python bench/image_size.py --steps 1 --rounds 5 --rows 64,128,128:halve,256 --avx2 64,128

Rows are "SIZE" (G_SCHEDULE, the default) or "SIZE:SCHEDULE" (gan/dfgan.py G_SCHEDULES: hold, halve, ladder), each
the plain dfgan step (tf.function(trainer.train_step), MA-GP on) on in-memory random tensors, float32; --bf16 rows
repeat sizes under mixed_bfloat16 (what train_gan.py's auto policy runs on an AVX512_BF16 CPU; their share is of the
bf16 peak, 2x fp32), --avx2 rows run in a child process with ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN's AVX2 kernels: what an
AVX2-only machine runs, in float32; their share is of the AVX2 fp32 peak: two 256-bit FMA pipes per core, the same
FLOP/cycle as Zen 4's double-pumped AVX-512). Rows alternate in rounds (the order rotates) and each figure is the median: ratios carry across a
busy machine, absolute ms do not. GFLOP/step from gan.flops (conv, dense; elementwise work not counted).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.step_rows import ChildRow, Row, random_batch, repeat, step_row  # noqa: E402
from bench.train_step import BF16_PEAK_FACTOR, machine_peak, matmul_row, run_rounds  # noqa: E402

DIM = 384  # MiniLM's text dimension (random vectors: the step's cost does not depend on their values)
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="64,128,128:halve,128:ladder,256,256:halve",
                   help="float32 rows, SIZE[:SCHEDULE] (default %(default)s)")
    p.add_argument("--bf16", default="64,128,256", help="sizes timed under mixed_bfloat16 ('' none; default %(default)s)")
    p.add_argument("--avx2", default="64,128,256", help="sizes timed on AVX2 kernels in a child ('' none; default "
                                                         "%(default)s)")
    p.add_argument("--ngf", type=int, default=32, help="generator width (default 32, the cpu preset's)")
    p.add_argument("--ndf", type=int, default=32, help="discriminator width (default 32)")
    p.add_argument("--batch-size", type=int, default=64, help="batch (default 64, the cpu preset's)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per row per round (default 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after tracing (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds, median taken (default 3)")
    p.add_argument("--fma-units", type=int, help="FMA units per core for the peak (default: a guess from lscpu)")
    args = p.parse_args(argv)
    args.rows = [_row_spec(r) for r in args.rows.split(",") if r]
    args.bf16 = [int(s) for s in args.bf16.split(",") if s]
    args.avx2 = [int(s) for s in args.avx2.split(",") if s]
    return args


def _row_spec(text: str) -> tuple[int, str]:
    from gan.dfgan import G_SCHEDULE

    size, _, schedule = text.partition(":")
    return int(size), schedule or G_SCHEDULE


def config(args, size: int):
    from gan.config import CacheInfo, resolve

    cfg = resolve(dict(embeddings="random.h5", preset="cpu", ngf=args.ngf, ndf=args.ndf, batch_size=args.batch_size,
                       image_size=size, mixed_precision="off"), False)
    return replace(cfg, cache=CacheInfo(dim=DIM))


def sized_step(cfg, schedule: str, policy: str):
    """(trainer, tf.function step) of dfgan at cfg.image_size with G's `schedule`: gan.trainer.build_trainer with
    the generator built by gan.dfgan.build_generator(schedule=...)."""
    import keras
    import tensorflow as tf

    from gan import dfgan
    from gan.trainer import GanTrainer

    keras.mixed_precision.set_global_policy(policy)
    try:
        def g():
            return dfgan.build_generator(DIM, cfg.z_dim, cfg.c_dim, cfg.ngf, cfg.upsample, cfg.image_size, schedule)

        d_enc, d_head = dfgan.build_discriminator(DIM, cfg.ndf, proj4=cfg.proj4, image_size=cfg.image_size)
        trainer = GanTrainer(g(), d_enc, d_head, None, cfg=cfg, ema_copy=g() if cfg.ema else None)
        adam = lambda lr: keras.optimizers.Adam(lr, beta_1=cfg.beta1, beta_2=cfg.beta2)  # noqa: E731
        trainer.compile(d_optimizer=adam(cfg.lr_d), g_optimizer=adam(cfg.lr_g))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return trainer, tf.function(trainer.train_step)


def build_rows(args) -> tuple[list[Row], list[ChildRow]]:
    rows = []
    for policy, specs in (("float32", args.rows), ("mixed_bfloat16", [_row_spec(str(s)) for s in args.bf16])):
        for size, schedule in specs:
            cfg = config(args, size)
            trainer, step = sized_step(cfg, schedule, policy)
            name = f"{schedule}" + (" bf16" if policy != "float32" else "")
            rows.append(step_row("size", str(size), name, cfg, trainer, step, repeat(random_batch(cfg, 0)),
                                 args.warmup))
            print(f"built {size} px {name}: {rows[-1].flops / 1e9:.2f} GFLOP/step", flush=True)
    children = []
    for size in args.avx2:
        overrides = dict(embeddings="random.h5", preset="cpu", ngf=args.ngf, ndf=args.ndf,
                         batch_size=args.batch_size, image_size=size, mixed_precision="off")
        children.append(ChildRow("hold avx2", str(size), overrides, DIM, 0, args.warmup, dict(env=AVX2_ENV)))
    return rows, children


def avx2_peak(peak) -> float:
    """fp32 peak of the same cores on AVX2 kernels: 8 lanes x 2 (FMA) x two 256-bit FMA pipes (every AVX2-class core
    has two; on Zen 4 that equals its double-pumped AVX-512 peak, on a two-unit AVX-512 Xeon it is half)."""
    return peak.cores * peak.ghz * 8 * 2 * 2


def print_table(rows: list[Row], peak) -> None:
    base = {r.name: r for r in rows if r.arch == "64"}  # each policy's 64 px row
    print(f"\n{'size':>5} {'G schedule / kernels':<22} {'ms/step':>8} {'vs 64':>7} {'GFLOP/step':>10} {'vs 64':>7} "
          f"{'GFLOP/s':>8} {'of peak':>7}")
    for r in rows:
        gflops = r.flops / r.ms / 1e6
        if "bf16" in r.name and peak.has_bf16:
            ref = peak.gflops * BF16_PEAK_FACTOR
        elif "avx2" in r.name:
            ref = avx2_peak(peak)
        else:
            ref = peak.gflops
        key = r.name if r.name in base else ("hold" if r.name in ("halve", "ladder") else r.name)
        b = base.get(key)
        vs_ms = f"{r.ms / b.ms:>6.2f}x" if b else f"{'':>7}"
        vs_fl = f"{r.flops / b.flops:>6.2f}x" if b else f"{'':>7}"
        print(f"{r.arch:>5} {r.name:<22} {r.ms:>8.1f} {vs_ms} {r.flops / 1e9:>10.2f} {vs_fl} {gflops:>8.1f} "
              f"{gflops / ref:>6.1%}")


def main(argv=None) -> int:
    args = parse_args(argv)
    import keras

    keras.utils.set_random_seed(0)
    peak = machine_peak(args)
    rows, children = build_rows(args)
    try:
        rows += [c.ready() for c in children]
        mm = matmul_row()
        print(f"{len(rows)} rows + matmul | ngf {args.ngf} ndf {args.ndf} batch {args.batch_size} | "
              f"{args.steps} steps x {args.rounds} rounds", flush=True)
        run_rounds(rows + [mm], args)
    finally:
        for c in children:
            c.close()
    print(f"\nCPU {peak.model}: {peak.cores} cores x {peak.ghz:.3f} GHz x {peak.flop_per_cycle} fp32 FLOP/cycle = "
          f"{peak.gflops:.0f} GFLOP/s fp32 peak ({peak.why}); AVX2 rows against "
          f"{avx2_peak(peak):.0f}; matmul 2048² now "
          f"{mm.flops / mm.ms / 1e6:.0f} GFLOP/s. Machine shared: read the ratios.")
    print_table(rows, peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
