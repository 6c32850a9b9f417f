"""bench/serve.py against the tests' real server (tests/test_serve_api.py's tiny run): the load client counts
what the server answered, reads the server's CPU from /proc, and the printed table has one row per level."""
from __future__ import annotations

import asyncio
import os
import re

import pytest

from test_serve_api import shared_server

from bench import serve as bench_serve


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    return shared_server(tmp_path_factory, request.config)


def test_process_cpu_reads_proc_and_is_nan_without_a_process():
    used = bench_serve.process_cpu_s(os.getpid())
    sum(i * i for i in range(2_000_000))  # burn some CPU in this process
    assert bench_serve.process_cpu_s(os.getpid()) > used > 0
    assert bench_serve.process_cpu_s(None) != bench_serve.process_cpu_s(None)  # NaN


def test_load_counts_answers_and_server_cpu(server):
    captions = ["a red flower with a yellow center", "this flower has five pointed blue petals"]
    before = asyncio.run(bench_serve._info(server["url"]))
    r = asyncio.run(bench_serve.load(server["url"], captions, 2, 3, 1.5, "aiohttp", server["proc"].pid))
    assert r["errors"] == 0 and r["c"] == 2 and r["rps"] > 0
    assert r["ips"] == pytest.approx(3 * r["rps"])  # every answer carried n = 3 images
    assert 3 <= r["batch"] <= 6  # two clients' 3-image jobs, alone or micro-batched together
    assert r["server_cpu"] > 0 and r["client_cpu"] > 0
    assert r["p50"] <= r["p95"] <= r["p99"]
    assert before["png_level"] == 0


def test_main_prints_one_row_per_level(server, capsys):
    assert bench_serve.main(["--run", str(server["run"]), "--url", server["url"], "--duration", "1",
                             "--concurrency", "1,2", "--n", "2", "--direct-seconds", "0.3"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(r.split("|")[1]) for r in rows] == [1, 2]
    assert all(r.split("|")[7].strip() == "0" for r in rows)  # errors column
    assert "PNG level 0" in out and re.search(r"c=2: served \d+ images/s = [\d.]+x direct", out)
