"""Swap-pair sample grid: for N attribute-swap pairs, caption A | caption B side by side with the same noise, a few
noise rows, one to six runs side by side (e.g. the sentence arm against the word arm); one PNG.

    python bench/binding_grid.py --runs sentence=runs/00001-synthetic-flowers-minilm --out grid.png
    python bench/binding_grid.py --runs dfgan-minilm=RUN_A,dfgan-words=RUN_B --pairs 8 --noise 3 --out swap.png

Images are drawn exactly as tools/evaluate.py --run draws the swap pairs (tools/evaluation/binding.py:
tools.generation with the run's own encoder and arch; member a and b share each noise sample), so a row of the
grid is a row of what the binding rows score. Pairs: the first --pairs held-out pairs of distinct templates
(then the others), or the ones named by --pick.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools.errors import UserError, run_cli  # noqa: E402


def parse_args(argv=None):
    from tools.evaluation.binding import DEFAULT_PAIRS

    p = argparse.ArgumentParser(prog="bench/binding_grid.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, metavar="LABEL=RUN_DIR[,LABEL=RUN_DIR]",
                   help="one to six train_gan.py runs, each with the label its columns get")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--swap-pairs", type=Path, default=DEFAULT_PAIRS, help="swap-pair JSONL (default: %(default)s)")
    p.add_argument("--pairs", type=int, default=6, help="how many pairs (default 6)")
    p.add_argument("--pick", default="", help="comma-separated pair ids instead (e.g. p001,p017)")
    p.add_argument("--noise", type=int, default=3, help="noise rows per pair (default 3)")
    p.add_argument("--checkpoint", type=int, help="checkpoint step of every run (default: each run's latest)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0, as tools/evaluate.py)")
    return p.parse_args(argv)


MAX_RUNS = 6  # side by side in one grid and one table


def parse_runs(text: str) -> dict[str, Path]:
    runs = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        label, sep, path = item.partition("=")
        if not sep or not label or not (Path(path) / "config.json").is_file():
            raise UserError(f"--runs {item!r}: expected LABEL=RUN_DIR with a train_gan.py run folder (config.json)")
        runs[label] = Path(path)
    if not 1 <= len(runs) <= MAX_RUNS:
        raise UserError(f"--runs {text!r}: give one to {MAX_RUNS} runs")
    return runs


def choose_pairs(rows: list[dict], n: int, pick: str) -> list[dict]:
    """Rows (a, b, a, b, ...) of the chosen pairs: --pick's ids in order, else held-out pairs of distinct templates
    first, in file order."""
    pairs = {r["pair"]: [] for r in rows}
    for r in rows:
        pairs[r["pair"]].append(r)
    if pick:
        ids = [s.strip() for s in pick.split(",") if s.strip()]
        unknown = [i for i in ids if i not in pairs]
        if unknown:
            raise UserError(f"--pick {unknown[0]!r}: no such pair id (e.g. {', '.join(list(pairs)[:3])})")
        return [r for i in ids for r in pairs[i]]
    held = [p for p, (a, b) in pairs.items() if not (a.get("in_training") or b.get("in_training"))]
    seen, first, rest = set(), [], []
    for p in held + [p for p in pairs if p not in held]:
        (rest if pairs[p][0].get("template") in seen else first).append(p)
        seen.add(pairs[p][0].get("template"))
    return [r for p in (first + rest)[:n] for r in pairs[p]]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.pairs < 1 or args.noise < 1:
        raise UserError(f"--pairs {args.pairs} --noise {args.noise}: both must be >= 1")
    runs = parse_runs(args.runs)
    from tools.evaluation.binding import generate_swap_images, load_swap_pairs, read_swap_images
    from tools.grids import swap_pair_grid

    rows = choose_pairs(load_swap_pairs(args.swap_pairs), args.pairs, args.pick)
    images = {}
    for label, run in runs.items():
        with tempfile.TemporaryDirectory() as tmp:
            for report in generate_swap_images(run, Path(tmp), rows, args.noise, args.seed, checkpoint=args.checkpoint):
                step = report.step
            flat = read_swap_images(Path(tmp), rows, args.noise)  # [2P*K, H, W, 3]
        images[f"{label} (step {step})"] = flat.reshape(len(rows) // 2, 2, args.noise, *flat.shape[1:])
    fig = swap_pair_grid(images, [(a["caption"], b["caption"]) for a, b in zip(rows[0::2], rows[1::2])])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.save(args.out)
    print(f"wrote {args.out}: {len(rows) // 2} pairs x {args.noise} noise rows, runs {', '.join(images)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
