"""tools/fetch_images.py against a real HTTP server on 127.0.0.1 (tests/fixtures_http.py): every failure kind
lands in the report under its reason, the result is a manifest dataset, the per-host bound holds, and a run
killed with SIGKILL resumes by fetching only what its journal lacks (requests counted at the server)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.fixtures_datasets import make_eee443
from tests.fixtures_http import ImageServer, image_bytes
from tools.datasets import load_dataset
from tools.datasets.fetch_journal import Journal
from tools.datasets.url_sources import read_url_source
from tools.errors import UserError
from tools.fetch_images import FetchOptions, fetch_images, robots_forbid
from tools.images import decode_bytes, load_rgb

REPO = Path(__file__).resolve().parent.parent
FAST = dict(size=16, timeout=1.0, retries=1, backoff=0.01, max_bytes=1_000_000, progress_every=0,
            decode_processes=0)  # decode in a thread: no process start per call (the SIGKILL test runs the default)


@pytest.fixture(scope="module")
def server():
    with ImageServer() as s:
        yield s


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["image_id", "url", "caption"]).to_csv(path, index=False)
    return path


CASES = {  # image id -> (path on the server, expected status, expected reason)
    "good1": ("/img/good1.jpg", "ok", None),
    "good2": ("/img/good2.jpg", "ok", None),
    "moved": ("/redirect/moved.jpg", "ok", None),
    "flaky": ("/flaky.jpg", "ok", None),
    "other": ("/other-agent.jpg", "ok", None),
    "gone": ("/missing", "failed", "HTTP 404"),
    "slow": ("/slow.jpg", "failed", "timeout"),
    "big": ("/big.jpg", "failed", "larger than --max-bytes"),
    "bigstream": ("/bigstream.jpg", "failed", "larger than --max-bytes"),
    "page": ("/page.jpg", "failed", "content type text/html"),
    "corrupt": ("/corrupt.jpg", "failed", "not a decodable image"),
    "loop": ("/loop", "failed", "more than 5 redirects"),
    "noai": ("/noai.jpg", "skipped", "X-Robots-Tag noai/noimageai"),
    "noimageai": ("/noimageai.jpg", "skipped", "X-Robots-Tag noai/noimageai"),
}


def test_every_failure_kind_is_reported(server, tmp_path, capsys):
    source = write_csv(tmp_path / "urls.csv", [(i, server.url(p), f"caption of {i}") for i, (p, _, _) in CASES.items()]
                       + [("good1", server.url("/img/good1.jpg"), "a second caption")])
    items = read_url_source(source)
    started = time.perf_counter()
    report = fetch_images(items, tmp_path / "out", FetchOptions(**FAST, connections=8, per_host=8))
    assert time.perf_counter() - started < 6  # the 2.5 s response is cut at 1 s per attempt
    print(capsys.readouterr().out)  # the report (pytest -s shows it)
    journal = Journal.open(tmp_path / "out" / "fetch-journal.jsonl").done
    for image_id, (path, status, reason) in CASES.items():
        assert (journal[image_id]["status"], journal[image_id].get("reason")) == (status, reason), image_id
    assert journal["flaky"]["attempts"] == 2 and journal["slow"]["attempts"] == 2  # one retry each
    assert all(journal[i]["attempts"] == 1 for i in CASES if i not in ("flaky", "slow"))  # final answers: no retry
    assert journal["gone"]["http"] == 404 and server.counts["/redirect/moved.jpg"] == 1
    assert report["fetched"] == 5 and report["pending"] == 0
    assert report["failed"] == {"HTTP 404": 1, "timeout": 1, "larger than --max-bytes": 2,
                                "content type text/html": 1, "not a decodable image": 1, "more than 5 redirects": 1}
    assert report["skipped"] == {"X-Robots-Tag noai/noimageai": 2}
    assert json.loads((tmp_path / "out" / "fetch-report.json").read_text()) == report
    # the result is a manifest dataset: fetched images only, all captions, pixels as training decodes them
    ds = load_dataset(tmp_path / "out")
    assert ds.layout == "manifest" and ds.image_ids == ["good1", "good2", "moved", "flaky", "other"]
    assert ds.captions[:2] == ["caption of good1", "a second caption"]
    expected = decode_bytes(image_bytes("moved.jpg"), 16)  # [16, 16, 3]
    assert np.array_equal(load_rgb(ds.image_paths[2], 16), expected)
    # a plain rerun requests nothing; --retry-failed retries the failures (the slow one fits in 5 s);
    # --ignore-robots fetches what the robots rule skipped
    server.reset()
    again = fetch_images(items, tmp_path / "out", FetchOptions(**FAST))
    assert server.counts == {} and again["fetched_this_run"] == 0
    retried = fetch_images(items, tmp_path / "out", FetchOptions(**{**FAST, "timeout": 5.0}, retry_failed=True))
    assert set(server.counts) == {CASES[i][0] for i in CASES if CASES[i][1] == "failed"}
    assert retried["fetched"] == 6 and "timeout" not in retried["failed"] and retried["skipped"] == report["skipped"]
    server.reset()
    unrobotted = fetch_images(items, tmp_path / "out", FetchOptions(**FAST, robots=False))
    assert set(server.counts) == {"/noai.jpg", "/noimageai.jpg"} and unrobotted["fetched"] == 8


def test_robots_rule():
    assert robots_forbid(["noai"]) and robots_forbid(["noindex, NoImageAI"]) and robots_forbid(["t2i-fetch: noai"])
    assert not robots_forbid(["otherbot: noai"]) and not robots_forbid(["noindex, nofollow"]) and not robots_forbid([])


def test_per_host_bound(server, tmp_path):
    rows = [(f"p{i}", server.url(f"/img/p{i}.jpg?delay=0.05"), "x") for i in range(12)]
    server.reset()
    report = fetch_images(read_url_source(write_csv(tmp_path / "u.csv", rows)), tmp_path / "o",
                          FetchOptions(**FAST, connections=8, per_host=2))
    assert report["fetched"] == 12 and server.peak == 2
    # another --size refetches everything at the new size
    server.reset()
    fetch_images(read_url_source(tmp_path / "u.csv"), tmp_path / "o", FetchOptions(**{**FAST, "size": 8}))
    assert len(server.counts) == 12 and load_rgb(load_dataset(tmp_path / "o").image_paths[0], None).shape == (8, 8, 3)


def test_eee443_source(server, tmp_path):
    urls = [server.url(f"/img/COCO_train2014_{i:012d}.jpg") for i in (1, 2)] + [server.url("/missing")]
    h5 = make_eee443(tmp_path / "coco" / "train.h5", [["a", "dog"], ["a", "man", "x_UNK_"], ["a", "horse"]],
                     imid=[1, 2, 3], urls=urls, present=[])
    items = read_url_source(h5)
    assert [(i.id, i.captions) for i in items] == [
        ("COCO_train2014_000000000001", ["a dog"]), ("COCO_train2014_000000000002", ["a man"]), ("missing", ["a horse"])]
    report = fetch_images(items, tmp_path / "coco64", FetchOptions(**FAST))
    assert report["fetched"] == 2 and report["failed"] == {"HTTP 404": 1}
    ds = load_dataset(tmp_path / "coco64")
    assert ds.image_ids == ["COCO_train2014_000000000001", "COCO_train2014_000000000002"]
    assert ds.captions == ["a dog", "a man"] and load_rgb(ds.image_paths[0], None).shape == (16, 16, 3)


def test_jsonl_manifest_source(server, tmp_path):
    """A manifest-style JSONL whose rows carry a URL instead of an image path; ids from the URL's file name."""
    rows = [{"url": server.url(f"/img/j{i}.jpg"), "captions": [f"a {i}", f"b {i}"]} for i in range(3)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = read_url_source(tmp_path / "m.jsonl")
    assert [(i.id, i.captions) for i in items] == [(f"j{k}", [f"a {k}", f"b {k}"]) for k in range(3)]
    report = fetch_images(items, tmp_path / "web", FetchOptions(**FAST))
    ds = load_dataset(tmp_path / "web")
    assert report["fetched"] == 3 and ds.image_ids == ["j0", "j1", "j2"] and ds.num_captions == 6


def test_source_errors(tmp_path):
    bad = write_csv(tmp_path / "a.csv", [("1", "http://127.0.0.1:9/a.jpg", "x")]).read_text().replace("url", "link2")
    (tmp_path / "b.csv").write_text(bad)
    with pytest.raises(UserError, match="no URL column.*--url-column"):
        read_url_source(tmp_path / "b.csv")
    write_csv(tmp_path / "c.csv", [("1", "http://127.0.0.1:9/a.jpg", "x"), ("1", "http://127.0.0.1:9/b.jpg", "y")])
    with pytest.raises(UserError, match="image id '1' has two URLs"):
        read_url_source(tmp_path / "c.csv")


def test_kill_9_then_resume_fetches_only_the_rest(tmp_path):
    with ImageServer(delay=0.05) as server:
        n = 40
        names = [f"k{i:02d}" for i in range(n)]
        source = write_csv(tmp_path / "urls.csv", [(k, server.url(f"/img/{k}.jpg"), f"image {k}") for k in names])
        out = tmp_path / "out"
        cmd = [sys.executable, "tools/fetch_images.py", "--source", str(source), "--out", str(out), "--size", "16",
               "--connections", "4", "--no-progress"]
        journal = out / "fetch-journal.jsonl"
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and (not journal.exists() or journal.read_bytes().count(b"\n") < 10):
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = set(Journal.open(journal).done)
        assert 10 <= len(done) < n, "the kill must land mid-run"
        time.sleep(0.3)  # requests the dead client had already sent are still served (and counted): let them end
        while server.open:
            time.sleep(0.05)
        first = dict(server.counts)
        server.reset()
        run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert f"{n - len(done)} to fetch" in run.stdout
        # each image without a record is requested exactly once; none that was journaled is requested again
        assert server.counts == {f"/img/{k}.jpg": 1 for k in names if k not in done}
        assert len(first) - len(done) <= 8  # lost: at most the 4 downloading and the 4 waiting for a decoder
    ds = load_dataset(out)
    assert ds.image_ids == names and ds.skips.total == 0
    assert len({load_rgb(p, 16)[0, 0].tobytes() for p in ds.image_paths}) == n
