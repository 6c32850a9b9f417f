"""The embedding service (precompute_embeddings.py --serve): POST /api/embed on a tiny TF-IDF cache answers with
the stored row for a cached caption and with EmbeddingCache.build_encoder()'s vector for any other text, in the
order sent; every bad input is the web demo's one-line 4xx; a full queue is 503. In-process through FastAPI's
TestClient, plus one real server on a free 127.0.0.1 port started through the CLI."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tools.serve.batcher import BatchPolicy

REPO = Path(__file__).resolve().parents[1]
NEW = ["a scarlet flower with ivory petals", "this flower has eight round blue petals and a white center"]


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory) -> Path:
    """A tfidf cache of 24 synthetic flowers (6 held-out captions not in it)."""
    from cache.writer import build_cache
    from embeddings.registry import get_encoder
    from tools.datasets import load_dataset
    from tools.synthetic import generate_dataset

    tmp = tmp_path_factory.mktemp("embed")
    data = generate_dataset(tmp / "sf", n=24, seed=3, n_test=6, progress=False)
    return build_cache(load_dataset(data), get_encoder("tfidf"), tmp / "sf-tfidf.h5", log=lambda *_: None)


@pytest.fixture(scope="module")
def engine(cache_path):
    from tools.serve.embed_engine import EmbedEngine

    engine = EmbedEngine.open(cache_path)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def reference(cache_path):
    """(cached texts, stored vectors, an encoder built from the file on its own)."""
    from cache.reader import EmbeddingCache

    with EmbeddingCache.open(cache_path) as cache:
        return cache.texts(), cache.embeddings(), cache.build_encoder()


@pytest.fixture(scope="module")
def client(engine):
    from tools.serve.embed_app import create_embed_app

    with TestClient(create_embed_app(engine, BatchPolicy(max_batch=64, max_wait_ms=5, max_queue_images=64))) as c:
        yield c


def embed(client, body, **kw) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/api/embed", content=content, headers={"Content-Type": "application/json", **kw})


def test_info_names_the_cache_encoder(client, cache_path):
    from cache.reader import EmbeddingCache

    info = client.get("/api/info").json()
    with EmbeddingCache.open(cache_path) as cache:
        expected = (cache.encoder_spec, cache.dim, cache.dtype, cache.fingerprint, cache.num_captions)
    assert (info["encoder"], info["dim"], info["dtype"], info["fingerprint"], info["captions"]) == expected
    assert info["encoder"] == "tfidf" and info["dtype"] == "float32" and len(info["fingerprint"]) >= 16
    assert info["file"] == "sf-tfidf.h5" and info["dataset"] == "sf"
    assert info["limits"] == dict(max_body_bytes=65536, max_texts=16, max_words=100, max_chars=1000)
    assert info["batching"] == dict(max_batch_texts=64, max_wait_ms=5.0, max_queue_texts=64)


def test_hits_misses_and_mixed_in_order(client, reference):
    texts, stored, encoder = reference
    hits = [texts[3], texts[0], texts[3]]  # a repeat, too
    sent = [NEW[0], hits[0], NEW[1], hits[1], hits[2]]
    r = embed(client, {"texts": sent})
    assert r.status_code == 200, r.text
    body = r.json()
    vectors = np.asarray(body["vectors"], np.float32)  # [5, D]
    assert body["cached"] == [False, True, False, True, True] and vectors.shape == (5, stored.shape[1])
    assert (body["encoder"], body["dim"]) == ("tfidf", stored.shape[1]) and body["ms"] >= 0
    for i, row in ((1, 3), (3, 0), (4, 3)):  # hits: exactly the stored row (JSON floats round-trip float32)
        assert np.array_equal(vectors[i], stored[row]), i
    fresh = encoder.encode(sent)  # [5, D] the cache's own encoder, rebuilt here
    np.testing.assert_allclose(vectors, fresh, atol=1e-6)
    assert np.abs(vectors[0] - vectors[2]).max() > 0.1  # two different new texts, each its own vector
    only_new = embed(client, {"texts": NEW[::-1]}).json()  # all misses, reversed: the order follows the request
    assert only_new["cached"] == [False, False]
    np.testing.assert_allclose(np.asarray(only_new["vectors"], np.float32), fresh[[2, 0]], atol=1e-6)
    only_hits = embed(client, {"texts": texts[:16]}).json()
    assert only_hits["cached"] == [True] * 16 and np.array_equal(np.asarray(only_hits["vectors"], np.float32), stored[:16])


def test_lookup_is_by_exact_text(client, reference):
    texts, _, encoder = reference
    spaced = "  " + texts[5].replace(" ", "  ") + " "  # the same words, not the same text
    body = embed(client, {"texts": [spaced]}).json()
    assert body["cached"] == [False]
    np.testing.assert_allclose(np.asarray(body["vectors"], np.float32), encoder.encode([spaced]), atol=1e-6)


def test_health_counts_cached_and_encoded(client, reference):
    before = client.get("/api/health").json()
    embed(client, {"texts": [reference[0][7], "a golden flower with crimson petals"]})
    after = client.get("/api/health").json()
    assert after["status"] == "ok" and after["pending_texts"] == 0
    assert (after["cached"] - before["cached"], after["encoded"] - before["encoded"]) == (1, 1)
    assert (after["requests"] - before["requests"], after["texts"] - before["texts"]) == (1, 2)


LONG = " ".join(["petal"] * 101)
BAD = [  # (id, body as JSON or raw bytes, extra headers, status, error pattern): the web demo's wording
    ("empty list", {"texts": []}, {}, 422, r"texts: 0 captions; send 1-16 per request"),
    ("too many texts", {"texts": ["a red flower"] * 17}, {}, 422, r"texts: 17 captions; send 1-16 per request"),
    ("too many characters", {"texts": ["ok", "a" * 1001]}, {}, 422, r"texts\[1\]: 1001 characters; the limit is 1000 characters"),
    ("too many words", {"texts": [LONG]}, {}, 422, r"texts\[0\]: 101 words; the limit is 100 words"),
    ("empty text", {"texts": [" "]}, {}, 422, r"texts\[0\]: empty caption; describe the image in 1-100 words"),
    ("unknown field", {"texts": ["a"], "normalize": True}, {}, 422, r"normalize: unknown field; the fields are texts"),
    ("text instead of texts", {"text": "a red flower"}, {}, 422, r"text: unknown field; the fields are texts"),
    ("no texts", {}, {}, 422, r'texts: missing; send a JSON object such as \{"texts": \["a red flower", .*\]\}'),
    ("texts a string", {"texts": "a red flower"}, {}, 422, r"texts: expected an array of 1-16 captions, got string"),
    ("text a number", {"texts": ["a", 7]}, {}, 422, r"texts\[1\]: expected a string caption, got integer"),
    ("text null", {"texts": [None]}, {}, 422, r"texts\[0\]: expected a string caption, got null"),
    ("array body", ["a red flower"], {}, 422, r'body: expected a JSON object such as \{"texts": .*\}, got array'),
    ("unpaired surrogate", b'{"texts": ["a \\udc00"]}', {}, 422, r"texts\[0\]: unpaired surrogate '\\udc00' at character 2; .*"),
    ("not JSON", b"texts=a+red+flower", {}, 400, r"body: invalid JSON \(Expecting value at line 1 column 1\)"),
    ("NaN", b'{"texts": NaN}', {}, 400, r"body: invalid JSON \(NaN is not a JSON number\)"),
    ("empty body", b"", {}, 400, r'body: empty; send a JSON object such as \{"texts": .*\}'),
    ("invalid UTF-8", b'{"texts": ["\xff"]}', {}, 400, r"body: not valid UTF-8 \(invalid start byte at byte 12\); .*"),
    ("over 64 KB", {"texts": ["a " * 20000] * 2}, {}, 413, r"body: over 65536 bytes; send at most 64 KB"),
    ("form", b"texts=a", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     r"Content-Type: application/x-www-form-urlencoded; send application/json"),
]


@pytest.mark.parametrize("body,headers,status,pattern", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_gets_one_line(client, body, headers, status, pattern):
    r = embed(client, body, **headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and "\n" not in r.text
    assert list(r.json()) == ["error"] and re.fullmatch(pattern, r.json()["error"]), r.json()["error"]


def test_unknown_routes_and_methods(client):
    assert client.get("/api/generate").json() == {
        "error": "/api/generate: not found; the API is POST /api/embed, GET /api/info, GET /api/health"}
    r = client.get("/api/embed")
    assert r.status_code == 405 and r.json() == {"error": "GET /api/embed: method not allowed"}


class GatedEngine:
    """The real engine, but each batch waits for `gate`: the test decides when the worker is busy."""

    def __init__(self, engine):
        self.engine, self.gate, self.batches = engine, threading.Event(), []

    def info(self):
        return self.engine.info()

    def run_batch(self, jobs):
        self.gate.wait(30)
        self.batches.append(sum(job.rows for job in jobs))
        return self.engine.run_batch(jobs)


def _post_in_thread(client, body, answers):
    t = threading.Thread(target=lambda: answers.append(embed(client, body)))
    t.start()
    return t


def _wait_pending(client, texts):
    deadline = time.monotonic() + 10
    while client.get("/api/health").json()["pending_texts"] != texts:
        assert time.monotonic() < deadline, "requests did not queue"
        time.sleep(0.01)


def test_a_full_queue_answers_503_and_queued_requests_share_one_encoder_call(engine, reference):
    from tools.serve.embed_app import create_embed_app

    gated = GatedEngine(engine)
    app = create_embed_app(gated, BatchPolicy(max_batch=16, max_wait_ms=1, max_queue_images=32))
    answers: list = []
    with TestClient(app) as client:
        first = _post_in_thread(client, {"texts": ["a red flower"] * 16}, answers)  # the worker holds 16
        _wait_pending(client, 16)
        queued = [_post_in_thread(client, {"texts": [t]}, answers) for t in (NEW[0], reference[0][2])]
        _wait_pending(client, 18)
        r = embed(client, {"texts": ["a"] * 15})  # 18 + 15 > 32
        assert r.status_code == 503 and r.headers["retry-after"].isdigit()
        assert re.fullmatch(r"queue: full \(18 texts waiting, limit 32\); retry after \d+ s", r.json()["error"])
        gated.gate.set()
        for t in (first, *queued):
            t.join(30)
        health = client.get("/api/health").json()
    assert sorted(a.status_code for a in answers) == [200, 200, 200] and gated.batches == [16, 2]  # the two shared one call
    by_size = {len(a.json()["vectors"]): a.json() for a in answers}
    assert by_size[16]["batch_texts"] == 16 and health["rejected"] == 1 and health["pending_texts"] == 0
    singles = sorted((a.json() for a in answers if a.json()["batch_texts"] == 2), key=lambda a: a["cached"])
    assert [a["cached"] for a in singles] == [[False], [True]]
    assert np.array_equal(np.asarray(singles[1]["vectors"][0], np.float32), reference[1][2])


def test_cli_serves_on_loopback_and_refuses_bad_options(cache_path, reference, tmp_path):
    import precompute_embeddings
    from tools.errors import UserError

    for flags, pattern in ((["--cache", str(tmp_path / "none.h5")], r"--cache .*none\.h5: no such file"),
                           (["--cache", str(cache_path), "--port", "70000"], r"--port 70000: must be 0-65535"),
                           (["--cache", str(cache_path), "--max-batch", "8"], r"--max-batch 8: must be at least 16")):
        with pytest.raises(UserError, match=pattern):
            precompute_embeddings.main(["--serve", *flags])
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "precompute_embeddings.py", "--serve", "--cache", str(cache_path),
                             "--port", "0"], cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
        reader.start()  # the line comes once the port is bound and the encoder rebuilt and checked
        reader.join(120)
        line = lines[0] if lines else ""
        if not line:
            log.seek(0)
            pytest.fail(f"server did not start (exit {proc.poll()}): {log.read()[-800:]}")
        m = re.fullmatch(r"serving sf-tfidf\.h5 \(encoder tfidf, (\d+)-d\) at (http://127\.0\.0\.1:\d+)/\n", line)
        assert m, line
        r = httpx.post(m.group(2) + "/api/embed", json={"texts": [NEW[0], reference[0][1]]}, timeout=30)
        assert r.status_code == 200 and r.json()["cached"] == [False, True] and int(m.group(1)) == len(r.json()["vectors"][0])
        assert np.array_equal(np.asarray(r.json()["vectors"][1], np.float32), reference[1][1])
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_float16_cache_serves_its_stored_rows_and_float32_encodings(cache_path, reference):
    """Hits are the stored float16 row widened (exactly), misses the encoder's float32 vector, unrounded."""
    from cache.reader import EmbeddingCache
    from cache.writer import build_cache
    from embeddings.registry import get_encoder
    from tools.datasets import load_dataset
    from tools.serve.embed_app import create_embed_app
    from tools.serve.embed_engine import EmbedEngine

    path = build_cache(load_dataset(cache_path.parent / "sf"), get_encoder("tfidf"), cache_path.with_name("sf16.h5"),
                       dtype="float16", log=lambda *_: None)
    with EmbeddingCache.open(path) as cache:
        stored16 = cache.embeddings([4])[0]  # float16 values as float32
        encoder = cache.build_encoder()
    engine = EmbedEngine.open(path)
    try:
        with TestClient(create_embed_app(engine)) as client:
            assert client.get("/api/info").json()["dtype"] == "float16"
            body = embed(client, {"texts": [reference[0][4], NEW[1]]}).json()
    finally:
        engine.close()
    vectors = np.asarray(body["vectors"], np.float32)
    assert body["cached"] == [True, False] and np.array_equal(vectors[0], stored16)
    assert not np.array_equal(vectors[0], reference[1][4])  # float16 rounding is visible: the row is the file's
    np.testing.assert_allclose(vectors[1], encoder.encode([NEW[1]])[0], atol=1e-6)
    assert not np.array_equal(vectors[1], vectors[1].astype(np.float16).astype(np.float32))  # not rounded
