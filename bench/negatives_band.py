"""What the hard-negative miner hands D: on the synthetic flowers, which attribute a mined mismatched caption
contradicts in the real image, by cosine band and by centroid margin (gan/negatives.py).

    python bench/negatives_band.py                     # the MiniLM cache and data/synthetic-flowers
    python bench/negatives_band.py --cache cache/synthetic-flowers-tfidf.h5 --margins 0,0.02,0.04

A wrong caption w (of image b) is shown to D with the real image a. It is a FALSE negative when every attribute w
names is also a's (it describes a as well as the real caption); otherwise it contradicts one attribute ("count
only", ...) or more. Labels (attributes.jsonl and the caption grammar) are used here only, to judge; the miner uses
the cached vectors alone. Pairs are all (real caption, pool caption) pairs of random draws, like one step's pool.
Nothing here depends on the machine: the numbers are the same on every CPU.
Output: the two tables on stdout and in bench/results/negatives-band-<date>.md.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from cache.reader import EmbeddingCache  # noqa: E402
from gan.negatives import HardNegatives  # noqa: E402
from tools.errors import UserError, run_cli  # noqa: E402
from tools.evaluation.real_data import read_attributes, value_index  # noqa: E402
from tools.synthetic import spec  # noqa: E402
from tools.synthetic.captions import parse_caption  # noqa: E402

KINDS = ("false negative", "count only", "centre only", "petal colour only", "shape only", "2+ attributes")
ONE = {"petal_count": 1, "center_color": 2, "petal_color": 3, "petal_shape": 4}  # attribute -> column of KINDS


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/negatives_band.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=REPO / "cache" / "synthetic-flowers-minilm.h5")
    p.add_argument("--data", type=Path, default=REPO / "data" / "synthetic-flowers",
                   help="the synthetic-flowers folder the cache was built from (default: %(default)s)")
    p.add_argument("--real", type=int, default=3000, help="real captions drawn (default %(default)s)")
    p.add_argument("--pool", type=int, default=4096, help="pool captions drawn (default %(default)s, the miner's)")
    p.add_argument("--band", default="0.80,0.95", help="the miner's cosine band LOW,HIGH (default %(default)s)")
    p.add_argument("--margins", default="0,0.02,0.04,0.06,0.08", help="centroid margins to compare (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    return p.parse_args(argv)


def floats(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected comma-separated numbers, e.g. 0,0.02") from None


def kinds(named: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """named [n, 4] value index each wrong caption names (-1: not named); truth [n, 4] the real image's ->
    [n] index into KINDS."""
    bad = (named >= 0) & (named != truth)  # [n, 4] contradicted attributes
    out = np.full(len(named), 5)
    out[bad.sum(1) == 0] = 0
    for attribute, column in ONE.items():
        out[(bad.sum(1) == 1) & bad[:, spec.ATTRIBUTES.index(attribute)]] = column
    return out


def study(args) -> str:
    low, high = floats(args.band, "--band")
    margins = floats(args.margins, "--margins")
    cache = EmbeddingCache.open(args.cache)
    texts, image_of, ids = cache.texts(), cache.image_index(), cache.image_ids()
    attrs = read_attributes(args.data)
    missing = [i for i in ids if i not in attrs]
    if missing:
        raise UserError(f"{args.data}/attributes.jsonl: no row for image {missing[0]!r} of {args.cache} "
                        f"({len(missing)} in all); pass the synthetic-flowers folder the cache was built from")
    truth = np.array([[value_index(a, attrs[i][a]) for a in spec.ATTRIBUTES] for i in ids])  # [M, 4]
    named = np.array([[value_index(a, n[a]) if a in n else -1 for a in spec.ATTRIBUTES]
                      for n in map(parse_caption, texts)])  # [N, 4]
    miner = HardNegatives(cache.embeddings(), image_of, np.arange(len(ids)), 1.0, low, high, args.pool,
                          args.seed, margin=1.0)  # margin > 0 so that it holds the centroids
    rng = np.random.default_rng(args.seed)
    real, pool = rng.integers(0, len(texts), args.real), rng.integers(0, len(texts), args.pool)
    cos = miner.unit[real].astype(np.float32) @ miner.unit[pool].astype(np.float32).T  # [R, P]
    other = image_of[real][:, None] != image_of[pool][None, :]

    lines = [f"# Hard negatives on the synthetic flowers: what a mined caption contradicts "
             f"({datetime.now(timezone.utc):%Y-%m-%d})", "",
             f"Cache `{args.cache.name}` ({cache.encoder_spec}), {args.real} real captions x a pool of {args.pool}, "
             f"seed {args.seed}. Command: `{' '.join(['python bench/negatives_band.py', *sys.argv[1:]])}`.", "",
             "## By cosine with the real caption (pairs of different images)", "",
             "| cosine | pairs | " + " | ".join(KINDS) + " |", "|---|---:|" + "---:|" * len(KINDS)]
    edges = np.round(np.arange(0.50, 1.0001, 0.05), 2)
    for lo, hi in zip(edges[:-1], edges[1:]):
        r, p = np.nonzero(other & (cos >= lo) & ((cos < hi) | (hi >= 1.0)))
        share = np.bincount(kinds(named[pool[p]], truth[image_of[real[r]]]), minlength=len(KINDS)) / max(len(r), 1)
        lines.append(f"| {lo:.2f}-{hi:.2f} | {len(r)} | " + " | ".join(f"{s:.3f}" for s in share) + " |")

    lines += ["", f"## Inside the band {low:.2f}-{high:.2f}, by centroid margin (HardNegatives(margin=m); the option was removed: bench/results/REMOVED_OPTIONS.md)", "",
              "| margin | kept | " + " | ".join(KINDS) + " |", "|---|---:|" + "---:|" * len(KINDS)]
    r, p = np.nonzero(other & (cos >= low) & (cos <= high))
    margins_all = np.concatenate([miner.centroid_margin(pool, image_of[real[k:k + 512]])
                                  for k in range(0, len(real), 512)])  # [R, P], the miner's own computation
    margin = margins_all[r, p]
    kind = kinds(named[pool[p]], truth[image_of[real[r]]])
    for m in margins:
        keep = margin >= m if m > 0 else np.ones(len(r), bool)
        share = np.bincount(kind[keep], minlength=len(KINDS)) / max(keep.sum(), 1)
        lines.append(f"| {m:.2f}{' (off)' if m <= 0 else ''} | {keep.mean() if len(r) else 0:.2f} | "
                     + " | ".join(f"{s:.3f}" for s in share) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    text = study(args)
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"negatives-band-{datetime.now(timezone.utc):%Y-%m-%d}.md"
    out.write_text(text)
    print(f"written: {out}")


if __name__ == "__main__":
    run_cli(main)
