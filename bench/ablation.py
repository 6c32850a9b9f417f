"""Which ingredient of the dfgan recipe moves which number: one row per ingredient taken away, at one step budget.

    python bench/quality.py                              # first: its runs give the reference rows (it keeps step 2000)
    python bench/ablation.py                             # 2 000 steps of batch 64 per row, then evaluation
    python bench/ablation.py --steps 1500 --rows full,no-hard-negatives

Rows (each the dfgan-minilm or stackgan arm of bench/quality.py with one change):
  full               dfgan + MiniLM, the whole preset (hinge + MA-GP, EMA, DiffAugment, 50 % hard negatives)
  no-ema             the same run's raw generator: the EMA never feeds back into training, so this is exactly
                     "trained without EMA" at no training cost
  no-hard-negatives  --set hard_negatives=0 (every mismatched caption from a random other image)
  no-diffaug         --set diffaug= (no translation/cutout before D)
  stackgan           StackGAN-I, the pre-dfgan default (no EMA, no DiffAugment, random mismatches)
  stackgan-hard-negatives   stackgan with --set hard_negatives=0.5: the negatives alone, on the old arch
A row without changes of its own (full, no-ema, stackgan) is read from the bench/quality.py run at checkpoint
--steps when that run kept it (a run's weights at step S do not depend on its total budget: `steps` may change on
resume); otherwise it is trained here. Same seed and evaluation as bench/quality.py (tools/evaluate.py --run).
Output: bench/results/ablation-<date>.md and .json; runs and state in --out (an interrupted run continues).
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
from bench.quality import ARM_SPECS, shown  # noqa: E402
from tools.errors import UserError, run_cli  # noqa: E402

DEFAULT_STEPS = 2000
# row -> (bench/quality.py arm it starts from, GAN options it changes, generator weights evaluated, label)
ROWS = {
    "full": ("dfgan-minilm", {}, "auto", "dfgan + MiniLM, full preset"),
    "no-ema": ("dfgan-minilm", {}, "raw", "− EMA (raw G of the same run)"),
    "no-hard-negatives": ("dfgan-minilm", {"hard_negatives": 0.0}, "auto", "− hard negatives"),
    "no-diffaug": ("dfgan-minilm", {"diffaug": ""}, "auto", "− DiffAugment"),
    "stackgan": ("stackgan", {}, "auto", "stackgan (pre-dfgan default)"),
    "stackgan-hard-negatives": ("stackgan", {"hard_negatives": 0.5}, "auto", "stackgan + 50 % hard negatives"),
}
COLUMNS = [("petal_color", "petal colour"), ("center_color", "centre colour"), ("petal_count", "petal count"),
           ("petal_shape", "shape")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/ablation.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "data" / "synthetic-flowers",
                   help="synthetic-flowers folder (default: %(default)s)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="step budget of every row (default %(default)s)")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run and of the evaluation (default 0)")
    p.add_argument("--n-per-caption", type=int, default=2, help="noise samples per test caption (default 2)")
    p.add_argument("--quality-out", type=Path, default=REPO / "runs" / "bench-quality",
                   help="bench/quality.py's --out, whose runs give the rows without changes (default: %(default)s)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench-ablation",
                   help="new runs and ablation.json (default: %(default)s)")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results",
                   help="where ablation-<date>.md/.json go (default: %(default)s)")
    return p.parse_args(argv)


def quality_run(quality_out: Path, arm: str, steps: int, seed: int) -> Path | None:
    """The bench/quality.py run of `arm` if it kept checkpoint `steps` and trained with this seed, else None."""
    from gan.run_dir import load_config

    state_path = quality_out / "comparison.json"
    if not state_path.is_file():
        return None
    run = (json.loads(state_path.read_text(encoding="utf-8")).get("arms", {}).get(arm) or {}).get("run_dir")
    if not run or not (Path(run) / "checkpoints" / f"ckpt-{steps}.index").is_file():
        return None
    return Path(run) if load_config(run).seed == seed else None


def evaluate_at(run: Path, steps: int, weights: str, args, out: Path) -> dict:
    """tools/evaluate.py --run RUN --checkpoint STEPS --weights W, metrics written to `out`."""
    from tools.evaluate import main as evaluate_main

    evaluate_main(["--run", str(run), "--checkpoint", str(steps), "--weights", weights,
                   "--n-per-caption", str(args.n_per_caption), "--seed", str(args.seed), "--out", str(out)])
    return json.loads(out.read_text(encoding="utf-8"))


def train_row(name: str, args, state: dict, save) -> Path:
    """Train (or reuse) the row's own run through tools.evaluation.compare (same caches, budget and seed)."""
    from tools.datasets import load_dataset
    from gan.loop import train_run
    from tools.evaluation.compare import Arm, Plan, cache_stage, find_run

    base, changes, _, _ = ROWS[name]
    spec, arm_options = ARM_SPECS[base]
    arm = Arm(name, spec, {**arm_options, **changes}, probe=False)
    plan = Plan(load_dataset(args.data), args.out, train={"steps": args.steps, "seed": args.seed},
                n_per_caption=args.n_per_caption, seed=args.seed)
    entry = state["rows"].setdefault(name, {})
    want = cache_stage(arm, plan, entry, print)  # the arm's cache, built or reused, and the config of a new run
    run = find_run(arm, want, plan, entry, print)
    if run is None:
        print(f"[{name}] train: new run in {args.out / 'runs'} ({args.steps} steps, {arm.overrides})")
        run = train_run(want)
    else:
        print(f"[{name}] train: reusing finished run {run}")
    entry["run_dir"] = str(run.resolve())
    save()
    return run.resolve()


def table(state: dict, rows: list[str]) -> tuple[str, list[dict]]:
    heads = [label for _, label in COLUMNS] + ["FID", "R-precision (shared)", "diversity", "ms/step"]
    lines = ["| row | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    records, real = [], None
    for name in rows:
        entry = state["rows"].get(name) or {}
        m = entry.get("metrics") or {}
        acc = m.get("attribute_accuracy") or {}
        values = [(acc.get(k) or {}).get("accuracy") for k, _ in COLUMNS]
        values += [m.get("fid"), (m.get("r_precision_shared") or {}).get("value"),
                   (m.get("diversity") or {}).get("feature"), entry.get("ms_per_step")]
        lines.append(f"| {ROWS[name][3]} | " + " | ".join(_f(v, 1 if i == len(values) - 1 else 2 if i == 4 else 3)
                                                          for i, v in enumerate(values)) + " |")
        records.append({"row": name, "label": ROWS[name][3], "run_dir": entry.get("run_dir"),
                        "weights": ROWS[name][2], **dict(zip([k for k, _ in COLUMNS] + ["fid", "r_precision_shared",
                                                                                        "diversity", "ms_per_step"],
                                                             values))})
        if m and real is None:
            ceiling = m.get("attribute_ceiling") or {}
            real = [ceiling.get(k) for k, _ in COLUMNS] + [m.get("fid_floor"),
                                                           (m.get("r_precision_shared") or {}).get("real"),
                                                           (m.get("diversity") or {}).get("feature_real"), None]
    if real:
        lines.append("| real images | " + " | ".join(_f(v, 2 if i == 4 else 3) for i, v in enumerate(real)) + " |")
    return "\n".join(lines), records


def _f(v, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if not rows or any(r not in ROWS for r in rows):
        raise UserError(f"--rows {args.rows!r}: choose from {', '.join(ROWS)}")
    if args.steps < 1:
        raise UserError(f"--steps {args.steps}: must be at least 1")
    if not (args.data / "attributes.jsonl").is_file():
        raise UserError(f"--data {args.data}: not a synthetic-flowers folder (no attributes.jsonl); make it with "
                        f"python tools/make_synthetic_flowers.py --out {args.data} --n 8000 --seed 0")
    from tools.evaluation.compare import run_speed
    from tools.evaluation.report import METRICS_VERSION

    args.out.mkdir(parents=True, exist_ok=True)
    state_path = args.out / "ablation.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    state.setdefault("rows", {})

    def save():
        state_path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

    for name in rows:
        base, changes, weights, label = ROWS[name]
        run = None if changes else quality_run(args.quality_out, base, args.steps, args.seed)
        if run is not None:
            print(f"[{name}] {label}: checkpoint {args.steps} of the bench/quality.py run {run}")
        else:
            run = train_row(name, args, state, save)
        entry = state["rows"].setdefault(name, {})
        key = {"run_dir": str(run), "step": args.steps, "weights": weights, "n_per_caption": args.n_per_caption,
               "seed": args.seed, "metrics_version": METRICS_VERSION}
        entry.update(run_dir=str(run), ms_per_step=run_speed(run)["ms_per_step"])
        if entry.get("eval") == key and entry.get("metrics"):
            print(f"[{name}] evaluate: reused")
        else:
            print(f"[{name}] evaluate: step {args.steps}, weights {weights} ...")
            entry["metrics"] = evaluate_at(run, args.steps, weights, args, args.out / f"{name}.metrics.json")
            entry["eval"] = key
        save()

    text, records = table(state, rows)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    header = (f"# Ablation {date}\n\nMachine: {machine()}.\nData {shown(args.data)}; {args.steps} steps of batch 64 per row, "
              f"seed {args.seed}; {args.n_per_caption} samples per test caption (tools/evaluate.py --run). ms/step is "
              "the median logged interval of the row's run (contended when other jobs shared the CPU).\n\n")
    args.results.mkdir(parents=True, exist_ok=True)
    md, js = args.results / f"ablation-{date}.md", args.results / f"ablation-{date}.json"
    md.write_text(header + text + "\n", encoding="utf-8")
    js.write_text(json.dumps({"date": date, "steps": args.steps, "seed": args.seed, "n_per_caption": args.n_per_caption,
                              "rows": records}, indent=2) + "\n", encoding="utf-8")
    print(text)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    run_cli(main)
