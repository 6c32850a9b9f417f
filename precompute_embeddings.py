"""Encode every caption of a dataset once and cache the vectors in HDF5 (resumable; a re-run is a no-op).

    python precompute_embeddings.py                                   # synthetic flowers, minilm
    python precompute_embeddings.py --data data/oxford --encoder tfidf --dtype float16
    python precompute_embeddings.py --list-encoders
    python precompute_embeddings.py --workers 2                       # the same file, encoded on 2 Ray workers
    python precompute_embeddings.py --tokens                          # + each caption's token states (float16)
    python precompute_embeddings.py --serve --cache FILE.h5 [--host 127.0.0.1] [--port 8001]   # embedding service

Writes cache/<dataset>-<encoder>.h5 (layout: cache/writer.py). Interrupt it any time (Ctrl-C, kill -9):
the same command resumes at the first unfinished chunk. Library entry point: cache.writer.build_cache.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.errors import UserError, run_cli


REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = "data/synthetic-flowers"  # relative to the repository root; generated on first use
SYNTHETIC_N, SYNTHETIC_SEED = 8000, 0

EXAMPLES = """examples:
  python precompute_embeddings.py                                  # data/synthetic-flowers with minilm
  python precompute_embeddings.py --data data/cub --encoder hf:bert-base-uncased --batch-size 32
  python precompute_embeddings.py --data manifest.jsonl --encoder tfidf --encoder-option max_tokens=8192
  python precompute_embeddings.py --data data/oxford --encoder glove:glove.6B.300d.txt --dtype float16
  python precompute_embeddings.py --data data/cub --encoder minilm --tokens --token-length 48  # + token states
  python precompute_embeddings.py --data data/cub --workers 2                       # local Ray, 2 workers
  python precompute_embeddings.py --data /shared/coco --ray-address 10.0.0.5:6379   # an existing Ray cluster
  python precompute_embeddings.py --serve --cache cache/cub-minilm.h5   # POST /api/embed on 127.0.0.1:8001 (--serve --help)
"""


def build_parser() -> argparse.ArgumentParser:
    from tools.datasets import add_dataset_args

    parser = argparse.ArgumentParser(
        prog="precompute_embeddings.py", description=__doc__.split("\n")[0], epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(parser, default=DEFAULT_DATA)
    enc = parser.add_argument_group("encoder")
    enc.add_argument("--encoder", metavar="SPEC", default="minilm",
                     help="encoder spec, e.g. minilm, tfidf, hf:<name-or-dir>, tfhub:<handle-or-dir>, "
                          "glove:<file> (default: minilm; see --list-encoders)")
    enc.add_argument("--encoder-option", metavar="KEY=VALUE", action="append", default=[],
                     help="encoder option, repeatable (e.g. max_length=64); same as SPEC?KEY=VALUE")
    enc.add_argument("--batch-size", type=int, metavar="N", default=None,
                     help="texts per encoder batch (default: the encoder's own)")
    enc.add_argument("--list-encoders", action="store_true", help="list encoder specs, dims and needs, then exit")
    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="FILE.h5", default=None,
                     help="cache file (default: cache/<dataset name>-<encoder>.h5 in the repository)")
    out.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                     help="storage type of the vectors (default: float32; float16 halves the file)")
    out.add_argument("--tokens", action="store_true",
                     help="also store each distinct caption's last-layer token states [U, L, D] float16, lengths "
                          "and ids (transformer encoders: minilm, mpnet, hf:...; docs/cache_format.md)")
    out.add_argument("--token-length", metavar="N|auto", default="auto",
                     help="with --tokens: tokens kept per caption, special tokens included (default auto: the "
                          "99th percentile of the captions' token counts, rounded up to a multiple of 8)")
    out.add_argument("--force", action="store_true", help="rebuild even if the file is complete, different or damaged")
    out.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in logs)")
    ray = parser.add_argument_group("distributed (Ray, optional: pip install -r requirements-ray.txt)")
    ray.add_argument("--workers", type=int, metavar="N", default=None,
                     help="encode on N Ray workers (a local Ray on 127.0.0.1 unless --ray-address); same cache file")
    ray.add_argument("--ray-address", metavar="ADDR", default=None,
                     help="an existing Ray cluster, e.g. 10.0.0.5:6379 (default --workers: one per cluster CPU)")
    ray.add_argument("--worker-cpus", type=int, metavar="N", default=1, help="CPUs (TF threads) per worker (default 1)")
    ray.add_argument("--shard-size", type=int, metavar="N", default=None,
                     help="distinct captions per shard, a multiple of 2048 (default 2048); a resumed build "
                          "keeps its own")
    return parser


def parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--encoder-option {pair!r} must look like KEY=VALUE (e.g. max_length=64)")
        options[key.strip()] = value.strip()
    return options


def load_data(args):
    """The dataset named by the flags; the default synthetic set is generated first if it is missing."""
    from tools.datasets import dataset_from_args

    if args.data == DEFAULT_DATA:
        args.data = str(REPO_ROOT / DEFAULT_DATA)
        if not Path(args.data).exists():
            from tools.synthetic import generate_dataset

            print(f"generating the synthetic flowers set (n={SYNTHETIC_N}, seed={SYNTHETIC_SEED}) at {args.data}")
            generate_dataset(args.data, n=SYNTHETIC_N, seed=SYNTHETIC_SEED)
    return dataset_from_args(args)


def token_request(args) -> int | str | None:
    """None without --tokens, else "auto" or L; the spec's family is checked before any model is loaded."""
    from cache.tokens import TOKEN_ENCODERS, parse_length
    from embeddings.common import parse_spec

    if not args.tokens:
        if args.token_length != "auto":
            raise UserError(f"--token-length {args.token_length} needs --tokens")
        return None
    family = parse_spec(args.encoder)[0]
    if family not in ("minilm", "mpnet", "hf"):
        raise UserError(f"--tokens needs a transformer encoder with token states ({TOKEN_ENCODERS}); "
                        f"{args.encoder} gives sentence vectors only — drop --tokens or pick one of those")
    return parse_length(args.token_length)


def summary(report, dataset) -> str:
    rate = report.num_captions / max(report.seconds, 1e-9)
    resumed = f", {report.resumed_unique} were already done" if report.resumed_unique else ""
    tokens = report.tokens
    states = (f", token states L {tokens['length']} float16 ({tokens['truncated']} distinct captions truncated)"
              if tokens else "")
    return (f"wrote {report.path}: {report.num_captions} captions ({report.num_unique} unique{resumed}), "
            f"dim {report.dim} {report.dtype}{states}, {report.seconds:.1f} s, {rate:.0f} captions/s, "
            f"{report.file_bytes / 1e6:.1f} MB; dataset {dataset.skips.summary()}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--serve" in argv:  # the embedding service: its own options (tools/serve/embed_cli.py)
        from tools.serve.embed_cli import main as serve

        return serve([a for a in argv if a != "--serve"])
    args = build_parser().parse_args(argv)
    from embeddings.registry import format_encoder_list, get_encoder

    if args.list_encoders:
        print(format_encoder_list())
        return 0
    if args.batch_size is not None and args.batch_size <= 0:
        raise UserError(f"--batch-size {args.batch_size} must be a positive integer")
    from cache.ray_pool import shard_chunks_from_flags  # Ray flags checked (and Ray's presence) before any loading

    shard_chunks = shard_chunks_from_flags(args.workers, args.ray_address, args.worker_cpus, args.shard_size)
    distributed = shard_chunks is not None
    tokens = token_request(args)
    encoder = get_encoder(args.encoder, **parse_options(args.encoder_option))  # bad spec -> one-line UserError
    if tokens is not None:
        from cache.tokens import require_token_encoder

        require_token_encoder(encoder)
    dataset = load_data(args)

    from cache.paths import default_cache_path
    from cache.writer import build_cache_report

    out = Path(args.out) if args.out else default_cache_path(dataset.name, encoder.spec)
    if distributed:
        from cache.ray_pool import build_cache_ray

        report = build_cache_ray(dataset, encoder, out, workers=args.workers, address=args.ray_address,
                                 worker_cpus=args.worker_cpus, shard_chunks=shard_chunks,
                                 dtype=args.dtype, force=args.force, batch_size=args.batch_size,
                                 progress=not args.no_progress, tokens=tokens)
    else:
        report = build_cache_report(dataset, encoder, out, dtype=args.dtype, force=args.force,
                                    batch_size=args.batch_size, progress=not args.no_progress, tokens=tokens)
    if report.up_to_date:
        if dataset.skips.total:
            print(f"dataset {dataset.skips.summary()}")
    else:
        print(summary(report, dataset))
        if distributed:
            print(report.pool_summary())
    return 0


if __name__ == "__main__":
    run_cli(main)
