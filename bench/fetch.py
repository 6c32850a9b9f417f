"""Images/s of tools/fetch_images.py against a sequential download loop, over loopback with a fixed latency.

    python bench/fetch.py                          # 50 ms per request; connections 1, 8, 32
    python bench/fetch.py --latency 0.1 --connections 1,8,32,64 --per-level 60

A local HTTP/1.1 server (a separate process, aiohttp.web, keep-alive) answers every request for a 640x480
JPEG after waiting --latency seconds, as a distant server would. Each level fetches its own fresh
URLs into a fresh folder: the sequential loop (requests.Session; GET, decode + resize to 64 px, save PNG,
one image after another; the same PNG settings) runs first, then the fetcher at
each connection count (per-host bound = connections, all URLs on one host); --rounds times, and each round's
ratio is taken against its own sequential run, medians reported. Every level must lose no image:
the report's fetched count and the manifest's rows are checked against the URLs. Last, the CPU time per image
of decode + resize (tools/images.decode_bytes) and of the PNG encode, in this process, one thread.
Target: the fetcher at 32 connections >= 20x the sequential loop, with zero lost images.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

NUM_DISTINCT = 16  # distinct JPEGs the server cycles through


def photo_like(i: int, size=(640, 480)) -> bytes:
    """A 640x480 JPEG (quality 85) with smooth structure and mild noise, about the bytes of a COCO photo."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    rng = np.random.default_rng(i)
    channels = [np.sin((x * rng.uniform(3, 9) + y * rng.uniform(3, 9)) + rng.uniform(0, 6)) for _ in range(3)]
    rgb = (np.stack(channels, -1) * 90 + 128 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def serve(latency: float, port_out) -> None:
    """The server process: GET /img/<n>.jpg -> photo n % NUM_DISTINCT after `latency` seconds.

    aiohttp.web on one event loop: a wait costs the server no thread and little CPU, so on a shared 2-core
    machine the time measured is the client's (http.server's thread per connection cost more than the fetcher).
    """
    import asyncio

    from aiohttp import web

    images = [photo_like(i) for i in range(NUM_DISTINCT)]

    async def image(request: web.Request) -> web.Response:
        await asyncio.sleep(latency)
        body = images[int(request.match_info["n"]) % NUM_DISTINCT]
        return web.Response(body=body, content_type="image/jpeg")

    async def start() -> None:
        app = web.Application()
        app.router.add_get("/img/{n:\\d+}.jpg", image)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_out.put(site._server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(start())


def sequential(urls: list[str], out: Path) -> int:
    """The baseline: one GET, decode + resize, PNG save after another; returns images saved."""
    import requests

    from tools.images import decode_bytes

    out.mkdir(parents=True)
    saved = 0
    with requests.Session() as session:
        for i, url in enumerate(urls):
            resp = session.get(url, timeout=10)
            resp.raise_for_status()
            Image.fromarray(decode_bytes(resp.content, 64, url), "RGB").save(out / f"{i}.png", compress_level=1)
            saved += 1
    return saved


def fetcher(urls: list[str], out: Path, connections: int) -> tuple[int, int]:
    """tools/fetch_images.py at `connections` (per host too); (images fetched, manifest rows)."""
    from tools.datasets.url_sources import UrlItem
    from tools.fetch_images import FetchOptions, fetch_images

    items = [UrlItem(f"{i:06d}", url, ["a caption"]) for i, url in enumerate(urls)]
    opt = FetchOptions(size=64, connections=connections, per_host=connections, progress_every=0)
    report = fetch_images(items, out, opt, log=lambda *_: None)
    rows = sum(1 for _ in open(out / "manifest.jsonl"))
    return report["fetched"], rows


def cpu_per_image(repeats: int) -> tuple[float, float]:
    """(ms of CPU for decode + resize to 64, ms for the PNG encode) per image, one thread."""
    from tools.images import decode_bytes

    blobs = [photo_like(i) for i in range(NUM_DISTINCT)]
    start = time.process_time()
    for _ in range(repeats):
        small = [decode_bytes(b, 64) for b in blobs]  # [64, 64, 3] each
    decode = (time.process_time() - start) / (repeats * len(blobs))
    start = time.process_time()
    for _ in range(repeats):
        for rgb in small:
            Image.fromarray(rgb, "RGB").save(io.BytesIO(), format="PNG", compress_level=1)
    encode = (time.process_time() - start) / (repeats * len(blobs))
    return decode * 1e3, encode * 1e3


def client_cpu() -> float:
    """CPU seconds of this process and of its finished children (the fetcher's decode processes, joined at the
    end of each run; the server process is still running, so it is not counted)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def process_cpu(pid: int) -> float:
    """CPU seconds of another process so far (/proc/PID/stat utime + stime; 0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_line() -> str:
    from bench.machine import describe

    try:
        return describe(subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError):
        return "unknown machine (no lscpu)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latency", type=float, default=0.05, help="seconds the server waits per request (default 0.05)")
    p.add_argument("--connections", default="1,8,32", help="fetcher connection counts (default 1,8,32)")
    p.add_argument("--per-level", type=int, default=40,
                   help="images per connection at each level, at least --min-images (default 40: 1280 at 32)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds of all levels (default 3); medians are reported, each round's ratio against its own "
                        "sequential run (a shared machine's load drifts within minutes)")
    p.add_argument("--min-images", type=int, default=100,
                   help="images of the smallest levels (default 100: the fetcher's start of its decode processes "
                        "is part of its time, and should not be most of it)")
    args = p.parse_args()
    levels = [int(c) for c in args.connections.split(",")]

    ports = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(args.latency, ports), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{ports.get(timeout=60)}/img"
    print(f"machine: {machine_line()}")
    print(f"server: loopback, {args.latency * 1e3:.0f} ms per request, 640x480 JPEG "
          f"({np.mean([len(photo_like(i)) for i in range(4)]) / 1e3:.0f} kB), keep-alive; images saved at 64 px")
    rows = run_rounds(base, server.pid, levels, args)
    server.terminate()
    report(rows, levels, args.rounds)


def run_rounds(base: str, server_pid: int, levels: list[int], args) -> list[tuple]:
    """Each round: the sequential loop, then the fetcher at each level, on fresh URLs and folders.

    Rows: (round, mode, connections, images, seconds, images/s, lost, client CPU ms/img, server CPU ms/img).
    """
    next_id, rows = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode, c in [("sequential", 1)] + [("fetcher", c) for c in levels]:
                n = max(args.per_level * c, args.min_images)
                urls = [f"{base}/{next_id + i}.jpg" for i in range(n)]
                next_id += n
                out = Path(tmp) / f"{r}-{mode}-{c}"
                cpu0, server0, t0 = client_cpu(), process_cpu(server_pid), time.perf_counter()
                got, listed = (sequential(urls, out), n) if mode == "sequential" else fetcher(urls, out, c)
                seconds, cpu = time.perf_counter() - t0, client_cpu() - cpu0
                server_cpu = process_cpu(server_pid) - server0
                rows.append((r, mode, c, n, seconds, n / seconds, n - min(got, listed), cpu / n * 1e3,
                             server_cpu / n * 1e3))
                print(f"round {r + 1} | {mode} c={c} | {n} images | {n / seconds:.1f} images/s | "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    return rows


def report(rows: list[tuple], levels: list[int], rounds: int) -> None:
    """Medians over the rounds; each round's ratio is against its own sequential run."""
    seq = {r[0]: r[5] for r in rows if r[1] == "sequential"}
    print(f"\nmedians over {rounds} rounds (x sequential: each round against its own sequential run)\n")
    print("| run | connections | images/round | images/s | x sequential | x sequential, each round | lost (all rounds) "
          "| client CPU ms/image | server CPU ms/image |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|")
    summary = {}
    for mode, c in [("sequential", 1)] + [("fetcher", c) for c in levels]:
        mine = [r for r in rows if r[1] == mode and r[2] == c]
        ratios = [r[5] / seq[r[0]] for r in mine]
        med = lambda k: float(np.median([r[k] for r in mine]))  # noqa: E731
        lost = sum(r[6] for r in mine)
        summary[(mode, c)] = (float(np.median(ratios)), lost, med(7), med(8))
        print(f"| {mode} | {c} | {mine[0][3]} | {med(5):.1f} | {np.median(ratios):.2f}x | "
              f"{', '.join(f'{x:.1f}' for x in ratios)} | {lost} | {med(7):.2f} | {med(8):.2f} |")
    decode_ms, encode_ms = cpu_per_image(repeats=5)
    print(f"\nCPU per image, one thread: decode + resize 640x480 JPEG -> 64 px {decode_ms:.2f} ms; PNG encode "
          f"{encode_ms:.2f} ms")
    if ("fetcher", 32) in summary:
        ratio, lost, client, server = summary[("fetcher", 32)]
        verdict = "met" if ratio >= 20 and lost == 0 else "NOT met"
        print(f"target (>= 20x sequential at 32 connections, zero lost): {ratio:.1f}x, {lost} lost -> {verdict}")
        cores = os.cpu_count() or 1
        seq_rate = float(np.median(list(seq.values())))
        ceiling = cores * 1e3 / (client + server)
        print(f"CPU-bound ceiling at 32 connections with all {cores} cores to client and server: {ceiling:.0f} images/s "
              f"({ceiling / seq_rate:.0f}x the median sequential {seq_rate:.1f} images/s; an estimate from the CPU "
              f"per image, not a measurement)")

if __name__ == "__main__":
    main()
