"""Generate the synthetic-flowers dataset: flowers with known attributes and 10 captions each.

    python tools/make_synthetic_flowers.py --out data/synthetic-flowers --n 8000 --seed 0

Writes images/*.png (64x64, or --size 128 | 256: the same flowers, attributes and captions drawn larger), manifest.jsonl, attributes.jsonl, test_captions.jsonl and contact_sheet.png under
--out (and the DataLab Cup layout under --out/datalab/ with --datalab). Same seed and --n -> same bytes,
whatever --workers. Spec: docs/synthetic_flowers.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tools.errors import run_cli


EXAMPLES = """examples:
  # the default set used by `make demo` (8000 images, 819 test captions)
  python tools/make_synthetic_flowers.py --out data/synthetic-flowers --n 8000 --seed 0

  # the same 8000 flowers and captions drawn at 128x128 (for train_gan.py --image-size 128)
  python tools/make_synthetic_flowers.py --out data/synthetic-flowers-128 --n 8000 --seed 0 --size 128

  # a small set, also in the DataLab Cup layout (data/sf-small/datalab/dataset/text2ImgData.pkl, ...)
  python tools/make_synthetic_flowers.py --out data/sf-small --n 500 --seed 1 --datalab --workers 2
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Generate synthetic flowers with known attributes and Oxford-102-style captions.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to generate")
    g.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    g.add_argument("--n", type=int, default=8000, help="number of training images, 10 captions each (default 8000)")
    g.add_argument("--seed", type=int, default=0, help="random seed; same seed and --n give the same bytes (default 0)")
    g.add_argument("--n-test", type=int, default=819,
                   help="held-out test captions, on fresh attribute draws (default 819, as the DataLab Cup)")
    g.add_argument("--size", type=int, default=64, choices=(64, 128, 256),
                   help="image side in px (default 64); the attributes and captions do not depend on it")
    g.add_argument("--datalab", action="store_true",
                   help="also write the DataLab Cup layout under OUT/datalab/ (dataset/*.pkl, dictionary/*.npy, "
                        "102flowers/*.jpg)")
    r = p.add_argument_group("how to run")
    r.add_argument("--workers", type=int, default=1, help="processes rendering in parallel (output is identical)")
    r.add_argument("--force", action="store_true",
                   help="replace a set already in OUT made with other arguments (deletes its images and files)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tools.synthetic import generate_dataset

    generate_dataset(args.out, n=args.n, seed=args.seed, datalab=args.datalab, n_test=args.n_test,
                     workers=args.workers, force=args.force, progress=not args.quiet, size=args.size)
    return 0


if __name__ == "__main__":
    run_cli(main)
