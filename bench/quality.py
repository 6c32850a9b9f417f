"""Fixed-budget quality benchmark on the synthetic flowers: the archs and encoders side by side at one step budget.

    python bench/quality.py                                   # 5 000 steps of batch 64 per arm, then evaluation
    python bench/quality.py --steps 20000 --set preset=gpu    # on a GPU
    python bench/quality.py --runs dfgan-minilm=runs/00001-synthetic-flowers-minilm   # reuse a finished run; its
                                                              # budget becomes the budget of the arms still to train
    python bench/quality.py --arms dfgan-minilm,stackgan      # a subset of the arms

(a) stackgan: StackGAN-I on the MiniLM cache (the default before dfgan)   (b) dfgan-minilm: --arch dfgan, MiniLM
(c) dfgan-tfidf: --arch dfgan on the TF-IDF cache   (d) ta80: the course baseline (dense G/D, GRU text encoder
trained in the loop on raw captions)   (e) dfgan-words: --arch dfgan-words (word attention, issue 30) on a MiniLM cache
built with --tokens (its own file, cache/<dataset>-minilm-tokens.h5)
The table's binding rows score the attribute-swap pairs (bench/data/swap_pairs.jsonl: petal and centre colour
exchanged; tools/evaluation/binding.py).
The step budget is the unit of comparison: it means the same on every machine. Minutes and ms/step are reported
beside it (they depend on the machine: quote lscpu with them).
Same budget and seed for each, evaluated on the set's held-out test captions (tools/evaluate.py --run); one
table with the real-data reference beside it, written to bench/results/quality-<date>.md, .json and a bar chart .png.
Runs and the reuse record (comparison.json) live in --out: an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]

from bench.machine import machine  # noqa: E402
from tools.errors import UserError, run_cli  # noqa: E402

ARMS = ("stackgan", "dfgan-minilm", "dfgan-tfidf", "ta80", "dfgan-words")
DEFAULT_STEPS = 5000
KEEP_CHECKPOINTS = 1000  # all of them: 11 at the cpu preset's ckpt_every 500 (10 MB each at ngf = ndf = 32)
ARM_SPECS = {  # arm -> (encoder spec of its cache, GAN options of the arm)
    "stackgan": ("minilm", {"arch": "stackgan"}),
    "dfgan-minilm": ("minilm", {"arch": "dfgan"}),
    "dfgan-tfidf": ("tfidf", {"arch": "dfgan"}),
    "ta80": ("minilm", {"arch": "ta80"}),  # ta80 reads the raw captions of the cache
    "dfgan-words": ("minilm", {"arch": "dfgan-words"}),  # reads the token states too (ARM_CACHE)
}
ARM_CACHE = {"dfgan-words": {"tokens": "auto"}}  # arm -> build_cache options of its cache (default: none)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/quality.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "data" / "synthetic-flowers",
                   help="synthetic-flowers folder (default: %(default)s)")
    p.add_argument("--steps", type=int, help=f"training steps per arm (default {DEFAULT_STEPS}, unless --runs "
                                             "supplies the budget)")
    p.add_argument("--minutes", type=float, help="training minutes per arm instead (not comparable across machines)")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to run (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a GAN option for every arm, e.g. preset=gpu (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run and of the evaluation (default 0)")
    p.add_argument("--n-per-caption", type=int, default=2, help="noise samples per test caption (default 2)")
    p.add_argument("--runs", default="", metavar="ARM=RUN_DIR,...",
                   help=f"finished runs to evaluate instead of training, arms {', '.join(ARMS)}; each must have "
                        "been trained with this benchmark's budget and options")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench-quality",
                   help="run folders and comparison.json (default: %(default)s)")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results",
                   help="where quality-<date>.md/.json go (default: %(default)s)")
    return p.parse_args(argv)


def parse_runs(text: str) -> dict[str, Path]:
    runs = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        arm, sep, path = item.partition("=")
        if not sep or arm not in ARMS:
            raise UserError(f"--runs {item!r}: expected ARM=RUN_DIR with ARM one of {', '.join(ARMS)}")
        if not (Path(path) / "config.json").is_file():
            raise UserError(f"--runs {arm}={path}: not a run folder (no config.json)")
        runs[arm] = Path(path)
    return runs


def budget(args, runs: dict[str, Path]) -> dict:
    """steps/minutes/epochs: the flags given, else the given runs' own (which must agree), else 30 minutes.
    Checked before anything runs: a given run trained with another budget is refused here, in one line."""
    from gan.run_dir import load_config

    found = {}
    for arm, run in runs.items():
        cfg = load_config(run)
        found[arm] = {k: v for k, v in (("steps", cfg.steps), ("minutes", cfg.minutes), ("epochs", cfg.epochs)) if v}
    if args.minutes is not None or args.steps is not None:
        given = {k: v for k, v in (("steps", args.steps), ("minutes", args.minutes)) if v}
        for arm, have in found.items():
            if have != given:
                raise UserError(f"--runs {arm}={runs[arm]} was trained with {have}, this benchmark's budget is "
                                f"{given}: leave out --minutes/--steps to adopt the runs' budget")
        return given
    if len({json.dumps(b, sort_keys=True) for b in found.values()}) > 1:
        raise UserError(f"--runs were trained with different budgets ({found}); give runs with one budget")
    return next(iter(found.values())) if found else {"steps": DEFAULT_STEPS}


def table(state: dict, arms: list[str]) -> tuple[str, list[dict]]:
    """Markdown table (rows: metrics; columns: arms + real reference) and the same numbers as records."""
    from tools.evaluation.compare import METRIC_DIGITS as digits
    from tools.evaluation.compare import metric_rows

    rows = {arm: metric_rows(state["arms"][arm], synthetic=True) for arm in arms}
    heads = [f"({chr(97 + ARMS.index(arm))}) {arm}" for arm in arms]
    lines = ["| metric | " + " | ".join(heads) + " | real reference |", "|---" * (len(arms) + 2) + "|"]
    records = []
    with_metrics = next((arm for arm in arms if state["arms"][arm].get("metrics")), arms[0])
    for k, (label, _, real) in enumerate(rows[with_metrics]):  # the real references are the same for every arm
        values = [rows[arm][k][1] for arm in arms]
        # ... but an arm measured before a row existed (the binding rows) has none: take another arm's
        real = next((rows[arm][k][2] for arm in arms if rows[arm][k][2] is not None), real)
        lines.append(f"| {label} | " + " | ".join(_f(v, digits.get(label, 3)) for v in values) +
                     f" | {_f(real, digits.get(label, 3))} |")
        records.append({"metric": label, **dict(zip(arms, values)), "real": real})
    return "\n".join(lines), records


def shown(path) -> str:
    """A path as the results files print it: relative to the repository when inside it (no machine's home)."""
    if not path:
        return str(path)
    path = Path(path).resolve()
    return str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def _f(v, digits: int) -> str:
    if v is None:
        return "-"
    return str(v) if isinstance(v, int) else f"{v:.{digits}f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = parse_runs(args.runs)
    chosen = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not chosen or any(a not in ARMS for a in chosen):
        raise UserError(f"--arms {args.arms!r}: choose from {', '.join(ARMS)}")
    if not (args.data / "attributes.jsonl").is_file():
        raise UserError(f"--data {args.data}: not a synthetic-flowers folder (no attributes.jsonl); make it with "
                        f"python tools/make_synthetic_flowers.py --out {args.data} --n 8000 --seed 0")
    from gan.config import parse_set
    from tools.datasets import load_dataset
    from gan.loop import train_run
    from tools.evaluation.compare import Arm, Plan, run_comparison

    # every checkpoint is kept (a cosmetic option: finished runs still match), so bench/ablation.py can read step 2 000
    train = {"keep_checkpoints": KEEP_CHECKPOINTS, **parse_set(args.set), **budget(args, runs), "seed": args.seed}
    # the linear probe is compare_encoders' question; the benchmark measures the GANs only
    arms = [Arm(name, *ARM_SPECS[name], probe=False, cache_options=ARM_CACHE.get(name, {})) for name in chosen]
    plan = Plan(load_dataset(args.data), args.out, train=train, n_per_caption=args.n_per_caption, seed=args.seed,
                runs=runs, train_run=train_run)
    print(f"quality benchmark: budget {train} per arm; runs in {args.out}")
    state = run_comparison(arms, plan)
    text, records = table(state, chosen)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    arms_info = {a: {k: state["arms"][a].get(k) for k in ("run_dir", "cache", "steps", "ms_per_step")} for a in chosen}
    header = (f"# Quality benchmark {date}\n\nMachine: {machine()}.\nData {shown(args.data)} ({plan.dataset.num_images} images); budget per arm "
              f"`{train}`; {args.n_per_caption} samples per test caption; runs: " +
              "; ".join(f"{a} = `{shown(info['run_dir'])}`" for a, info in arms_info.items()) + "\n\n")
    args.results.mkdir(parents=True, exist_ok=True)
    md, js = args.results / f"quality-{date}.md", args.results / f"quality-{date}.json"
    png = args.results / f"quality-{date}.png"
    from tools.evaluation.compare_report import chart
    from tools.evaluation.report import without_scores

    chart(state, png)
    md.write_text(header + text + "\n", encoding="utf-8")
    js.write_text(json.dumps({"date": date, "data": str(args.data), "budget": train, "n_per_caption": args.n_per_caption,
                              "arms": arms_info, "table": records,
                              "metrics": {a: without_scores(state["arms"][a].get("metrics")) for a in chosen}},
                             indent=2) + "\n")
    print(text)
    print(f"wrote {md}, {js} and {png}")
    return 0


if __name__ == "__main__":
    run_cli(main)
