"""Compare text encoders on one dataset: a linear probe of the caption vectors, then the same GAN budget for each.

    python tools/compare_encoders.py --data data/synthetic-flowers --encoders minilm,tfidf --minutes 30

For each encoder: build (or reuse) its embedding cache; on synthetic flowers, probe how linearly the caption
vectors encode each attribute (softmax regression, held-out images); train a GAN with the same budget and seed;
evaluate it (tools/evaluate.py --run). Writes OUT/comparison.md (tables), OUT/comparison.png (chart) and
OUT/comparison.json (every number, and which run folder served which encoder). A re-run reuses finished runs
whose options match and their metrics, so an interrupted comparison continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.errors import UserError, add_repo_to_path, run_cli  # noqa: E402

add_repo_to_path(__file__)

EXAMPLES = """examples:
  # the encoder question on the synthetic flowers: 30 CPU minutes per encoder, then tables and a chart
  python tools/compare_encoders.py --data data/synthetic-flowers --encoders minilm,tfidf --minutes 30

  # a GPU, a fixed number of steps, a GloVe file and a local BERT; results elsewhere
  python tools/compare_encoders.py --data data/synthetic-flowers --steps 20000 --out runs/cmp-gpu \\
      --encoders minilm,tfidf,glove:/models/glove.6B.300d.txt,hf:/models/bert-base-uncased?pooling=cls

  # any dataset (no attributes: R-precision, FID, IS and diversity only), a tiny model for a smoke test
  python tools/compare_encoders.py --data my.csv --encoders tfidf,minilm --steps 50 --set ngf=8 --set ndf=8
"""


def parse_args(argv):
    from tools.datasets import add_dataset_args

    p = argparse.ArgumentParser(prog="compare_encoders.py", description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(p)
    g = p.add_argument_group("comparison")
    g.add_argument("--encoders", required=True, metavar="SPEC,SPEC,...",
                   help="encoder specs to compare, comma-separated (see precompute_embeddings.py --list-encoders)")
    g.add_argument("--out", type=Path, metavar="DIR", help="results and run folders (default runs/compare-<dataset>)")
    g.add_argument("--cache-dir", type=Path, metavar="DIR", help="where embedding caches live (default cache/)")
    g.add_argument("--probe-images", type=int, default=2000, metavar="N",
                   help="images whose captions the linear probe reads, 80%% train / 20%% held out (default 2000)")
    t = p.add_argument_group("GAN budget (the same for every encoder)")
    t.add_argument("--minutes", type=float, metavar="M", help="training minutes per encoder")
    t.add_argument("--steps", type=int, metavar="N", help="training steps per encoder (with --minutes: whichever first; "
                                                           "neither: the preset's steps, cpu 5000, gpu 20000)")
    t.add_argument("--preset", choices=["auto", "cpu", "gpu"], help="model/batch sizes (default auto: gpu if visible)")
    t.add_argument("--seed", type=int, default=0, help="seed of every run, the probe split and evaluation noise (default 0)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other GAN option for every run, as in train_gan.py (e.g. --set ngf=8)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--n-per-caption", type=int, default=2, help="noise samples per test caption (default 2)")
    return p.parse_args(argv)


def split_specs(text: str) -> list[str]:
    """'minilm,tfhub-bert:/p,/e,tfidf' -> ['minilm', 'tfhub-bert:/p,/e', 'tfidf']: a piece that does not start
    with a known encoder family continues the previous spec (tfhub-bert takes two comma-separated paths)."""
    from embeddings.registry import FAMILIES

    specs: list[str] = []
    for piece in (s.strip() for s in text.split(",")):
        family = piece.split("?")[0].split(":")[0]
        if specs and family not in FAMILIES:
            specs[-1] += "," + piece
        elif piece:
            specs.append(piece)
    return specs


def train_options(args) -> dict:
    """The GAN options every run shares (validated by gan.config when each run is resolved)."""
    from gan.config import GanConfig, parse_set

    given = parse_set(args.set)
    typed = GanConfig().with_overrides(given, where="--set")  # "8" -> 8; unknown keys are errors here
    opts = {**{k: getattr(typed, k) for k in given}, "seed": args.seed}
    for name in ("minutes", "steps", "preset"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    return opts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    specs = split_specs(args.encoders)
    if not specs:
        raise UserError("--encoders is empty; give specs such as --encoders minilm,tfidf")
    if len(set(specs)) != len(specs):
        raise UserError(f"--encoders {args.encoders}: an encoder is listed twice")
    if args.n_per_caption < 1 or args.probe_images < 2:
        raise UserError("--n-per-caption must be >= 1 and --probe-images >= 2")
    from tools.datasets import dataset_from_args
    from tools.evaluation.compare import Arm, Plan, run_comparison

    dataset = dataset_from_args(args)
    out = args.out or Path("runs") / f"compare-{dataset.name}"
    plan = Plan(dataset, out, train=train_options(args), n_per_caption=args.n_per_caption, seed=args.seed,
                cache_dir=args.cache_dir, probe_images=args.probe_images)
    print(f"comparing {len(specs)} encoders on {dataset.name} ({dataset.num_images} images, "
          f"{dataset.num_captions} captions) -> {out}")
    state = run_comparison([Arm(s, s) for s in specs], plan)
    write_report(state, out)
    print((out / "comparison.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'comparison.md'}, {out / 'comparison.png'}, {out / 'comparison.json'}")
    return 0


# --- report ------------------------------------------------------------------------------------------------------
def _f(v, digits=3) -> str:
    if v is None:
        return "-"
    return str(v) if isinstance(v, int) else f"{v:.{digits}f}"


def markdown(state: dict) -> str:
    from tools.evaluation.compare import metric_rows
    from tools.evaluation.real_data import ATTRIBUTES

    synthetic, names = state["dataset"]["synthetic"], state["order"]
    arms, ev = state["arms"], state["evaluation"]
    labels = [label for label, _, _ in metric_rows(arms[names[0]], synthetic)]
    digits = {"FID": 2, "IS": 1, "diversity": 2, "ms/step": 0}
    lines = [f"# Encoder comparison on {state['dataset']['name']}", "",
             f"GAN options shared by every encoder: `{json.dumps(state['train'])}`; evaluation: "
             f"{ev['n_per_caption']} samples per caption, seed {ev['seed']}, on {ev.get('captions', 'test captions')}.", "",
             "## GAN trained on each encoder's cache", "",
             "| encoder | dim | " + " | ".join(labels) + " |", "|---" * (len(labels) + 2) + "|"]
    for name in names:
        rows = metric_rows(arms[name], synthetic)
        lines.append(f"| {name} | {arms[name].get('dim', '-')} | " + " | ".join(
            _f(v, digits.get(label, 3)) for label, v, _ in rows) + " |")
    real = _real_rows(state)
    lines.append("| real reference | | " + " | ".join(_f(r, digits.get(label, 3)) for label, _, r in real) + " |")
    lines += ["", "Real reference: attribute rows = the attribute classifier's held-out accuracy (the ceiling); "
              "FID = two disjoint real sets (the floor); IS, diversity = the same metric on real images. R-precision "
              "reads images through a matcher trained on each encoder's cache: compare it with that encoder's own "
              "'R-precision of real images'."]
    if not synthetic:
        lines.append("No attributes in this dataset: FID and IS are measured in the synthetic-flower classifier's "
                     "feature space against its synthetic reference, so only differences between encoders mean anything.")
    if synthetic:
        lines += ["", "## Linear probe: held-out accuracy of a softmax regression on the caption vectors alone", "",
                  "| encoder | " + " | ".join(ATTRIBUTES) + " | mean | majority class |", "|---" * 7 + "|"]
        for name in names:
            p = arms[name].get("probe") or {}
            majority = [p[a]["majority"] for a in ATTRIBUTES if (p.get(a) or {}).get("majority") is not None]
            lines.append(f"| {name} | " + " | ".join(_f((p.get(a) or {}).get("accuracy")) for a in ATTRIBUTES) +
                         f" | {_f(p.get('mean'))} | {_f(sum(majority) / len(majority) if majority else None)} |")
    lines += ["", "Runs: " + "; ".join(f"{n} = `{arms[n].get('run_dir')}`" for n in names)]
    lines += [f"{n}: {arms[n]['error']}" for n in names if arms[n].get("error")]
    return "\n".join(lines) + "\n"


def chart(state: dict, path: Path) -> None:
    """Synthetic sets: per attribute (and their mean), one bar per encoder — GAN images with the classifier's
    ceiling, and the linear probe beside it. Other sets: R-precision, FID, IS, diversity, one bar per encoder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tools.evaluation.compare import metric_rows

    names, arms, synthetic = state["order"], state["arms"], state["dataset"]["synthetic"]
    rows = {n: metric_rows(arms[n], synthetic) for n in names}
    real = _real_rows(state)
    nan = lambda v: np.nan if v is None else v  # noqa: E731  (a missing number draws no bar)
    colors = [f"C{k}" for k in range(len(names))]
    if synthetic:
        groups = [label.replace(" accuracy", "") for label, _, _ in rows[names[0]][:5]]
        probe_keys = [g if g != "mean attribute" else "mean" for g in groups]
        panels = [("GAN images: attribute accuracy (black: classifier ceiling)",
                   [[v for _, v, _ in rows[n][:5]] for n in names], [r for _, _, r in real[:5]]),
                  ("linear probe on the caption vectors: held-out accuracy",
                   [[_probe_value(arms[n], k) for k in probe_keys] for n in names], None)]
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
        width, x = 0.8 / len(names), np.arange(len(groups))
        for ax, (title, values, ceiling) in zip(axes, panels):
            for k, name in enumerate(names):
                ax.bar(x + (k - (len(names) - 1) / 2) * width, [nan(v) for v in values[k]], width, label=name,
                       color=colors[k])
            if ceiling:
                ax.scatter(x, [nan(c) for c in ceiling], marker="_", s=900, c="k")
            ax.set_xticks(x, groups, rotation=15)
            ax.set_ylim(0, 1.05)
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=8, loc="lower right")
    else:
        labels = ("R-precision", "FID", "IS", "diversity")
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.8))
        for ax, label in zip(axes, labels):
            ax.bar(range(len(names)), [nan(dict((lb, v) for lb, v, _ in rows[n])[label]) for n in names],
                   color=colors)
            ref = dict((lb, r) for lb, _, r in real)[label]
            if label == "R-precision":  # each encoder's matcher has its own real-image score
                own = [nan(dict((lb, v) for lb, v, _ in rows[n])["R-precision of real images"]) for n in names]
                ax.scatter(range(len(names)), own, marker="_", s=900, c="k", label="real images, own matcher")
                ax.legend(fontsize=8)
            if ref is not None:
                ax.axhline(ref, color="k", ls="--", lw=1, label="real reference")
                ax.legend(fontsize=8)
            ax.set_xticks(range(len(names)), names, rotation=15)
            ax.set_title(label + (" (lower is better)" if label == "FID" else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _real_rows(state: dict) -> list:
    """metric_rows of the first arm that has metrics (the real references are the same for every arm)."""
    from tools.evaluation.compare import metric_rows

    arms, synthetic = state["arms"], state["dataset"]["synthetic"]
    first = next((n for n in state["order"] if arms[n].get("metrics")), state["order"][0])
    return metric_rows(arms[first], synthetic)


def _probe_value(entry: dict, key: str):
    probe = entry.get("probe") or {}
    return probe.get("mean") if key == "mean" else (probe.get(key) or {}).get("accuracy")


def write_report(state: dict, out: Path) -> None:
    (out / "comparison.md").write_text(markdown(state), encoding="utf-8")
    chart(state, out / "comparison.png")


if __name__ == "__main__":
    run_cli(main)
