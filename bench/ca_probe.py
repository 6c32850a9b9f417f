"""What a trained generator's conditioning augmentation passes on: can a linear probe read each attribute from the
cached text vector, from CA's mean μ (what G sees at sampling, ε = 0) and from a CA sample c = μ + σ·ε (what G
trains on)?

    python bench/ca_probe.py --runs b=runs/bench-quality/runs/00001-synthetic-flowers-minilm
    python bench/ca_probe.py --runs kl05=RUN_A,kl2=RUN_B --checkpoint 5000

The captions of 2 000 seeded labelled images of each run's own cache (those that name the attribute, labelled with
their image's true value, split by image as in tools/evaluation/probe.py) go through the run's CA layer exactly as
inside G (dfgan's unit text scale included). Beside the accuracies: the mean σ of CA's noise, the spread of μ across
captions (std per dimension, averaged) and the KL per dimension, so a count that G misses can be told apart from a
count that CA's noise hides. Labels are used here only, to score. Output: the table on stdout and in
bench/results/ca-probe-<date>.md; the numbers depend on the checkpoint only, not on the machine (up to rounding).
"""
from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]

from bench.d_swaps import parse_runs  # noqa: E402
from gan.config import GENERATOR_WEIGHTS  # noqa: E402
from tools.errors import UserError, run_cli  # noqa: E402
from tools.evaluation.real_data import ATTRIBUTES  # noqa: E402

VIEWS = ("text", "mu", "c")  # the cached vector, CA's mean, one CA sample


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/ca_probe.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="NAME=RUN_DIR,... trained runs (dfgan or stackgan) to compare")
    p.add_argument("--checkpoint", type=int, default=None, help="step of every run (default: each run's latest)")
    p.add_argument("--weights", default="auto", choices=GENERATOR_WEIGHTS,
                   help="which generator's CA: the run's sampling one (auto: EMA when trained with it), ema or raw")
    p.add_argument("--data", type=Path, default=REPO / "data" / "synthetic-flowers",
                   help="the synthetic-flowers folder with attributes.jsonl (default: %(default)s)")
    p.add_argument("--images", type=int, default=2000, help="labelled images whose captions are probed (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="image pick, probe split and the CA noise ε (default 0)")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    return p.parse_args(argv)


def ca_views(generator, vectors: np.ndarray, seed: int, batch: int = 4096) -> dict[str, np.ndarray]:
    """vectors [R, D] -> {"text", "mu", "c", "logvar"}: CA's outputs as the generator computes them (a sub-model
    from G's inputs to its c_z layer and its μ, log σ² outputs, so any text scaling inside G is applied)."""
    import keras
    import tensorflow as tf

    ca = generator.get_layer("ca")
    probe = keras.Model(generator.inputs, [generator.get_layer("c_z").output, *generator.outputs[1:]])
    eps = np.random.default_rng(seed).standard_normal((len(vectors), ca.c_dim)).astype(np.float32)
    z = np.zeros((len(vectors), generator.inputs[1].shape[-1]), np.float32)  # z does not reach c, μ or log σ²
    parts = []
    for i in range(0, len(vectors), batch):
        cz, mu, logvar = probe([tf.constant(a[i:i + batch]) for a in (vectors, z, eps)])
        parts.append((cz.numpy()[:, :ca.c_dim], mu.numpy(), logvar.numpy()))
    c, mu, logvar = (np.concatenate(p) for p in zip(*parts))
    return {"text": vectors, "mu": mu, "c": c, "logvar": logvar}


def noise_stats(views: dict[str, np.ndarray]) -> dict[str, float]:
    """σ of CA's noise against μ's spread across captions, and the KL of N(μ, σ²) from N(0, I) per dimension."""
    mu, logvar = views["mu"], views["logvar"]
    kl = 0.5 * (np.exp(logvar) + mu**2 - 1.0 - logvar)  # [R, C]
    return {"sigma": float(np.exp(0.5 * logvar).mean()), "mu_spread": float(mu.std(0).mean()),
            "kl_per_dim": float(kl.mean())}


def probe_run(run: Path, attributes: dict[str, dict], args) -> dict:
    from gan.archs import get_arch
    from gan.inference import load_generator
    from tools.evaluation.probe import labelled_captions, probe_views

    trained, cfg = load_generator(run, args.checkpoint, args.weights)
    if not get_arch(cfg.arch).has_ca:
        raise UserError(f"{run}: arch {cfg.arch} has no conditioning augmentation; pass a dfgan or stackgan run")
    vectors, named = labelled_captions(cfg.embeddings, attributes, seed=args.seed, max_images=args.images)
    views = ca_views(trained.model, vectors, args.seed)
    probes = probe_views({v: views[v] for v in VIEWS}, named, seed=args.seed)
    return {"step": trained.step, "arch": cfg.arch, "kl_weight": cfg.kl_weight, "probes": probes,
            **noise_stats(views)}


def report(results: dict[str, dict], args) -> str:
    lines = [f"Probe on the captions of {args.images} labelled images (seed {args.seed}), held-out accuracy by "
             f"attribute; generator weights: {args.weights}.", "",
             "| run | step | view | " + " | ".join(ATTRIBUTES) + " | mean | σ | μ spread | KL/dim |",
             "|---" * (len(ATTRIBUTES) + 7) + "|"]
    for name, r in results.items():
        for view in VIEWS:
            p = r["probes"][view]
            accs = " | ".join(f"{p[a]['accuracy']:.3f}" if p[a].get("accuracy") is not None else "-" for a in ATTRIBUTES)
            tail = (f"{r['sigma']:.3f} | {r['mu_spread']:.3f} | {r['kl_per_dim']:.3f}" if view == "c" else " | | ")
            lines.append(f"| {name} ({r['arch']}, kl {r['kl_weight']}) | {r['step']} | {view} | {accs} | "
                         f"{p['mean']:.3f} | {tail} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = parse_runs(args.runs)
    from bench.quality import shown
    from tools.evaluation.probe import read_attributes

    attributes = read_attributes(args.data)  # once, before any generator is loaded
    if attributes is None:
        raise UserError(f"--data {args.data}: no attributes.jsonl; pass the synthetic-flowers folder the runs used")
    results = {name: probe_run(run, attributes, args) for name, run in runs}
    text = report(results, args)
    print(text)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"ca-probe-{date}.md"
    out.write_text(f"# What CA passes on to G ({date})\n\n`python bench/ca_probe.py --runs "
                   f"{','.join(f'{n}={shown(r)}' for n, r in runs)}`\n\n{text}\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
