"""Each convolution of an arch on its own: forward + both backward passes, ms and GFLOP/s, side by side in one run.

    python bench/conv_layers.py                       # dfgan at the cpu preset (ngf = ndf = 32, batch 64)
    python bench/conv_layers.py --arch stackgan --batch-size 32 --rounds 5

Why: bench/train_step.py gives a whole step's GFLOP/s; this says which layers keep it from the CPU's peak. Every
Conv2D of G and of D's encoder is rebuilt alone (same input shape, filters, kernel, stride, padding), and one
tf.function computes y = conv(x), then ∂L/∂x and ∂L/∂W of L = Σy² (the three convolutions a training step runs per
layer: Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter). FLOPs = 3 × the forward FLOPs gan.flops counts × batch.
Rows alternate in rounds (the order rotates) and each figure is the median, so ratios between rows carry across a
busy machine; absolute ms do not. A 2048² fp32 matmul is the reference of what this CPU reaches now.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field, replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.machine import machine  # noqa: E402
from bench.train_step import DEFAULT_CACHE, machine_peak, matmul_row, run_rounds  # noqa: E402


@dataclass
class ConvRow:
    model: str
    name: str
    in_shape: tuple  # (H, W, Cin), one sample
    out_shape: tuple  # (H', W', Cout)
    kernel: int
    strides: int
    padding: str
    flops: float  # per batch, forward + 2 backward
    fn: object = None
    times: list = field(default_factory=list)

    def run(self, n: int) -> float:
        """n calls -> ms per call (like bench.step_rows.Row.run)."""
        t = time.perf_counter()
        for _ in range(n):
            gx, gw = self.fn()
        float(gx[0, 0, 0, 0]) + float(gw[0, 0, 0, 0])  # wait for the result
        return (time.perf_counter() - t) * 1000 / n


def conv_rows(models, batch: int) -> list[ConvRow]:
    """ConvRow for every Conv2D reached in the models (input shape from the layer's own call; forward FLOPs from
    gan.flops, × 3 for the two backward convolutions, × batch)."""
    import keras

    from gan.flops import model_flops

    rows = []
    for model in models:
        forward = {r.name.split("/")[-1]: r.matmul for r in model_flops(model).layers if r.kind == "Conv2D"}
        for layer in model.layers:
            if not isinstance(layer, keras.layers.Conv2D):
                continue
            hin = tuple(int(d) for d in layer.input.shape[1:])
            hout = tuple(int(d) for d in layer.output.shape[1:])
            rows.append(ConvRow(model.name, layer.name, hin, hout, int(layer.kernel.shape[0]), int(layer.strides[0]),
                                layer.padding, 3 * forward[layer.name] * batch))
    return rows


def attach(row: ConvRow, batch: int, seed: int) -> None:
    import tensorflow as tf

    x = tf.random.stateless_normal((batch, *row.in_shape), (seed, 1))
    w = tf.Variable(tf.random.stateless_normal((row.kernel, row.kernel, row.in_shape[2], row.out_shape[2]),
                                               (seed, 2)) * 0.05)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, w, row.strides, row.padding.upper())
            loss = tf.reduce_sum(tf.square(y))
        return tape.gradient(loss, [x, w])

    row.fn = step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", default=str(DEFAULT_CACHE), help="embedding cache: its text dim (default: "
                                                                     "%(default)s)")
    p.add_argument("--arch", default="dfgan", choices=("dfgan", "stackgan"), help="arch (default dfgan)")
    p.add_argument("--batch-size", type=int, default=64, help="batch (default 64, the cpu preset's)")
    p.add_argument("--ngf", type=int, default=32, help="generator width (default 32)")
    p.add_argument("--ndf", type=int, default=32, help="discriminator width (default 32)")
    p.add_argument("--image-size", type=int, default=64, choices=(64, 128, 256), help="image side (default 64)")
    p.add_argument("--steps", type=int, default=3, help="timed calls per row per round (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds, median taken (default 3)")
    p.add_argument("--fma-units", type=int, help="FMA units per core for the peak (default: a guess from lscpu)")
    args = p.parse_args(argv)

    import numpy as np

    from gan.config import resolve
    from gan.data import read_cache
    from gan.loop import setup_runtime
    from gan.archs import get_arch

    data = read_cache(args.embeddings)
    cfg = replace(resolve(dict(embeddings=args.embeddings, arch=args.arch, preset="cpu", batch_size=args.batch_size,
                               ngf=args.ngf, ndf=args.ndf, mixed_precision="off", image_size=args.image_size),
                        False), cache=data.info)
    setup_runtime(cfg)
    g, d_enc, _, _ = get_arch(cfg.arch).build(cfg)
    rows = conv_rows([g, d_enc], args.batch_size)
    for i, row in enumerate(rows):
        attach(row, args.batch_size, i)
        row.run(1)  # trace
    mm = matmul_row()
    run_rounds([*rows, mm], args)

    peak = machine_peak(args)
    print(f"machine: {machine()}; fp32 peak {peak.gflops:.0f} GFLOP/s ({peak.why})")
    mm_ms = float(np.median(mm.times))
    mm_gflops = mm.flops / mm_ms / 1e6
    print(f"\n{args.arch} convolutions, float32, batch {args.batch_size}, ngf {args.ngf} ndf {args.ndf}, "
          f"{args.image_size} px: "
          f"forward + ∂x + ∂W per call, median of {args.rounds} rounds x {args.steps} calls")
    print(f"{'model':<12} {'layer':<12} {'input':>14} {'output':>14} {'k/s':>5} {'GFLOP':>7} {'ms':>8} "
          f"{'GFLOP/s':>8} {'vs matmul':>9}")
    total_ms = total_flops = 0.0
    for row in rows:
        ms = float(np.median(row.times))
        total_ms, total_flops = total_ms + ms, total_flops + row.flops
        gflops = row.flops / ms / 1e6
        shape = lambda s: "x".join(str(d) for d in s)  # noqa: E731
        print(f"{row.model:<12} {row.name:<12} {shape(row.in_shape):>14} {shape(row.out_shape):>14} "
              f"{row.kernel}/{row.strides:<3} {row.flops / 1e9:>7.2f} {ms:>8.1f} {gflops:>8.1f} "
              f"{gflops / mm_gflops:>8.0%}")
    print(f"{'all convs':<25} {'':>14} {'':>14} {'':>5} {total_flops / 1e9:>7.2f} {total_ms:>8.1f} "
          f"{total_flops / total_ms / 1e6:>8.1f} {total_flops / total_ms / 1e6 / mm_gflops:>8.0%}")
    print(f"{'matmul 2048² fp32':<25} {'':>14} {'':>14} {'':>5} {mm.flops / 1e9:>7.2f} {mm_ms:>8.1f} "
          f"{mm_gflops:>8.1f} {1:>8.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
