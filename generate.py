"""Turn any text into images (the run's size: 64, 128 or 256 px) with a trained run, encoded by exactly the encoder its cache used.

    python generate.py --run runs/00001-synthetic-flowers-minilm --out out/mine \
        --text "this flower has five pointed yellow petals and a brown center"

The run folder records its embedding cache; the cache records its encoder (spec, config, fitted state).
New text is encoded by that encoder (checked to reproduce the cache's own vectors), captions already in
the cache reuse their stored vectors, and nothing is written outside --out.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from tools.errors import UserError, run_cli

EXAMPLES = """examples:
  python generate.py --run runs/00001-synthetic-flowers-minilm --out out/mine --text "a red flower with a black center"
  python generate.py --run RUN --out out/test --captions data/synthetic-flowers/test_captions.jsonl --grid
  python generate.py --run RUN --out out/submission --datalab-test DATALAB/dataset/testData.pkl   # inference_{ID}.jpg
  python generate.py --run RUN --out out/report --dataset-test --grid --grid-captions 1,2,3,4,5 --n-per-caption 5
  python generate.py --serve --run RUN [--host 127.0.0.1] [--port 8000]   # web page + JSON API (--serve --help)
"""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder made by train_gan.py")
    p.add_argument("--checkpoint", default=None, metavar="N", help="checkpoint step (default: the latest)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; nothing is written elsewhere)")
    src = p.add_argument_group("texts (one source, or --text repeated)")
    src.add_argument("--text", action="append", default=[], help='a caption; repeatable (ids 0, 1, ...)')
    src.add_argument("--captions", metavar="FILE", help="one caption per line (.txt), or .csv/.jsonl with id and caption "
                     "(e.g. the synthetic set's test_captions.jsonl)")
    src.add_argument("--datalab-test", metavar="PKL", help="DataLab Cup ROOT/dataset/testData.pkl, decoded with "
                     "ROOT/dictionary/ (a pickle can execute code: use files you trust)")
    src.add_argument("--dataset-test", action="store_true", help="the held-out test captions stored in the run's cache")
    out = p.add_argument_group("output")
    out.add_argument("--n-per-caption", type=int, default=1, metavar="K", help="images per caption, each with its own z "
                     "(K > 1 names files inference_{ID}_{k})")
    out.add_argument("--format", choices=["jpg", "png"], default="jpg", help="image format (default: jpg, as the competition)")
    out.add_argument("--seed", type=int, default=0, help="noise seed; the same seed gives the same images")
    out.add_argument("--truncation", type=float, default=None, metavar="T", help="redraw noise values beyond ±T "
                     "(e.g. 0.7: less variety, cleaner images)")
    out.add_argument("--ca-noise", type=float, default=None, metavar="S", help="conditioning-augmentation noise of "
                     "each sample, c = mu + S*sigma*eps(z): 0 gives CA's mean (less variety), 1 the noise G trained with "
                     "(default: the run's ca_noise: 1 for dfgan runs made since 2026-12-05, 0 for older runs and stackgan)")
    out.add_argument("--grid", action="store_true", help="also write grid.png: captions × noise samples, text beside each row")
    out.add_argument("--grid-captions", default=None, metavar="IDS", help="comma-separated caption ids for the grid rows "
                     "(default: the first 5)")
    out.add_argument("--grid-noise", type=int, default=5, metavar="K", help="noise samples per grid row (default: 5)")
    out.add_argument("--batch-size", type=int, default=64, help="images per generator call (default: 64)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


DATALAB_SIZE = 64  # the DataLab Cup's image size: --datalab-test files are written at it


def read_texts(args) -> tuple[list[str], list[str]]:
    from tools import text_sources

    given = [name for name, on in (("--text", bool(args.text)), ("--captions", bool(args.captions)),
                                   ("--datalab-test", bool(args.datalab_test)), ("--dataset-test", args.dataset_test)) if on]
    if len(given) != 1:
        raise UserError("give the texts with exactly one of --text (repeatable), --captions FILE, --datalab-test PKL, "
                        f"--dataset-test; got {', '.join(given) or 'none'}")
    if args.text:
        return text_sources.from_texts(args.text)
    if args.captions:
        return text_sources.from_captions_file(args.captions)
    if args.datalab_test:
        return text_sources.from_datalab_test(args.datalab_test)
    return dataset_test_captions(Path(args.run))


def dataset_test_captions(run_dir: Path) -> tuple[list[str], list[str]]:
    from cache.reader import EmbeddingCache
    from gan.run_dir import load_config
    from tools.text_sources import check_ids

    cfg = load_config(run_dir)
    with EmbeddingCache.open(cfg.cache.path) as cache:
        ids, texts = cache.test_ids(), cache.test_texts()
    if not ids:
        raise UserError(f"{cfg.cache.path}: the dataset has no held-out test captions; use --text or --captions")
    return check_ids(ids, cfg.cache.path), texts


def validate(args) -> None:
    if not (Path(args.run) / "config.json").is_file():
        raise UserError(f"--run {args.run}: not a run folder (no config.json); pass a folder made by train_gan.py")
    for flag, value in (("--n-per-caption", args.n_per_caption), ("--grid-noise", args.grid_noise),
                        ("--batch-size", args.batch_size)):
        if value < 1:
            raise UserError(f"{flag} {value}: must be at least 1")
    if args.ca_noise is not None:
        from gan.config import check_ca_noise

        check_ca_noise(args.ca_noise)
    if args.checkpoint is not None and not re.fullmatch(r"\d+", args.checkpoint):
        raise UserError(f"--checkpoint {args.checkpoint!r}: give a step number (see RUN_DIR/checkpoints)")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--serve" in argv:  # the web demo and JSON API: its own options (tools/serve/cli.py)
        from tools.serve.cli import main as serve

        return serve([a for a in argv if a != "--serve"])
    args = parse_args(argv)
    validate(args)
    ids, texts = read_texts(args)
    from tools.generation import GenerationRequest, generate

    req = GenerationRequest(
        run_dir=Path(args.run), out_dir=Path(args.out), ids=ids, texts=texts,
        checkpoint=int(args.checkpoint) if args.checkpoint else None, n_per_caption=args.n_per_caption,
        seed=args.seed, truncation=args.truncation, ca_noise=args.ca_noise, fmt=args.format, grid=args.grid,
        grid_ids=args.grid_captions.split(",") if args.grid_captions else None, grid_noise=args.grid_noise,
        batch_size=args.batch_size, progress=not args.no_progress,
        out_size=DATALAB_SIZE if args.datalab_test else None)  # the Cup scores 64x64 files whatever the run's size
    report = generate(req)
    print(report.summary())
    return 0


if __name__ == "__main__":
    run_cli(main)
