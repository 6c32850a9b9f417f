"""GAN training-step cost, side by side in one run: ms/step, FLOPs and GFLOP/s per arch, what TF offers, what
the cached pipeline costs, and where a step's time goes.

    python precompute_embeddings.py                    # once: data/synthetic-flowers + cache/synthetic-flowers-minilm.h5
    python bench/train_step.py                         # preset of this machine (cpu: ngf=ndf=32, batch 64)
    python bench/train_step.py --steps 5 --rounds 3 --skip cdp --variants xla,lazy4
    python bench/train_step.py --image-size 128 --archs dfgan --skip cdp      # every row at 128 px (sizes side by
                                                       # side: bench/image_size.py)

Every row below is measured in the same process run, in rounds: each round runs --steps steps of every row in
turn (the order rotates per round), and each figure is the median over rounds. Ratios between rows are what
carries across a busy machine; absolute ms/step do not. On a machine shared with other jobs, alternate finely
(--steps 1 --rounds 15): bursts of others' work then hit every row alike; the 'rounds' column shows the spread.

Arch table (in-memory random tensors; GFLOP/step from gan.flops, counted from the layer shapes):
  plain      tf.function(trainer.train_step) in float32, as train_gan.py calls it (dfgan: MA-GP on every step)
  xla        the same with jit_compile=True on the whole step
  lazy4      MA-GP every 4th step: mean over a cycle of penalty=True once and penalty=False 3× (every arch of
             --archs: the recipe's cycle, magp_every=4)
  nogp       penalty=False on every step (the hinge loss alone)
  noema      cfg.ema off: what the EMA update of G costs
  contrast   dfgan with the batch contrastive term toggled (the preset has it on: the row is the step without it)
  noctx      dfgan-words without word context (word_context=0; its preset reads 1), the lazy MA-GP cycle
  bindg      G's binding term on (exchanged_g=1, a quarter of the rows exchanged: gan.losses.binding_rank_loss),
             the recipe's lazy MA-GP cycle, beside that cycle without it; GFLOP/step leaves its D head pass out
  bindgd     bindg with D's binding term as well (exchanged_d=4: a loss on logits the step computes anyway); for
             dfgan-words both rows without word context
  bindctx    bindgd with word_context=1 (G's keys and D's word embedding read each word's neighbours): the recipe
  bf16       keras mixed_bfloat16 policy (AVX512_BF16: train_gan.py's auto policy on such a CPU); its "of peak"
             is against the bf16 peak (2× fp32)
  intra1-inter2, intra2-inter1   TF thread pools (each its own child process: set before TF starts)
  onednn-off TF_ENABLE_ONEDNN_OPTS=0 (Eigen kernels, for bit-identical reruns), a child process
  matmul     a 2048² fp32 tf.matmul: the FLOP/s this CPU really reaches now, beside the lscpu peak
Pipeline table:
  (a) the GAN step on in-memory tensors (= the plain row of --arch): the limit, no input pipeline at all
  (b) the real cached pipeline: uint8 image cache + cached vectors, tf.data with prefetch (what train_gan.py runs)
  (b-blas) the same with the hard-negative miner's product on the BLAS library's default threads (before
           gan/negatives.py limited it to one): what a second thread pool beside TF's costs on this machine
  (b0) the same without hard negatives: what the miner costs at all
  (c) the same GAN with the MiniLM encoder run inside the step on the raw captions: what the cache avoids
  (d) --arch ta80 on its own pipeline (GRU text encoder trained in the loop on raw captions)
  Target: (b)/(a) <= 1.05.
Phase profile (skip with p): the TF profiler's op times for the --arch step, summed by phase (bench/step_profile.py),
in float32 and in mixed_bfloat16.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]

from bench.step_rows import ChildRow, Row, build_step, random_batch, repeat, step_row  # noqa: E402
from gan.archs import ARCHS  # noqa: E402  (the registry alone: no TF before the child rows start)

DEFAULT_CACHE = REPO / "cache" / "synthetic-flowers-minilm.h5"
VARIANTS = ("xla", "lazy4", "nogp", "noema", "contrast", "noctx", "bindg", "bindgd", "bindctx", "bf16",
            "intra1-inter2", "intra2-inter1", "onednn-off")
CHILD_VARIANTS = {"intra1-inter2": dict(intra=1, inter=2), "intra2-inter1": dict(intra=2, inter=1),
                  "onednn-off": dict(env={"TF_ENABLE_ONEDNN_OPTS": "0"})}
LAZY_EVERY = 4
LAZY_CYCLE = (True,) + (False,) * (LAZY_EVERY - 1)  # penalty flags of one lazy MA-GP cycle
MATMUL_N = 2048
BF16_PEAK_FACTOR = 2  # AVX512_BF16 VDPBF16PS: a bf16 pair per fp32 lane, so twice the fp32 FLOP per cycle


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", default=str(DEFAULT_CACHE), help="embedding cache (default: %(default)s)")
    p.add_argument("--preset", choices=["auto", "cpu", "gpu"], default="auto", help="model/batch sizes (default auto)")
    p.add_argument("--arch", default="dfgan", choices=ARCHS, help="arch of the pipeline rows and the profile")
    p.add_argument("--archs", default=",".join(ARCHS), help="archs of the arch table (default %(default)s)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"rows beside plain, for --arch (xla, bf16 for every arch); from {', '.join(VARIANTS)}; '' none")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--image-size", type=int, choices=(64, 128, 256), help="image side of every row (default 64; "
                   "the image cache is built at it for the pipeline rows)")
    p.add_argument("--ngf", type=int, help="override the preset's generator width")
    p.add_argument("--ndf", type=int, help="override the preset's discriminator width")
    p.add_argument("--token-length", type=int, default=32,
                   help="L of the random token states of an arch that reads words, when --embeddings has none "
                        "(default %(default)s)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per row per round (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds, median taken (default 3)")
    p.add_argument("--skip", default="", help="letters to skip: b c d (pipeline rows), p (profile), m (matmul)")
    p.add_argument("--fma-units", type=int, help="FMA units per core for the peak (default: a guess from lscpu)")
    p.add_argument("--profile-steps", type=int, default=4, help="steps under the TF profiler (default 4)")
    args = p.parse_args(argv)
    args.archs = [a for a in args.archs.split(",") if a]
    args.variants = [v for v in args.variants.split(",") if v]
    for name in args.archs:
        if name not in ARCHS:
            p.error(f"--archs {name!r}: choose from {', '.join(ARCHS)}")
    for name in args.variants:
        if name not in VARIANTS:
            p.error(f"--variants {name!r}: choose from {', '.join(VARIANTS)}")
    return args


def overrides_of(args, arch: str) -> dict:
    return {k: v for k, v in dict(preset=args.preset, batch_size=args.batch_size, ngf=args.ngf, ndf=args.ndf,
                                  image_size=args.image_size,
                                  embeddings=args.embeddings, arch=arch).items() if v is not None}



def arch_rows(args, base_cfg, vocab_size: int) -> tuple[list[Row], dict]:
    """Rows of the arch table (in-process ones; child-process rows come from child_rows). Also returns
    {arch: (cfg, trainer, step)} of the plain rows for the pipeline rows and the profile."""
    from gan.archs import get_arch
    from gan.config import resolve

    rows, plain = [], {}
    for arch in args.archs:
        cache = base_cfg.cache
        if get_arch(arch).words and not cache.token_length:  # a sentence-only cache: random words of this length
            cache = replace(cache, token_length=args.token_length)
        cfg = replace(resolve(overrides_of(args, arch), base_cfg.preset == "gpu"), cache=cache)
        batches = repeat(random_batch(cfg, vocab_size))
        trainer, step = build_step(cfg, vocab_size)
        plain[arch] = (cfg, trainer, step)
        rows.append(step_row("arch", arch, "plain", cfg, trainer, step, batches, args.warmup))
        if "xla" in args.variants:
            tr, st = build_step(cfg, vocab_size, xla=True)
            rows.append(step_row("arch", arch, "xla (jit_compile)", cfg, tr, st, batches, args.warmup))
        if "bf16" in args.variants:
            tr, st = build_step(cfg, vocab_size, policy="mixed_bfloat16")
            rows.append(step_row("arch", arch, "mixed_bfloat16 (bf16 peak)", cfg, tr, st, batches, args.warmup))
        if "lazy4" in args.variants and cfg.loss == "magp":  # every arch: the recipe's cycle
            rows.append(step_row("arch", arch, f"lazy MA-GP (1 in {LAZY_EVERY})", cfg, trainer, step, batches,
                                 args.warmup, LAZY_CYCLE))
        if arch != args.arch:
            continue
        if "nogp" in args.variants and cfg.loss == "magp":
            rows.append(step_row("arch", arch, "no MA-GP (penalty=False)", cfg, trainer, step, batches, args.warmup,
                                 (False,)))
        if "noema" in args.variants and cfg.ema:
            c = replace(cfg, ema=False)
            tr, st = build_step(c, vocab_size)
            rows.append(step_row("arch", arch, "no EMA update", c, tr, st, batches, args.warmup))
        if "contrast" in args.variants and "contrastive" in get_arch(cfg.arch).own_options:
            c = replace(cfg, contrastive=0.0 if cfg.contrastive else 1.0)
            tr, st = build_step(c, vocab_size)
            label = "without the contrastive term" if cfg.contrastive else "with the contrastive term"
            rows.append(step_row("arch", arch, label, c, tr, st, batches, args.warmup))
        words = get_arch(cfg.arch).words
        if "noctx" in args.variants and words and cfg.word_context:
            c = replace(cfg, word_context=0)
            tr, st = build_step(c, vocab_size)
            rows.append(step_row("arch", arch, f"lazy 1/{LAZY_EVERY}, word context 0", c, tr, st, batches,
                                 args.warmup, LAZY_CYCLE))
        for variant, d_weight, context, label in (
                ("bindg", 0.0, 0, "G binding term"), ("bindgd", 4.0, 0, "G and D binding terms"),
                ("bindctx", 4.0, 1, "G and D binding terms")):
            if variant in args.variants and get_arch(cfg.arch).reads == "vectors" and (not context or words):
                c = replace(cfg, exchanged_cache="(random rows)", exchanged_g=1.0, exchanged_d=d_weight,
                            word_context=context)
                tr, st = build_step(c, vocab_size)
                label += f", word context {context}" if words else ""
                rows.append(step_row("arch", arch, f"lazy 1/{LAZY_EVERY} + {label}", c, tr, st,
                                     repeat(random_batch(c, vocab_size)), args.warmup, LAZY_CYCLE))
    return rows, plain



# ------------------------------------------------------------------------------------------------ rows
def matmul_row() -> Row:
    import tensorflow as tf

    a = tf.random.normal([MATMUL_N, MATMUL_N], seed=1)
    mm = tf.function(lambda x: tf.matmul(x, x))

    def run(n):
        t = time.perf_counter()
        for _ in range(n):
            out = mm(a)
        float(out[0, 0])
        return (time.perf_counter() - t) * 1000 / n

    run(2)
    return Row("arch", "-", f"matmul {MATMUL_N}² fp32", run, 2.0 * MATMUL_N ** 3)


def pipeline_rows(args, plain, data, images, vocab) -> list[Row]:
    """(b)-(d) ((a) is the plain --arch row); (b) shares the plain --arch step, (d) the plain ta80 step when the
    arch table has one."""
    from gan import ta80
    from gan.archs import get_arch
    from gan.data import BatchSampler, make_dataset

    cfg, trainer, step = plain[args.arch]
    reads_vectors = get_arch(cfg.arch).reads == "vectors"
    image_array, valid, _ = images
    sampler = BatchSampler(data.caption_image, valid, cfg.batch_size, cfg.seed, cfg.caption_mean_k)
    rows = []
    if "b" not in args.skip:
        conditions = data.vectors if reads_vectors else ta80.encode_texts(data.texts, vocab)
        ds = make_dataset(image_array, conditions, sampler, 0, negatives=_negatives(cfg, data, sampler))
        rows.append(step_row("pipeline", args.arch, "(b) cached pipeline (train_gan.py)", cfg, trainer, step,
                             iter(ds), args.warmup))
        miner = _negatives(cfg, data, sampler)
        if miner is not None:
            miner.blas_threads = None
            ds = make_dataset(image_array, conditions, sampler, 0, negatives=miner)
            rows.append(step_row("pipeline", args.arch, "(b-blas) miner on all BLAS threads", cfg, trainer, step,
                                 iter(ds), args.warmup))
            ds = make_dataset(image_array, conditions, sampler, 0)
            rows.append(step_row("pipeline", args.arch, "(b0) no hard negatives", cfg, trainer, step, iter(ds),
                                 args.warmup))
    if "c" not in args.skip and reads_vectors:
        rows.append(minilm_row(args, cfg, data, image_array, sampler))
    if "d" not in args.skip:
        if "ta80" in plain:
            ta_cfg, ta_trainer, ta_step = plain["ta80"]
        else:
            ta_cfg = replace(cfg, arch="ta80", **ta80.ARCH.preset)
            ta_trainer, ta_step = build_step(ta_cfg, len(vocab))
        ids = ta80.encode_texts(data.texts, vocab)
        ta_sampler = BatchSampler(data.caption_image, valid, ta_cfg.batch_size, ta_cfg.seed)
        rows.append(step_row("pipeline", "ta80", "(d) --arch ta80 (GRU in the loop)", ta_cfg, ta_trainer, ta_step,
                             iter(make_dataset(image_array, ids, ta_sampler, 0)), args.warmup))
    return rows


def _negatives(cfg, data, sampler):
    """The hard-negative miner train_gan.py would use (None where the loop has none or the arch needs none)."""
    try:
        from gan.loop import hard_negatives
    except ImportError:
        return None
    return hard_negatives(cfg, data, sampler, lambda *_: None)


def minilm_row(args, cfg, data, images, sampler) -> Row:
    """MiniLM on each batch's raw captions, then the same kind of step (built for 384-d if the cache is not)."""
    import tensorflow as tf

    from embeddings.registry import get_encoder

    encoder = get_encoder("minilm")
    c = replace(cfg, cache=replace(cfg.cache, dim=encoder.dim))
    trainer, step = build_step(c, 0)
    texts = data.texts

    def batches():
        s = 0
        while True:
            img, rows, wrong = sampler.batch(s)
            s += 1
            vec = encoder.encode([texts[r] for r in rows[:, 0]] + [texts[r] for r in wrong[:, 0]])  # [2B, 384]
            n = len(img)
            yield tf.constant(images[img]), tf.constant(vec[:n], tf.float32), tf.constant(vec[n:], tf.float32)

    return step_row("pipeline", cfg.arch, "(c) MiniLM inside the step", c, trainer, step, batches(), args.warmup)



# ------------------------------------------------------------------------------------------------ main
def setup(args):
    import tensorflow as tf

    from gan import ta80
    from gan.config import resolve
    from gan.data import read_cache
    from gan.image_cache import load_or_build_image_cache
    from gan.loop import setup_runtime

    gpu = bool(tf.config.list_physical_devices("GPU"))
    data = read_cache(args.embeddings)
    cfg = replace(resolve(overrides_of(args, args.arch), gpu), cache=data.info)
    facts = setup_runtime(cfg)
    images = load_or_build_image_cache(args.embeddings, data.image_paths, cfg.image_size, print,
                                       dataset_name=data.info.dataset_name)  # (uint8 [M, S, S, 3], valid, path)
    return cfg, data, images, ta80.build_vocab(data.texts), facts


def machine_peak(args):
    from gan.flops import cpu_peak

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return cpu_peak(lscpu, cpuinfo, args.fma_units)


def run_rounds(rows: list[Row], args) -> None:
    t0 = time.perf_counter()
    for r in range(args.rounds):
        k = r % len(rows)
        for row in rows[k:] + rows[:k]:  # rotate the order: no row always runs first after a slow one
            row.times.append(row.run(args.steps))
        print(f"round {r + 1}/{args.rounds} done ({time.perf_counter() - t0:.0f} s)", flush=True)


def print_flop_accounting(plain) -> None:
    from gan.flops import train_step_flops

    print("\nFLOPs per step, from the layer shapes (gan/flops.py): forward = G + 2·text + 2·D_enc + 3·D_head;"
          "\nbackward = 2 × forward; G tape's own pass back through D on the fakes = D_enc + D_head;"
          "\nMA-GP = 3 × (D_enc + D_head) on the real pairs (1st-order gradient + its gradient). Elementwise ops"
          " not counted.")
    print(f"{'arch':<9} {'G':>8} {'text':>7} {'D_enc':>7} {'D_head':>7}  MFLOP/sample | {'fwd':>6} {'bwd':>6} "
          f"{'G-tape':>6} {'MA-GP':>6} {'total':>6}  GFLOP/step (batch)")
    for arch, (cfg, trainer, _) in plain.items():
        f = train_step_flops(trainer, cfg.batch_size)
        print(f"{arch:<9} {f.g / 1e6:>8.1f} {f.text / 1e6:>7.1f} {f.d_encoder / 1e6:>7.1f} {f.d_head / 1e6:>7.1f}"
              f"               | {f.forward / 1e9:>6.2f} {f.backward / 1e9:>6.2f} {f.g_tape_extra / 1e9:>6.2f} "
              f"{f.magp / 1e9:>6.2f} {f.total / 1e9:>6.2f}  ({cfg.batch_size})")


def print_arch_table(rows: list[Row], batch: int, peak) -> None:
    """One line per row; 'rounds' is the range of the row's per-round ratio to its arch's plain row (same round),
    which shows how much the busy machine moved the ratio."""
    plain = {r.arch: r for r in rows if r.name == "plain"}
    print(f"\n{'arch':<9} {'row':<28} {'ms/step':>8} {'img/s':>6} {'vs plain':>8} {'rounds':>11} {'GFLOP/step':>10} "
          f"{'GFLOP/s':>8} {'of peak':>7}")
    for r in rows:
        gflops = r.flops / r.ms / 1e6
        of_peak = gflops / (peak.gflops * (BF16_PEAK_FACTOR if "bfloat16" in r.name and peak.has_bf16 else 1))
        img = f"{batch * 1000 / r.ms:>6.0f}" if r.arch != "-" else f"{'':>6}"
        ratio, spread = f"{'':>8}", f"{'':>11}"
        if r.arch in plain:
            per_round = [t / p for t, p in zip(r.times, plain[r.arch].times)]
            ratio = f"{r.ms / plain[r.arch].ms:>7.2f}x"
            spread = f"{min(per_round):>5.2f}-{max(per_round):<5.2f}"
        print(f"{r.arch:<9} {r.name:<28} {r.ms:>8.1f} {img} {ratio} {spread} {r.flops / 1e9:>10.2f} {gflops:>8.1f} "
              f"{of_peak:>6.1%}")


def print_pipeline_table(a: Row, rows: list[Row], batch: int) -> None:
    print(f"\n{'measurement':<38} {'ms/step':>9} {'img/s':>8} {'vs (a)':>8}")
    for name, ms in [("(a) GAN step, in-memory tensors", a.ms)] + [(r.name, r.ms) for r in rows]:
        print(f"{name:<38} {ms:>9.1f} {batch * 1000 / ms:>8.0f} {ms / a.ms:>7.2f}x")
    b = next((r for r in rows if r.name.startswith("(b)")), None)
    if b is not None:
        verdict = "meets" if b.ms / a.ms <= 1.05 else "MISSES"
        print(f"\n(b)/(a) = {b.ms / a.ms:.3f} — {verdict} the target <= 1.05")


def profile(args, cfg, vocab_size: int) -> None:
    """Phase profile of the plain --arch step (MA-GP on), in float32 and under mixed_bfloat16."""
    from bench.step_profile import instrument, print_profile, profile_step

    batch = random_batch(cfg, vocab_size)
    for policy in ("float32", "mixed_bfloat16"):
        trainer, step = build_step(cfg, vocab_size, policy=policy)
        instrument(trainer)  # name scopes only; a fresh trainer, so the measured rows above are untouched
        for _ in range(args.warmup + 1):
            step(batch, True)
        print_profile(f"phase profile of the {cfg.arch} step ({policy}, MA-GP on)",
                      *profile_step(step, batch, args.profile_steps))


def main(argv=None) -> int:
    args = parse_args(argv)
    if not Path(args.embeddings).is_file():
        print(f"error: {args.embeddings} not found; build it with: python precompute_embeddings.py", file=sys.stderr)
        return 1
    cfg, data, images, vocab, facts = setup(args)
    peak = machine_peak(args)
    children = [ChildRow(name, args.arch, overrides_of(args, args.arch), cfg.cache.dim, len(vocab), args.warmup,
                         CHILD_VARIANTS[name])
                for name in args.variants if name in CHILD_VARIANTS] if args.arch in args.archs else []
    try:
        rows, plain = arch_rows(args, cfg, len(vocab))
        rows += [c.ready() for c in children]
        if "m" not in args.skip:
            rows.append(matmul_row())
        pipe = pipeline_rows(args, plain, data, images, vocab) if args.arch in plain else []
        print(f"device {facts['device']} | rows float32 unless named (train_gan.py's policy here: "
              f"{facts.get('policy', 'float32')}) | "
              f"ngf {cfg.ngf} ndf {cfg.ndf} batch {cfg.batch_size} | encoder {cfg.cache.encoder} dim {cfg.cache.dim}"
              f" | {args.steps} steps x {args.rounds} rounds, {len(rows) + len(pipe)} rows alternated", flush=True)
        run_rounds(rows + pipe, args)
    finally:
        for c in children:
            c.close()
    print(f"\nCPU {peak.model}: {peak.cores} cores x {peak.ghz:.3f} GHz x {peak.flop_per_cycle} fp32 FLOP/cycle "
          f"({peak.lanes} lanes x {'2 (FMA)' if peak.has_fma else '1'} x {peak.fma_units} FMA unit(s): {peak.why})"
          f"\n  = {peak.gflops:.0f} GFLOP/s fp32 peak; "
          + (f"bf16 dot products (AVX512_BF16) {BF16_PEAK_FACTOR}x that. " if peak.has_bf16 else
             "no AVX512_BF16/AMX: bf16 rows are emulated in fp32 units (their 'of peak' is against the fp32 peak). ")
          + "Machine shared with other engineers: read the ratios.")
    print_flop_accounting(plain)
    print_arch_table(rows, cfg.batch_size, peak)
    if args.arch in plain:
        print_pipeline_table(next(r for r in rows if r.arch == args.arch and r.name == "plain"), pipe,
                             cfg.batch_size)
    if "p" not in args.skip:
        profile(args, plain.get(args.arch, (cfg,))[0], len(vocab))
    return 0


if __name__ == "__main__":
    sys.exit(main())
