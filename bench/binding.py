"""Binding benchmark: trained runs side by side on the attribute-swap pairs, with every other metric beside them.

    python bench/binding.py --runs dfgan-minilm=runs/bench-quality/runs/00001-synthetic-flowers-minilm
    python bench/binding.py --runs dfgan-minilm=RUN_A,dfgan-words=RUN_B          # the sentence arm vs the word arm
    python bench/binding.py --runs dfgan-minilm=RUN_A --checkpoint 2000 --quick   # an earlier checkpoint, no R-precision

Each run is evaluated as tools/evaluate.py --run evaluates it (the held-out test captions, then the 118 swap pairs of
bench/data/swap_pairs.jsonl, both members of a pair with the same noise; tools/evaluation/binding.py), with the same
seed and samples. Writes bench/results/binding-<date>[-NAME].md (table, machine, runs; text below its "<!-- notes -->"
line is kept when the file is rewritten), .json (every metric) and -grid.png (bench/binding_grid.py: the first
held-out pairs, caption A | caption B, runs side by side).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

from tools.errors import UserError, run_cli  # noqa: E402

NOTES = "<!-- notes -->"
# an absolute path up to its first runs/, data/, cache/ or bench/ folder: results name paths as a checkout sees them
_MACHINE_PREFIX = re.compile(r"(?<![\w.:/~-])/(?:[\w.+-]+/)*?((?:runs|data|cache|bench)/)")


def portable(text: str) -> str:
    """Text with the repository's own path, and any absolute path's part before runs/, data/, cache/ or bench/,
    dropped ("/srv/x/runs/baseline/00001-a" -> "runs/baseline/00001-a"): the results cite no machine's folders."""
    return _MACHINE_PREFIX.sub(r"\1", text.replace(str(REPO) + "/", ""))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/binding.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, metavar="LABEL=RUN_DIR[,LABEL=RUN_DIR]",
                   help="one to six runs (the first is the one the others are paired against)")
    p.add_argument("--checkpoint", type=int, help="checkpoint step of every run (default: each run's latest)")
    p.add_argument("--n-per-caption", type=int, default=2, help="noise samples per test caption (default 2)")
    p.add_argument("--swap-samples", type=int, default=4, help="noise samples per swap-pair caption (default 4)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    p.add_argument("--quick", action="store_true", help="leave out both R-precisions (matchers train on first use)")
    p.add_argument("--reuse", action="store_true",
                   help="reuse a run's metrics already in --work for the same step (made with the same seed and "
                        "samples: delete the file otherwise)")
    p.add_argument("--grid-pairs", type=int, default=6, help="pairs in the grid (default 6)")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "bench-binding",
                   help="where each run's metrics JSON goes (default: %(default)s)")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results", help="default: %(default)s")
    p.add_argument("--name", default="", help="suffix of the results files, binding-<date>-NAME.* (default: none), so "
                                              "a second comparison on one day does not overwrite the first")
    return p.parse_args(argv)


def evaluate(label: str, run: Path, args) -> dict:
    """tools/evaluate.py --run RUN (binding on), metrics written to WORK/<label>-step<N>.json; returns them."""
    from gan.run_dir import find_checkpoint
    from tools.evaluate import main as evaluate_main

    step = int(find_checkpoint(run, args.checkpoint).rsplit("-", 1)[-1])
    out = args.work / f"{label}-step{step}.json"
    argv = ["--run", str(run), "--n-per-caption", str(args.n_per_caption), "--seed", str(args.seed),
            "--swap-samples", str(args.swap_samples), "--checkpoint", str(step), "--out", str(out)]
    if not (args.reuse and out.exists()):  # --reuse: an evaluation of the same run and step made earlier
        evaluate_main(argv + (["--quick"] if args.quick else []))
    m = json.loads(out.read_text(encoding="utf-8"))
    if not m.get("binding"):
        raise UserError(f"--runs {label}={run}: no binding rows (is its dataset a synthetic-flowers folder?)")
    return {"metrics": with_word_order(m, out), "steps": step, "run_dir": str(run),
            "cosine": pair_cosine(run, Path(m["binding"]["pairs"]))}


def with_word_order(m: dict, out: Path) -> dict:
    """Metrics evaluated before the binding rows by word order (petal / centre colour named first) get them from
    their stored swap-pair images, judged again, and are written back to `out`; newer ones are returned as they are."""
    from tools.evaluation.binding import binding_report

    b = m["binding"]
    if "centre_first" in b:
        return m
    m = {**m, "binding": binding_report(Path(b["images"]), Path(b["pairs"]), b["samples"])}
    out.write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
    return m


def pair_cosine(run: Path, pairs: Path) -> dict | None:
    """Cosine between the two members' text vectors under the run's own encoder (what a sentence-level G reads):
    {"mean", "min", "max"} over the pairs; None for an arch that reads raw texts (ta80)."""
    from gan.archs import get_arch
    from gan.run_dir import load_config
    from tools.evaluation.binding import load_swap_pairs
    from tools.generation import encode_texts, open_run_cache

    cfg = load_config(run)
    if get_arch(cfg.arch).reads == "texts":
        return None
    rows = load_swap_pairs(pairs)
    cache = open_run_cache(cfg, run)
    try:
        v = encode_texts(cfg, cache, [r["caption"] for r in rows]).vectors  # [2P, D]
    finally:
        if cache is not None:
            cache.close()
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    cos = np.sum(v[0::2] * v[1::2], axis=1)  # [P]
    return {"mean": float(cos.mean()), "min": float(cos.min()), "max": float(cos.max())}


def table(entries: dict[str, dict]) -> tuple[str, list[dict]]:
    """Markdown: binding rows first, then every other metric; one column per run and the real reference."""
    from tools.evaluation.compare import METRIC_DIGITS, metric_rows

    rows = {label: [r for r in metric_rows(e, synthetic=True) if r[0] not in ("steps reached", "ms/step")]
            for label, e in entries.items()}
    first = next(iter(rows.values()))
    order = sorted(range(len(first)), key=lambda k: not first[k][0].startswith("binding"))
    labels = list(entries)
    lines = ["| metric | " + " | ".join(f"{lab} (step {entries[lab]['steps']})" for lab in labels) +
             " | real reference |", "|---" * (len(labels) + 2) + "|"]
    records = []
    cosine = ("text-vector cosine of a pair's two captions (mean)", None,
              [(entries[lab].get("cosine") or {}).get("mean") for lab in labels])
    for label, real, values in [(*first[k][::2], [rows[lab][k][1] for lab in labels]) for k in order] + [cosine]:
        d = next((v for key, v in METRIC_DIGITS.items() if label.startswith(key)), 3)
        lines.append(f"| {label} | " + " | ".join(_f(v, d) for v in values) + f" | {_f(real, d)} |")
        records.append({"metric": label, **dict(zip(labels, values)), "real": real})
    return "\n".join(lines), records


def paired_rows(entries: dict[str, dict]) -> str:
    """Markdown: each later run's shared-judge R-precision minus the first run's, image by image (same captions,
    noise and candidates: tools.evaluation.matching.paired_difference), with a 95 % interval; "" when there is
    nothing to pair. (The cache matcher is one per embedding cache, so two runs' cache matchers differ.)"""
    from tools.evaluation.matching import paired_difference

    labels = list(entries)
    scores = {lab: (entries[lab]["metrics"].get("r_precision_shared") or {}).get("scores") for lab in labels}
    first = scores[labels[0]]
    if first is None:
        return ""
    later = [lab for lab in labels[1:] if scores[lab] is not None and len(scores[lab]) == len(first)]
    if not later:
        return ""
    cells = []
    for lab in later:
        d = paired_difference(scores[lab], first)
        cells.append(f"{d['difference']:+.3f} ± {d['half_width']:.3f}")
    return "\n".join([f"Shared-judge R-precision minus {labels[0]}'s, paired over the same {len(first)} images "
                      "(difference ± 95 % interval):", "", "| " + " | ".join(later) + " |", "|---" * len(later) + "|",
                      "| " + " | ".join(cells) + " |"])


def _f(v, digits: int) -> str:
    return "-" if v is None else str(v) if isinstance(v, int) else f"{v:.{digits}f}"


def write_results(md: Path, header: str, text: str) -> None:
    """md = header + table; whatever stood below the NOTES line of an earlier version is kept."""
    old = md.read_text(encoding="utf-8") if md.is_file() else ""
    notes = old[old.index(NOTES):] if NOTES in old else NOTES + "\n"
    md.write_text(header + text + "\n\n" + notes, encoding="utf-8")


def main(argv=None) -> int:
    args = parse_args(argv)
    from bench.binding_grid import main as grid_main
    from bench.binding_grid import parse_runs
    from bench.machine import machine
    from bench.quality import shown
    from tools.evaluation.report import without_scores

    runs = parse_runs(args.runs)
    args.work.mkdir(parents=True, exist_ok=True)
    entries = {label: evaluate(label, run, args) for label, run in runs.items()}
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"binding-{date}" + (f"-{args.name}" if args.name else "")
    md, js, png = (args.results / f"{stem}{s}" for s in (".md", ".json", "-grid.png"))
    grid_main(["--runs", args.runs, "--out", str(png), "--pairs", str(args.grid_pairs), "--seed", str(args.seed)]
              + (["--checkpoint", str(args.checkpoint)] if args.checkpoint else []))
    text, records = table(entries)
    paired = paired_rows(entries)
    if paired:
        text += "\n\n" + paired
    b = next(iter(entries.values()))["metrics"]["binding"]
    header = (f"# Binding on attribute-swap pairs {date}\n\nMachine: {machine()}.\nCommand: `python bench/binding.py "
              f"{' '.join(argv if argv is not None else sys.argv[1:])}`\nRuns: " +
              "; ".join(f"{lab} = `{shown(e['run_dir'])}` step {e['steps']}" for lab, e in entries.items()) +
              f".\n{b['n_pairs']} swap pairs ({b['n_held_out']} held out) x {b['samples']} samples per caption, judged "
              f"by the {b['judge']}; test captions x {args.n_per_caption} samples; seed {args.seed}. "
              f"Grid: `{png.name}`.\n\n")
    write_results(md, portable(header), text)
    js.write_text(portable(json.dumps({"date": date, "runs": {k: {"run_dir": e["run_dir"], "step": e["steps"],
                                                          "pair_cosine": e["cosine"]}
                                                      for k, e in entries.items()},
                              "table": records,
                              "metrics": {k: without_scores(e["metrics"]) for k, e in entries.items()}},
                             indent=2)) + "\n", encoding="utf-8")
    print(text)
    print(f"wrote {md}, {js} and {png}")
    return 0


if __name__ == "__main__":
    run_cli(main)
