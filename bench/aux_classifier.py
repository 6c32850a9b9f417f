"""TAC-GAN's auxiliary classifier (issue 33) on the synthetic flowers: runs with the class head beside one without,
evaluated side by side at one checkpoint step.

    # the arms: the default recipe, 2 000 steps of batch 64, seed 0, with the head on two label groupings
    python precompute_embeddings.py --labels petal_color,petal_shape --out cache/sf-minilm-pcs14.h5
    python precompute_embeddings.py --labels petal_color,center_color,petal_count,petal_shape \\
        --out cache/sf-minilm-all224.h5
    python train_gan.py --embeddings cache/sf-minilm-pcs14.h5 --preset cpu --steps 2000 --seed 0 --set aux_class=1
    python train_gan.py --embeddings cache/sf-minilm-all224.h5 --preset cpu --steps 2000 --seed 0 --set aux_class=1
    # then (the baseline: a run of the same recipe and seed without the head, read at the same checkpoint)
    python bench/aux_classifier.py --step 2000 --runs "none=runs/BASELINE,pcs14=runs/PCS14,all224=runs/ALL224"

Every arm is evaluated by tools/evaluate.py --run RUN --checkpoint STEP --quick (attribute accuracies, FID and
diversity in the attribute classifier's feature space) and, for an arm with the head, the head's accuracy on 1 000
held-out real flowers and on the generated images (tools/evaluation/aux_accuracy.py). Ratios are to the first arm.
ms/step: the median logged interval of the arm's run up to STEP (contended when other jobs shared the CPU).
Output: bench/results/aux-classifier-<date>-step<STEP>.md and .json; per-arm metrics in --out.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]

from bench.machine import machine  # noqa: E402
from tools.errors import UserError, run_cli  # noqa: E402

COLUMNS = [("petal_color", "petal colour"), ("center_color", "centre colour"), ("petal_count", "petal count"),
           ("petal_shape", "shape")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/aux_classifier.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True,
                   help="NAME=RUN_DIR,... the arms in table order (the first is the reference)")
    p.add_argument("--step", type=int, required=True, help="checkpoint step every arm is evaluated at")
    p.add_argument("--n-per-caption", type=int, default=2, help="noise samples per test caption (default 2)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    p.add_argument("--classifier-dir", type=Path, default=None, help="attribute classifier (tools/evaluate.py)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "bench-aux-classifier", help="per-arm metrics")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results", help="where the .md/.json go")
    p.add_argument("--date", default=datetime.now(timezone.utc).strftime("%Y-%m-%d"), help="date in the file names")
    return p.parse_args(argv)


def parse_runs(text: str) -> dict[str, Path]:
    runs = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path, "config.json").is_file():
            raise UserError(f"--runs {item!r}: expected NAME=RUN_DIR with RUN_DIR/config.json")
        runs[name] = Path(path)
    if not runs:
        raise UserError("--runs: give at least one NAME=RUN_DIR")
    return runs


def ms_per_step(run: Path, step: int) -> float | None:
    """Median logged ms/step of the run up to `step`, the first interval (tracing) left out."""
    log = run / "train.log"
    text = log.read_text(encoding="utf-8") if log.is_file() else ""
    ms = [float(m) for s, m in re.findall(r"^step (\d+)/?\d* .*\| (\d+(?:\.\d+)?) ms/step", text, re.M)
          if int(s) <= step]
    return statistics.median(ms[1:] if len(ms) > 1 else ms) if ms else None


def evaluate(name: str, run: Path, args) -> dict:
    """tools/evaluate.py at the arm's checkpoint; an earlier evaluation of the same run and step is reused (arms
    finish at different times: each is evaluated once, when its checkpoint exists)."""
    from tools.evaluate import main as evaluate_main

    out = args.out / f"{name}-step{args.step}.metrics.json"
    if out.is_file():
        m = json.loads(out.read_text(encoding="utf-8"))
        if Path(m.get("images", "")).resolve() == run.resolve() / "eval" / f"step_{args.step:06d}":
            print(f"[{name}] reusing {out}")
            return m
    argv = ["--run", str(run), "--checkpoint", str(args.step), "--quick", "--n-per-caption", str(args.n_per_caption),
            "--seed", str(args.seed), "--out", str(out)]
    if args.classifier_dir:
        argv += ["--classifier-dir", str(args.classifier_dir)]
    evaluate_main(argv)
    return json.loads(out.read_text(encoding="utf-8"))


def row_values(m: dict) -> dict:
    acc = m.get("attribute_accuracy") or {}
    aux = m.get("aux_classifier") or {}
    return {**{k: (acc.get(k) or {}).get("accuracy") for k, _ in COLUMNS}, "fid": m.get("fid"),
            "diversity": (m.get("diversity") or {}).get("feature"),
            "head_classes": aux.get("classes"), "head_real": (aux.get("real") or {}).get("accuracy"),
            "head_generated": (aux.get("generated") or {}).get("accuracy"),
            "head_generated_n": (aux.get("generated") or {}).get("count"), "chance": aux.get("chance")}


def table(records: list[dict], real: dict) -> str:
    heads = [label for _, label in COLUMNS] + ["FID", "FID ratio", "diversity", "head acc. real (chance)",
                                               "head acc. generated", "ms/step"]
    lines = ["| arm | head | " + " | ".join(heads) + " |", "|---" * (len(heads) + 2) + "|"]
    ref = records[0]["fid"]
    for r in records:
        head = f"aux_class={r['aux_class']:g}, {r['head_classes']} classes" if r["aux_class"] else "none"
        chance = f" ({r['chance']:.3f})" if r["chance"] else ""
        cells = [_f(r[k], 3) for k, _ in COLUMNS] + [
            _f(r["fid"], 2), _f(r["fid"] / ref if r["fid"] and ref else None, 2), _f(r["diversity"], 3),
            _f(r["head_real"], 3) + chance, _f(r["head_generated"], 3), _f(r["ms_per_step"], 0)]
        lines.append(f"| {r['arm']} | {head} | " + " | ".join(cells) + " |")
    lines.append("| real images | - | " + " | ".join(_f(real.get(k), 3) for k, _ in COLUMNS)
                 + f" | {_f(real.get('fid_floor'), 2)} | - | {_f(real.get('diversity'), 3)} | - | - | - |")
    return "\n".join(lines)


def _f(v, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = parse_runs(args.runs)
    from gan.run_dir import load_config

    args.out.mkdir(parents=True, exist_ok=True)
    records, real = [], {}
    for name, run in runs.items():
        cfg = load_config(run)
        print(f"[{name}] {run}: evaluating checkpoint {args.step} (aux_class={cfg.aux_class:g}, labels "
              f"{cfg.cache.labels or 'none'})")
        m = evaluate(name, run, args)
        records.append({"arm": name, "run_dir": str(run), "aux_class": cfg.aux_class, "labels": cfg.cache.labels,
                        "ms_per_step": ms_per_step(run, args.step), **row_values(m)})
        if not real:
            ceiling = m.get("attribute_ceiling") or {}
            real = {**{k: ceiling.get(k) for k, _ in COLUMNS}, "fid_floor": m.get("fid_floor"),
                    "diversity": (m.get("diversity") or {}).get("feature_real")}
    text = table(records, real)
    header = (f"# Auxiliary classifier (TAC-GAN) {args.date}\n\nMachine: {machine()}.\n{args.step} steps of batch "
              f"64 per arm, seed 0 (the default recipe; the arms differ only in the class head and its labels); "
              f"{args.n_per_caption} samples per held-out test caption; tools/evaluate.py --quick. Command: "
              f"`python bench/aux_classifier.py --step {args.step} --runs {args.runs}`\n\n")
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"aux-classifier-{args.date}-step{args.step}"  # one table per step budget
    md, js = args.results / f"{stem}.md", args.results / f"{stem}.json"
    md.write_text(header + text + "\n", encoding="utf-8")
    js.write_text(json.dumps({"date": args.date, "step": args.step, "arms": records, "real": real}, indent=2) + "\n",
                  encoding="utf-8")
    print(text)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    run_cli(main)
