"""Options and start-up of the web demo (`python generate.py --serve ...` calls `main`).

    python generate.py --serve --run runs/demo/00001-demo-flowers-minilm [--host 127.0.0.1] [--port 8000]

The run is loaded and warmed up (generator traced, encoder built and checked) before the port opens, so the
first request is as fast as the rest. The bound address is printed as `serving RUN at http://HOST:PORT/`
(`--port 0` takes a free port: tests and bench/serve.py read it from that line).
"""
from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from tools.errors import UserError

EXAMPLES = """examples:
  python generate.py --serve --run runs/demo/00001-demo-flowers-minilm
  make serve                                    # the newest run under runs/demo/
  curl -s localhost:8000/api/generate -H 'Content-Type: application/json' -d '{"text": "a red flower", "n": 4}'
"""


def parse_args(argv):
    p = argparse.ArgumentParser(prog="generate.py --serve", description="Serve a trained run: a web page and a JSON "
                                "API (POST /api/generate, GET /api/info, GET /api/health, schema at /docs).",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder made by train_gan.py")
    p.add_argument("--checkpoint", default=None, metavar="N", help="checkpoint step (default: the latest)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--png-level", type=int, default=0, metavar="0-9",
                   help="zlib level of the PNGs sent (default: 0, stored: 12.4 KB per image and the least CPU; "
                        "1: ~30%% fewer bytes for 6x the encoding work, which the generator pays for under load)")
    add_batching_args(p, "images", "generator call", "batch", "computing")
    return p.parse_args(argv)


def validate(args):
    from tools.serve.limits import MAX_IMAGES
    from tools.serve.png import LEVELS

    if not (Path(args.run) / "config.json").is_file():
        raise UserError(f"--run {args.run}: not a run folder (no config.json); pass a folder made by train_gan.py")
    if args.checkpoint is not None and not args.checkpoint.isdigit():
        raise UserError(f"--checkpoint {args.checkpoint!r}: give a step number (see RUN_DIR/checkpoints)")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be 0-65535")
    if args.png_level not in LEVELS:
        raise UserError(f"--png-level {args.png_level}: must be 0-9 (zlib levels; 0 stores the images uncompressed)")
    return batch_policy(args, MAX_IMAGES, "ask for")


def add_batching_args(p, unit: str, call: str, shared: str, busy: str) -> None:
    """The micro-batching options of a server whose requests carry `unit`s (images, texts) into one `call`."""
    from tools.serve.batcher import BatchPolicy

    d = BatchPolicy()
    b = p.add_argument_group("micro-batching")
    b.add_argument("--max-batch", type=int, default=d.max_batch, help=f"{unit} per {call} (default: {d.max_batch})")
    b.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help=f"how long a request waits for others to share its {shared} (default: {d.max_wait_ms:g})")
    b.add_argument("--max-queue", type=int, default=d.max_queue_images, metavar=unit.upper(),
                   help=f"{unit} queued or {busy} before new requests get 503 (default: {d.max_queue_images})")


def batch_policy(args, most: int, verb: str):
    """The checked BatchPolicy of add_batching_args' options; `most`: the most rows one request may `verb`."""
    from tools.serve.batcher import BatchPolicy

    if args.max_batch < most:
        raise UserError(f"--max-batch {args.max_batch}: must be at least {most} (the most one request may {verb})")
    if args.max_queue < args.max_batch:
        raise UserError(f"--max-queue {args.max_queue}: must be at least --max-batch ({args.max_batch})")
    if not 0 <= args.max_wait_ms <= 1000:
        raise UserError(f"--max-wait-ms {args.max_wait_ms:g}: must be 0-1000")
    return BatchPolicy(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue_images=args.max_queue)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (IPv4 or IPv6), one line on failure."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise UserError(f"--host {host} --port {port}: cannot bind ({e.strerror or e}); pick another port") from None
    sock.listen(2048)
    return sock


def serve(app, sock: socket.socket, what: str, close) -> int:
    """Print where `what` is served, run uvicorn on the bound socket until stopped, then `close()` the engine."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {what} at http://{shown}:{port}/", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    finally:
        close()
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    policy = validate(args)

    from tools.serve.app import create_app
    from tools.serve.engine import Engine

    sock = bind(args.host, args.port)  # before loading: a taken port fails in a second, not after the model loads
    engine = Engine.load(args.run, int(args.checkpoint) if args.checkpoint else None)
    engine.warm_up(policy.max_batch)
    app = create_app(engine, policy, args.png_level)
    info = engine.info()
    return serve(app, sock, f"{info['run']} (encoder {info['encoder']}, step {info['step']})", engine.close)


if __name__ == "__main__":
    from tools.errors import run_cli

    sys.exit(run_cli(main))
