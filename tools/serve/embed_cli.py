"""Options and start-up of the embedding service (`python precompute_embeddings.py --serve ...` calls `main`).

    python precompute_embeddings.py --serve --cache cache/synthetic-flowers-minilm.h5 [--host 127.0.0.1] [--port 8001]

The cache is opened and its encoder rebuilt and checked before the port opens. The bound address is printed
as `serving FILE (encoder SPEC, D-d) at http://HOST:PORT/` (`--port 0` takes a free port: tests read it).
docs/embedding_service.md: sharing one encoder with a trainer or notebook on another machine.
"""
from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from tools.errors import UserError
from tools.serve.cli import add_batching_args, batch_policy

EXAMPLES = """examples:
  python precompute_embeddings.py --serve --cache cache/synthetic-flowers-minilm.h5
  curl -s localhost:8001/api/embed -H 'Content-Type: application/json' -d '{"texts": ["a red flower"]}'
  python precompute_embeddings.py --serve --cache cache/cub-minilm.h5 --host 0.0.0.0   # deliberately: other machines
"""


def parse_args(argv):
    p = argparse.ArgumentParser(prog="precompute_embeddings.py --serve", description="Serve a cache's encoder: "
                                "POST /api/embed answers with the stored vector of a cached caption and the cache's "
                                "own encoder for any other text (GET /api/info, GET /api/health, schema at /docs).",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", required=True, metavar="FILE.h5", help="a complete cache made by precompute_embeddings.py")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 serves every network)")
    p.add_argument("--port", type=int, default=8001, help="port (default: 8001, beside the web demo's 8000; 0 picks a free one)")
    add_batching_args(p, "texts", "encoder call", "encoder call", "encoding")
    return p.parse_args(argv)


def validate(args):
    from tools.serve.limits import MAX_TEXTS

    if not Path(args.cache).is_file():
        raise UserError(f"--cache {args.cache}: no such file; build one with python precompute_embeddings.py "
                        "--data DATA --encoder SPEC")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be 0-65535")
    return batch_policy(args, MAX_TEXTS, "send")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv=None) -> int:
    args = parse_args(argv)
    policy = validate(args)

    from tools.serve.cli import bind, serve
    from tools.serve.embed_app import create_embed_app
    from tools.serve.embed_engine import EmbedEngine

    sock = bind(args.host, args.port)  # before loading: a taken port fails in a second, not after the encoder loads
    engine = EmbedEngine.open(args.cache)
    app = create_embed_app(engine, policy)
    info = engine.info()
    if not _loopback(args.host):
        print(f"note: --host {args.host} answers anyone who can reach this machine (no authentication); "
              "texts sent are not stored", file=sys.stderr, flush=True)
    return serve(app, sock, f"{info['file']} (encoder {info['encoder']}, {info['dim']}-d)", engine.close)


if __name__ == "__main__":
    from tools.errors import run_cli

    sys.exit(run_cli(main))
