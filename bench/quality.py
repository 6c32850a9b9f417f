"""Fixed-budget quality benchmark on the synthetic flowers: MiniLM vs TF-IDF conditioning vs the ta80 baseline.

    python bench/quality.py                                   # CPU: 30 minutes of training per arm, then evaluation
    python bench/quality.py --steps 20000                     # a GPU: a step budget instead
    python bench/quality.py --runs minilm=runs/00001-synthetic-flowers-minilm   # reuse a finished run; its budget
                                                              # becomes the budget of the arms still to train

(a) minilm: our GAN on the MiniLM cache   (b) tfidf: our GAN on the TF-IDF cache
(c) ta80: the course baseline (--arch ta80: dense G/D, GRU text encoder trained in the loop on raw captions)
Same budget and seed for each, evaluated on the set's held-out test captions (tools/evaluate.py --run); one
table with the real-data reference beside it, written to bench/results/quality-<date>.md, .json and a bar chart .png.
Runs and the reuse record (comparison.json) live in --out: an interrupted benchmark continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.errors import UserError, run_cli  # noqa: E402

ARMS = ("minilm", "tfidf", "ta80")
DEFAULT_MINUTES = 30.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/quality.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "data" / "synthetic-flowers",
                   help="synthetic-flowers folder (default: %(default)s)")
    p.add_argument("--minutes", type=float, help=f"training minutes per arm (default {DEFAULT_MINUTES:g}, unless "
                                                 "--steps is given or --runs supplies the budget)")
    p.add_argument("--steps", type=int, help="training steps per arm (with --minutes: whichever comes first)")
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
    return next(iter(found.values())) if found else {"minutes": DEFAULT_MINUTES}


def table(state: dict) -> tuple[str, list[dict]]:
    """Markdown table (rows: metrics; columns: arms + real reference) and the same numbers as records."""
    from tools.evaluation.compare import metric_rows

    rows = {arm: metric_rows(state["arms"][arm], synthetic=True) for arm in ARMS}
    digits = {"FID": 2, "IS": 1, "diversity": 2, "ms/step": 0}
    heads = [f"({chr(97 + i)}) {arm}" for i, arm in enumerate(ARMS)]
    lines = ["| metric | " + " | ".join(heads) + " | real reference |", "|---" * (len(ARMS) + 2) + "|"]
    records = []
    with_metrics = next((arm for arm in ARMS if state["arms"][arm].get("metrics")), ARMS[0])
    for k, (label, _, real) in enumerate(rows[with_metrics]):  # the real references are the same for every arm
        values = [rows[arm][k][1] for arm in ARMS]
        lines.append(f"| {label} | " + " | ".join(_f(v, digits.get(label, 3)) for v in values) +
                     f" | {_f(real, digits.get(label, 3))} |")
        records.append({"metric": label, **dict(zip(ARMS, values)), "real": real})
    return "\n".join(lines), records


def _f(v, digits: int) -> str:
    if v is None:
        return "-"
    return str(v) if isinstance(v, int) else f"{v:.{digits}f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = parse_runs(args.runs)
    if not (args.data / "attributes.jsonl").is_file():
        raise UserError(f"--data {args.data}: not a synthetic-flowers folder (no attributes.jsonl); make it with "
                        f"python tools/make_synthetic_flowers.py --out {args.data} --n 8000 --seed 0")
    from tools.datasets import load_dataset
    from tools.evaluation.compare import Arm, Plan, run_comparison

    train = {**budget(args, runs), "seed": args.seed}
    # the linear probe is compare_encoders' question; the benchmark measures the GANs only
    arms = [Arm("minilm", "minilm", probe=False), Arm("tfidf", "tfidf", probe=False),
            Arm("ta80", "minilm", {"arch": "ta80"}, probe=False)]  # ta80 reads the raw captions of the cache
    plan = Plan(load_dataset(args.data), args.out, train=train, n_per_caption=args.n_per_caption, seed=args.seed,
                runs=runs)
    print(f"quality benchmark: budget {train} per arm; runs in {args.out}")
    state = run_comparison(arms, plan)
    text, records = table(state)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    arms_info = {a: {k: state["arms"][a].get(k) for k in ("run_dir", "cache", "steps", "ms_per_step")} for a in ARMS}
    header = (f"# Quality benchmark {date}\n\nData {args.data} ({plan.dataset.num_images} images); budget per arm "
              f"`{train}`; {args.n_per_caption} samples per test caption; runs: " +
              "; ".join(f"{a} = `{info['run_dir']}`" for a, info in arms_info.items()) + "\n\n")
    args.results.mkdir(parents=True, exist_ok=True)
    md, js = args.results / f"quality-{date}.md", args.results / f"quality-{date}.json"
    png = args.results / f"quality-{date}.png"
    from tools.evaluation.compare_report import chart

    chart(state, png)
    md.write_text(header + text + "\n", encoding="utf-8")
    js.write_text(json.dumps({"date": date, "data": str(args.data), "budget": train, "n_per_caption": args.n_per_caption,
                              "arms": arms_info, "table": records,
                              "metrics": {a: state["arms"][a].get("metrics") for a in ARMS}}, indent=2) + "\n")
    print(text)
    print(f"wrote {md}, {js} and {png}")
    return 0


if __name__ == "__main__":
    run_cli(main)
