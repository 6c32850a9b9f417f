"""GAN training-step cost, side by side in one run: what the cached pipeline costs, and what it saves.

    python precompute_embeddings.py                    # once: data/synthetic-flowers + cache/synthetic-flowers-minilm.h5
    python bench/train_step.py                         # preset of this machine (cpu: ngf=ndf=32, batch 64)
    python bench/train_step.py --embeddings cache/x.h5 --steps 30 --rounds 3 --skip c

(a) the GAN step on in-memory random tensors: the limit, no input pipeline at all
(b) the real cached pipeline: uint8 image cache + cached vectors, tf.data with prefetch (what train_gan.py runs)
(c) the same GAN with the MiniLM encoder run inside the step on the raw captions (matching + mismatched):
    the design the embedding cache exists to avoid
(d) --arch ta80: the course baseline (dense G/D, GRU text encoder trained in the loop on raw captions)
(a) and (b) alternate for --rounds rounds on the same compiled step; each figure is the median over rounds.
Target: (b)/(a) <= 1.05.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_CACHE = REPO / "cache" / "synthetic-flowers-minilm.h5"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", default=str(DEFAULT_CACHE), help="embedding cache (default: %(default)s)")
    p.add_argument("--preset", choices=["auto", "cpu", "gpu"], default="auto", help="model/batch sizes (default auto)")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--ngf", type=int, help="override the preset's generator width")
    p.add_argument("--ndf", type=int, help="override the preset's discriminator width")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after compiling (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="alternating (a)/(b) rounds, median taken (default 3)")
    p.add_argument("--skip", default="", help="letters of measurements to skip, e.g. 'cd'")
    return p.parse_args(argv)


def timed(step, batches, n: int) -> float:
    """ms per step over n steps; synchronises on the last step's loss (GPU work is asynchronous)."""
    t = time.perf_counter()
    for _ in range(n):
        out = step(next(batches))
    float(out["d"])
    return (time.perf_counter() - t) * 1000 / n


def setup(args):
    import tensorflow as tf

    from gan.config import resolve
    from gan.data import BatchSampler, read_cache
    from gan.image_cache import load_or_build_image_cache
    from gan.loop import setup_runtime

    gpu = bool(tf.config.list_physical_devices("GPU"))
    overrides = {k: v for k, v in dict(preset=args.preset, batch_size=args.batch_size, ngf=args.ngf,
                                       ndf=args.ndf, embeddings=args.embeddings).items() if v is not None}
    data = read_cache(args.embeddings)
    cfg = replace(resolve(overrides, gpu), cache=data.info)
    facts = setup_runtime(cfg)
    images, valid, _ = load_or_build_image_cache(args.embeddings, data.image_paths, 64, print,
                                                 dataset_name=data.info.dataset_name)
    sampler = BatchSampler(data.caption_image, valid, cfg.batch_size, cfg.seed)
    return cfg, data, images, sampler, facts


def bench_a_b(cfg, data, images, sampler, args) -> tuple[float, float]:
    import numpy as np
    import tensorflow as tf

    from gan.data import make_dataset
    from gan.trainer import build_trainer

    trainer = build_trainer(cfg)
    step = tf.function(trainer.train_step)
    b, d = cfg.batch_size, cfg.cache.dim
    rng = np.random.default_rng(0)
    fixed = (tf.constant(rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8)),
             tf.constant(rng.standard_normal((b, d), dtype=np.float32)),
             tf.constant(rng.standard_normal((b, d), dtype=np.float32)))

    def constant():
        while True:
            yield fixed

    in_memory, pipeline = constant(), iter(make_dataset(images, data.vectors, sampler, 0))
    timed(step, in_memory, args.warmup)
    timed(step, pipeline, args.warmup)
    a, p = [], []
    for _ in range(args.rounds):
        a.append(timed(step, in_memory, args.steps))
        p.append(timed(step, pipeline, args.steps))
    return statistics.median(a), statistics.median(p)


def bench_c(cfg, data, images, sampler, args) -> float:
    """MiniLM on each batch's raw captions, then the same kind of step (built for 384-d if the cache is not)."""
    import tensorflow as tf

    from embeddings.registry import get_encoder
    from gan.trainer import build_trainer

    encoder = get_encoder("minilm")
    trainer = build_trainer(replace(cfg, cache=replace(cfg.cache, dim=encoder.dim)))
    step = tf.function(trainer.train_step)
    texts = data.texts

    def batches():
        s = 0
        while True:
            img, rows, wrong = sampler.batch(s)
            s += 1
            vec = encoder.encode([texts[r] for r in rows[:, 0]] + [texts[r] for r in wrong[:, 0]])  # [2B, 384]
            n = len(img)
            yield tf.constant(images[img]), tf.constant(vec[:n], tf.float32), tf.constant(vec[n:], tf.float32)

    it = batches()
    timed(step, it, args.warmup)
    return statistics.median(timed(step, it, args.steps) for _ in range(max(1, args.rounds // 2)))


def bench_d(cfg, data, images, sampler, args) -> float:
    import tensorflow as tf

    from gan import ta80
    from gan.data import make_dataset
    from gan.trainer import build_trainer

    vocab = ta80.build_vocab(data.texts)
    ids = ta80.encode_texts(data.texts, vocab)
    trainer = build_trainer(replace(cfg, arch="ta80"), len(vocab))
    step = tf.function(trainer.train_step)
    it = iter(make_dataset(images, ids, sampler, 0))
    timed(step, it, args.warmup)
    return statistics.median(timed(step, it, args.steps) for _ in range(max(1, args.rounds // 2)))


def main(argv=None) -> int:
    args = parse_args(argv)
    if not Path(args.embeddings).is_file():
        print(f"error: {args.embeddings} not found; build it with: python precompute_embeddings.py", file=sys.stderr)
        return 1
    cfg, data, images, sampler, facts = setup(args)
    print(f"device {facts['device']} | mixed precision {'on' if facts['mixed_precision'] else 'off'} | "
          f"ngf {cfg.ngf} ndf {cfg.ndf} batch {cfg.batch_size} | encoder {cfg.cache.encoder} dim {cfg.cache.dim} | "
          f"{args.steps} steps x {args.rounds} rounds")
    rows = []
    a, b = bench_a_b(cfg, data, images, sampler, args)
    rows += [("(a) GAN step, in-memory tensors", a), ("(b) cached pipeline (train_gan.py)", b)]
    if "c" not in args.skip:
        rows.append(("(c) MiniLM inside the step", bench_c(cfg, data, images, sampler, args)))
    if "d" not in args.skip:
        rows.append(("(d) --arch ta80 (GRU in the loop)", bench_d(cfg, data, images, sampler, args)))
    print(f"\n{'measurement':<38} {'ms/step':>9} {'img/s':>8} {'vs (a)':>8}")
    for name, ms in rows:
        print(f"{name:<38} {ms:>9.1f} {cfg.batch_size * 1000 / ms:>8.0f} {ms / a:>7.2f}x")
    verdict = "meets" if b / a <= 1.05 else "MISSES"
    print(f"\n(b)/(a) = {b / a:.3f} — {verdict} the target <= 1.05")
    return 0


if __name__ == "__main__":
    sys.exit(main())
