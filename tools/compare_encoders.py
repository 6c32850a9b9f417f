"""Compare text encoders on one dataset: a linear probe of the caption vectors, then the same GAN budget for each.

    python tools/compare_encoders.py --data data/synthetic-flowers --encoders minilm,tfidf --minutes 30

For each encoder: build (or reuse) its embedding cache; on synthetic flowers, probe how linearly the caption
vectors encode each attribute (softmax regression, held-out images); train a GAN with the same budget and seed;
evaluate it (tools/evaluate.py --run). The number that lines up across encoders is R-precision by the
dataset's shared judge (one image-text matcher with a text encoder of its own, trained once per dataset); on
synthetic flowers, attribute accuracy too. Writes OUT/comparison.md (tables), OUT/comparison.png (chart) and
OUT/comparison.json (every number, and which run folder served which encoder). A re-run reuses finished runs
whose options match and their metrics, so an interrupted comparison continues where it stopped.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from tools.errors import UserError, run_cli  # noqa: E402


EXAMPLES = """examples:
  # the encoder question on the synthetic flowers: 30 CPU minutes per encoder, then tables and a chart
  python tools/compare_encoders.py --data data/synthetic-flowers --encoders minilm,tfidf --minutes 30

  # a GPU, a fixed number of steps, a GloVe file and a local BERT; results elsewhere
  python tools/compare_encoders.py --data data/synthetic-flowers --steps 20000 --out runs/cmp-gpu \\
      --encoders minilm,tfidf,glove:/models/glove.6B.300d.txt,hf:/models/bert-base-uncased?pooling=cls

  # any dataset (no attributes: R-precision, FID, IS and diversity against its own images), a tiny smoke test
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
    from gan.loop import train_run
    from tools.evaluation.compare import Arm, Plan, run_comparison

    dataset = dataset_from_args(args)
    out = args.out or Path("runs") / f"compare-{dataset.name}"
    plan = Plan(dataset, out, train=train_options(args), n_per_caption=args.n_per_caption, seed=args.seed,
                cache_dir=args.cache_dir, probe_images=args.probe_images, train_run=train_run)
    print(f"comparing {len(specs)} encoders on {dataset.name} ({dataset.num_images} images, "
          f"{dataset.num_captions} captions) -> {out}")
    state = run_comparison([Arm(s, s) for s in specs], plan)
    from tools.evaluation.compare_report import write_report

    write_report(state, out)
    print((out / "comparison.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'comparison.md'}, {out / 'comparison.png'}, {out / 'comparison.json'}")
    return 0


# --- report ------------------------------------------------------------------------------------------------------
if __name__ == "__main__":
    run_cli(main)
