"""Load on the web demo's JSON API over loopback, beside the generator's own batched rate, in one run.

    python bench/serve.py --run runs/demo/00001-demo-flowers-minilm                 # 60 s at c = 1, 8, 32
    python bench/serve.py --run RUN --duration 20 --concurrency 1,8,32,64 --n 4

Starts `generate.py --serve` on a free loopback port (or targets --url), then for each concurrency c runs c
clients (async; aiohttp, or --client httpx) that each send one request after another for --duration seconds: one caption from the
run's held-out test captions (round robin; new text is encoded by the run's encoder once, then remembered),
--n images, a fresh seed. Prints requests/s, images/s, latency p50/p95/p99, errors and the server's mean
generator batch and the share of time its generator was busy; the direct rate is the generator alone at the
server's batch size (64) in this process, measured before and after each level while the server is idle, and
each level is compared with the mean of its two neighbours. Target: images/s at c = 32 >= 0.8x direct.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from bench.machine import machine  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run folder made by train_gan.py")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load per concurrency (default: 60)")
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts (default: 1,8,32)")
    p.add_argument("--n", type=int, default=8, help="images per request (default: 8, as the page)")
    p.add_argument("--direct-seconds", type=float, default=10.0, help="seconds of each direct measurement (default: 10)")
    p.add_argument("--png-level", type=int, default=None, metavar="0-9",
                   help="the started server's --png-level (default: the server's own default, 0)")
    p.add_argument("--url", default=None, help="an already running server (default: start one on a free port)")
    p.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp",
                   help="HTTP client library of the load (default: aiohttp, the lighter on a shared CPU)")
    return p.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def direct_rate(gen, vectors: np.ndarray, batch: int, seconds: float) -> float:
    """Images/s of the generator alone: batches of `batch` rows (the server's max batch) for `seconds`."""
    from tools.generation import sample_z

    cond = vectors[np.arange(batch) % len(vectors)]  # [B, D]
    # the graph traced for exactly `batch` rows, as the server runs its full batches (engine.bucket): the
    # generator's best rate, not the 10-20 % slower shape-generic graph
    gen(cond, sample_z(batch, gen.z_dim, 0, None), pad_to=batch)  # trace it outside the timing
    done, seed, t0 = 0, 1, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        gen(cond, sample_z(batch, gen.z_dim, seed, None), pad_to=batch)
        done, seed = done + batch, seed + 1
    return done / (time.perf_counter() - t0)


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) a process has used so far, from /proc; NaN where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, TypeError, ValueError, IndexError):
        return float("nan")


async def load(url: str, captions: list[str], concurrency: int, n: int, seconds: float, client: str = "aiohttp",
               server_pid: int | None = None) -> dict:
    """c clients, each sending one request after another for `seconds`; the client library is `client`.
    server_pid: the server's process, whose CPU use over the level is reported (a server started here)."""
    import resource

    latencies, errors, images, counter = [], [], 0, [0]
    post, get, close = await _session(client, concurrency)

    async def one_client():
        nonlocal images
        while time.perf_counter() < stop:
            i = counter[0]
            counter[0] += 1
            body = {"text": captions[i % len(captions)], "n": n, "seed": i}
            t = time.perf_counter()
            try:
                status, answer = await post(url + "/api/generate", body)
            except Exception as e:  # the transport's kind and message (httpx.HTTPError, aiohttp.ClientError, ...)
                errors.append(f"{type(e).__name__}: {e!r}"[:120])
                continue
            if status != 200:
                errors.append(str(status))
                continue
            latencies.append(time.perf_counter() - t)
            images += len(answer["images"])

    try:
        before = await get(url + "/api/health")
        cpu0, server0 = resource.getrusage(resource.RUSAGE_SELF), process_cpu_s(server_pid)
        t0 = time.perf_counter()
        stop = t0 + seconds
        await asyncio.gather(*[one_client() for _ in range(concurrency)])
        wall = time.perf_counter() - t0
        cpu1, server1 = resource.getrusage(resource.RUSAGE_SELF), process_cpu_s(server_pid)
        after = await get(url + "/api/health")
    finally:
        await close()
    batches = after["batches"] - before["batches"]
    ms = [1e3 * x for x in latencies]
    client_cpu = (cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime) / wall  # cores the client used
    return dict(c=concurrency, rps=len(latencies) / wall, ips=images / wall, p50=percentile(ms, 50), p95=percentile(ms, 95),
                p99=percentile(ms, 99), errors=len(errors), error_kinds=sorted(set(errors)),
                batch=(after["images"] - before["images"]) / batches if batches else 0.0,
                busy=(after["busy_s"] - before["busy_s"]) / wall,
                encoded=after["encoded"] - before["encoded"], client_cpu=client_cpu,
                server_cpu=(server1 - server0) / wall)


async def _session(client: str, concurrency: int):
    """(post(url, json) -> (status, parsed JSON), get(url) -> parsed JSON, close()) over one pooled session with
    `concurrency` keep-alive connections: aiohttp (default: its C parser costs the shared CPU least) or httpx."""
    if client == "httpx":
        import httpx

        http = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=concurrency,
                                                                  max_keepalive_connections=concurrency))

        async def post(url, body):
            r = await http.post(url, json=body)
            return r.status_code, (r.json() if r.status_code == 200 else None)

        async def get(url):
            return (await http.get(url)).json()

        return post, get, http.aclose
    import aiohttp

    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120),
                                 connector=aiohttp.TCPConnector(limit=concurrency))

    async def post(url, body):
        async with http.post(url, json=body) as r:
            return r.status, (await r.json() if r.status == 200 else None)

    async def get(url):
        async with http.get(url) as r:
            return await r.json()

    return post, get, http.close


async def _info(url: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url + "/api/info") as r:
        return await r.json()


def start_server(run: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "generate.py", "--serve", "--run", run, "--port", "0", *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if m := re.search(r" at (http://\S+)/$", line):
            return proc, m.group(1)
    raise SystemExit(f"the server exited ({proc.wait()}) before it was serving; run it by hand to see why: "
                     f"python generate.py --serve --run {run}")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from gan.inference import load_generator
    from tools.generation import encode_texts, open_run_cache
    from tools.serve.batcher import BatchPolicy

    levels = [int(c) for c in args.concurrency.split(",")]
    batch = BatchPolicy().max_batch
    print(f"machine: {machine()}")
    gen, cfg = load_generator(args.run)
    cache = open_run_cache(cfg, Path(args.run))
    captions = [" ".join(t.split()) for t in (cache.test_texts() or cache.texts()[:500])]
    vectors = encode_texts(cfg, cache, captions[:batch]).vectors
    print(f"run {Path(args.run).name}: arch {cfg.arch}, ngf {cfg.ngf}, encoder {cfg.cache.encoder}, step {gen.step}; "
          f"{len(captions)} distinct captions, {args.n} images per request, {args.duration:g} s per level")
    extra = [] if args.png_level is None else ["--png-level", str(args.png_level)]
    proc, url = (None, args.url) if args.url else start_server(args.run, extra)
    try:
        asyncio.run(load(url, captions, 2, args.n, 3.0, args.client))  # warm-up: connections, first encodings
        print(f"server {url}: PNG level {asyncio.run(_info(url))['png_level']}")
        # the direct rate is measured before and after each level, so each ratio compares neighbouring minutes
        # (the machine is shared: its speed drifts)
        direct, rows = [direct_rate(gen, vectors, batch, args.direct_seconds)], []
        for c in levels:
            rows.append(asyncio.run(load(url, captions, c, args.n, args.duration, args.client, proc and proc.pid)))
            direct.append(direct_rate(gen, vectors, batch, args.direct_seconds))
            rows[-1]["direct"] = (direct[-2] + direct[-1]) / 2
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    print(f"direct generator, batch {batch}: {np.mean(direct):.0f} images/s (measured {len(direct)} times, "
          f"{min(direct):.0f}-{max(direct):.0f}, {args.direct_seconds:g} s each, server idle)")
    print(f"client: {args.client}; CPU columns in cores (server: all its threads, TensorFlow's included; the load "
          f"generator shares the machine with it)")
    print("| concurrency | requests/s | images/s | p50 ms | p95 ms | p99 ms | errors | mean G batch | G busy | server CPU | client CPU | direct images/s | served / direct |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        err = f"{r['errors']}" + (f" ({', '.join(r['error_kinds'])})" if r["errors"] else "")
        print(f"| {r['c']} | {r['rps']:.1f} | {r['ips']:.0f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} | {err} | "
              f"{r['batch']:.1f} | {100 * r['busy']:.0f}% | {r['server_cpu']:.2f} | {r['client_cpu']:.2f} | {r['direct']:.0f} | {r['ips'] / r['direct']:.2f} |")
    top = next((r for r in rows if r["c"] == 32), rows[-1])
    ratio = top["ips"] / top["direct"]
    verdict = "meets" if ratio >= 0.8 and top["errors"] == 0 else "misses"
    print(f"c={top['c']}: served {top['ips']:.0f} images/s = {ratio:.2f}x direct ({verdict} the >= 0.8x, zero-error target)")
    cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
