"""The web demo's JSON API against a real server process (`generate.py --serve` on a free loopback port) that
serves a tiny real run: images equal to the generator's own, micro-batching, every bad input's status and
message, a flood beyond the queue answered 503 with the server healthy afterwards.

The run (test_generate.py's recipe: 24 synthetic flowers, a tfidf cache, TINY training options) and the
server are built once per session and shared with tests/test_serve_browser.py.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import os
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
from PIL import Image

from test_generate import TINY

REPO = Path(__file__).resolve().parents[1]
SERVER_FLAGS = ["--max-wait-ms", "30", "--max-queue", "64"]  # one full request fills the queue: floods get 503s
_shared: dict = {}


def tiny_run(tmp_path_factory) -> Path:
    """A 2-step run on a tfidf cache of 24 synthetic flowers with 6 held-out test captions (built once)."""
    if "run" not in _shared:
        import train_gan
        from cache.writer import build_cache
        from embeddings.registry import get_encoder
        from tools.datasets import load_dataset
        from tools.synthetic import generate_dataset

        tmp = tmp_path_factory.mktemp("serve")
        data = generate_dataset(tmp / "sf", n=24, seed=3, n_test=6, progress=False)
        cache = build_cache(load_dataset(data), get_encoder("tfidf"), tmp / "sf-tfidf.h5", log=lambda *_: None)
        train_gan.main(["--embeddings", str(cache), "--run-dir", str(tmp / "runs"), *TINY])
        (_shared["run"],) = (tmp / "runs").iterdir()
    return _shared["run"]


def start_server(run_dir: Path, *flags: str, timeout: float = 240.0) -> tuple[subprocess.Popen, str, list[str]]:
    """`generate.py --serve --port 0`: (process, base URL from its 'serving ... at URL' line, its stdout lines)."""
    log = tempfile.TemporaryFile(mode="w+")  # stderr: shown if the server does not come up
    proc = subprocess.Popen([sys.executable, "generate.py", "--serve", "--run", str(run_dir), "--port", "0", *flags],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    found = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if " at http://" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found.wait(0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.seek(0)
            tail = [line for line in log.read().splitlines() if not line.startswith(("I0000", "W0000", "WARNING"))][-5:]
            raise AssertionError(f"server did not start (exit {proc.poll()}); stdout: {lines}; stderr tail: {tail}")
    return proc, re.search(r"at (http://\S+)/$", lines[-1]).group(1), lines


def shared_server(tmp_path_factory, config) -> dict:
    """One server for the session, stopped when the session ends."""
    if "server" not in _shared:
        run_dir = tiny_run(tmp_path_factory)
        proc, url, lines = start_server(run_dir, *SERVER_FLAGS)

        def stop():
            proc.terminate()
            proc.wait(20)

        config.add_cleanup(stop)
        _shared["server"] = dict(url=url, run=run_dir, proc=proc, lines=lines)
    return _shared["server"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    return shared_server(tmp_path_factory, request.config)


def post(url: str, body=None, *, content: bytes | None = None, headers: dict | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(headers or {})}
    data = json.dumps(body).encode() if content is None else content
    return httpx.post(url + "/api/generate", content=data, headers=headers, timeout=60)


def decode(b64: str) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (64, 64)
    return np.asarray(image)


def test_server_binds_loopback_and_reports_the_run(server):
    assert server["url"].startswith("http://127.0.0.1:")
    assert re.fullmatch(r"serving 00001-sf-tfidf \(encoder tfidf, step 2\) at http://127\.0\.0\.1:\d+/", server["lines"][-1])
    info = httpx.get(server["url"] + "/api/info").json()
    from cache.reader import EmbeddingCache
    from gan.run_dir import load_config

    with EmbeddingCache.open(load_config(server["run"]).cache.path) as cache:
        test_texts = cache.test_texts()
    assert (info["run"], info["dataset"], info["encoder"], info["step"], info["image_size"]) == ("00001-sf-tfidf", "sf", "tfidf", 2, 64)
    assert info["checkpoint"] == "ckpt-2" and info["z_dim"] == 8
    assert info["examples"] == [" ".join(t.split()) for t in test_texts]  # 6 held-out captions, all offered
    assert info["limits"] == dict(max_body_bytes=65536, max_n=16, max_texts=16, max_images=64, max_words=100,
                                  max_chars=1000, max_seed=4294967295, max_truncation=10.0)
    assert info["batching"] == dict(max_batch=64, max_wait_ms=30.0, max_queue_images=64)
    assert info["png_level"] == 0  # stored PNGs: the default, the least CPU taken from the generator
    health = httpx.get(server["url"] + "/api/health").json()
    assert health["status"] == "ok" and health["max_queue_images"] == 64
    page = httpx.get(server["url"] + "/")
    assert page.status_code == 200 and '<textarea id="caption"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert "src=\"http" not in page.text and "href=\"http" not in page.text  # no CDN
    assert httpx.get(server["url"] + "/static/app.js").status_code == 200


def test_images_are_the_generators_own_and_cached_captions_reuse_their_vectors(server):
    from gan.inference import load_generator
    from tools.generation import open_run_cache

    _, cfg = load_generator(server["run"])
    cache = open_run_cache(cfg, server["run"])
    known = cache.texts()[4]
    texts = [known, "a  blue flower with eight\tround petals"]  # whitespace collapsed, as generate.py --text does
    before = httpx.get(server["url"] + "/api/health").json()
    r = post(server["url"], {"texts": texts, "n": 2, "seed": 7, "truncation": 0.8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["encoder"], body["step"], body["n"], body["seed"], body["truncation"]) == ("tfidf", 2, 2, 7, 0.8)
    assert body["texts"] == [known, "a blue flower with eight round petals"] and body["ms"] > 0
    cache.close()
    served = np.stack([decode(b) for b in body["images"]])  # [4, 64, 64, 3], caption-major
    assert_generators_own(server["run"], body, served)
    assert not np.array_equal(served[0], served[1])  # each image its own z
    again = post(server["url"], {"texts": texts, "n": 2, "seed": 7, "truncation": 0.8}).json()
    assert again["images"] == body["images"]  # same request, same bytes
    other = post(server["url"], {"text": known, "n": 2, "seed": 8}).json()
    assert other["images"][0] != body["images"][0]
    after = httpx.get(server["url"] + "/api/health").json()
    # the new caption was encoded once (then remembered in memory); the cached one always reused its vector
    assert after["encoded"] - before["encoded"] == 1 and after["reused"] - before["reused"] == 4
    assert after["requests"] - before["requests"] == 3 and after["images"] - before["images"] == 10


def assert_generators_own(run: Path, body: dict, served: np.ndarray) -> None:
    """The served images (caption-major, body["n"] per text) are the run's generator on the texts' own vectors."""
    from gan.inference import load_generator
    from tools.generation import encode_texts, open_run_cache, sample_z

    gen, cfg = load_generator(run)
    cache = open_run_cache(cfg, run)
    vectors = encode_texts(cfg, cache, body["texts"]).vectors
    cache.close()
    n = body["n"]
    z = sample_z(n * len(body["texts"]), gen.z_dim, body["seed"], body["truncation"])
    direct = gen(np.repeat(vectors, n, axis=0), z)
    assert np.abs(served.astype(int) - direct.astype(int)).max() <= 1  # same images (rounding may differ by 1)


def test_captions_in_any_language_and_script_are_drawn(server):
    """The page and the API take any UTF-8 caption (what the multilingual `use` encoder reads; this run's tfidf
    knows none of these words, so its images are the text-free ones): echoed intact, drawn, each its own."""
    texts = ["una flor con pétalos rojos y un centro blanco",  # es
             "une fleur aux pétales jaunes et au cœur blanc",  # fr
             "一朵有红色花瓣和白色花心的花",  # zh
             "赤い花びらと白い中心の花",  # ja
             "цветок с синими лепестками"]  # ru
    r = post(server["url"], {"texts": texts, "n": 1, "seed": 11})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["texts"] == texts and len(body["images"]) == 5
    assert_generators_own(server["run"], body, np.stack([decode(b) for b in body["images"]]))


async def _concurrent(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=100)) as client:
        return await asyncio.gather(*[client.post(url + "/api/generate", json=b) for b in bodies])


def test_concurrent_requests_share_generator_calls_and_get_their_own_images(server):
    bodies = [{"text": f"a flower number {i} with white petals", "n": 2, "seed": i} for i in range(8)]
    before = httpx.get(server["url"] + "/api/health").json()
    responses = asyncio.run(_concurrent(server["url"], bodies))
    after = httpx.get(server["url"] + "/api/health").json()
    assert [r.status_code for r in responses] == [200] * 8
    answers = [r.json() for r in responses]
    assert max(a["batch_images"] for a in answers) > 2  # at least two requests shared one generator call
    assert after["batches"] - before["batches"] < 8 and after["images"] - before["images"] == 16
    for body, answer in zip(bodies, answers):  # batching changes nothing: each equals the same request alone
        alone = post(server["url"], body).json()
        assert alone["batch_images"] == 2 and alone["texts"] == [body["text"]]
        for a, b in zip(answer["images"], alone["images"]):
            assert np.abs(decode(a).astype(int) - decode(b).astype(int)).max() <= 1


def test_a_flood_beyond_the_queue_gets_503_with_retry_after_and_the_server_stays_healthy(server):
    full = {"texts": ["a red flower", "a yellow flower", "a white flower", "a pink flower"], "n": 16}
    responses = asyncio.run(_concurrent(server["url"], [{**full, "seed": i} for i in range(40)]))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(503) >= 10 and codes.count(200) >= 1, codes
    for r in responses:
        if r.status_code == 503:
            assert r.headers["retry-after"].isdigit() and 1 <= int(r.headers["retry-after"]) <= 60
            assert re.fullmatch(r"queue: full \(\d+ images waiting, limit 64\); retry after \d+ s", r.json()["error"])
        else:
            assert len(r.json()["images"]) == 64
    health = httpx.get(server["url"] + "/api/health").json()
    assert health["status"] == "ok" and health["pending_images"] == 0 and health["rejected"] >= codes.count(503)
    ok = post(server["url"], {"text": "a purple flower", "n": 3})
    assert ok.status_code == 200 and len(ok.json()["images"]) == 3


LONG_WORDS = " ".join(["petal"] * 101)
BAD_INPUTS = [  # (id, body: dict/list to send as JSON, or bytes sent as they are, headers, status, error pattern)
    ("empty", {"text": ""}, None, 422, r"text: empty caption; describe the image in 1-100 words"),
    ("whitespace", {"text": " \t\n "}, None, 422, r"text: empty caption; describe the image in 1-100 words"),
    ("101 words", {"text": LONG_WORDS}, None, 422, r"text: 101 words; the limit is 100 words"),
    ("1001 chars", {"text": "a" * 1001}, None, 422, r"text: 1001 characters; the limit is 1000 characters"),
    ("non-string caption", {"text": 42}, None, 422, r"text: expected a string caption, got integer"),
    ("caption in list not a string", {"texts": ["a red flower", None]}, None, 422,
     r"texts\[1\]: expected a string caption, got null"),
    ("empty caption in list", {"texts": ["a red flower", "  "]}, None, 422, r"texts\[1\]: empty caption; .*1-100 words"),
    ("unpaired surrogate", b'{"text": "a red \\ud800 flower"}', None, 422,
     r"text: unpaired surrogate '\\ud800' at character 6; send valid Unicode text"),
    ("n 0", {"text": "a red flower", "n": 0}, None, 422, r"n: 0 is outside 1-16; ask for 1 to 16 images per caption"),
    ("n 17", {"text": "a red flower", "n": 17}, None, 422, r"n: 17 is outside 1-16; ask for 1 to 16 images per caption"),
    ("n string", {"text": "a red flower", "n": "4"}, None, 422, r"n: expected an integer 1-16, got string"),
    ("n float", {"text": "a red flower", "n": 2.5}, None, 422, r"n: expected an integer 1-16, got number"),
    ("n boolean", {"text": "a red flower", "n": True}, None, 422, r"n: expected an integer 1-16, got boolean"),
    ("too many texts", {"texts": ["a red flower"] * 17}, None, 422, r"texts: 17 captions; send 1-16 per request"),
    ("no texts", {"texts": []}, None, 422, r"texts: 0 captions; send 1-16 per request"),
    ("too many images", {"texts": ["a red flower"] * 5, "n": 13}, None, 422,
     r"n: 5 captions x 13 images = 65; the limit is 64 images per request"),
    ("texts not a list", {"texts": "a red flower"}, None, 422, r"texts: expected an array of 1-16 captions, got string"),
    ("text and texts", {"text": "a", "texts": ["b"]}, None, 422, r'text/texts: give exactly one of "text" \(a caption\) or "texts" \(a list of captions\)'),
    ("no text", {"n": 2}, None, 422, r'text/texts: give exactly one of "text" \(a caption\) or "texts" \(a list of captions\)'),
    ("unknown field", {"text": "a red flower", "steps": 5}, None, 422,
     r"steps: unknown field; the fields are text, texts, n, seed, truncation"),
    ("seed negative", {"text": "a red flower", "seed": -1}, None, 422, r"seed: -1 is outside 0-4294967295; any integer in that range gives its own images"),
    ("seed huge", {"text": "a red flower", "seed": 2**64}, None, 422, r"seed: 18446744073709551616 is outside 0-4294967295; any integer in that range gives its own images"),
    ("truncation 0", {"text": "a red flower", "truncation": 0}, None, 422, r"truncation: 0 is outside \(0, 10\]; .*"),
    ("truncation string", {"text": "a red flower", "truncation": "0.7"}, None, 422,
     r"truncation: expected a number in \(0, 10\] or null, got string"),
    ("NaN", b'{"text": "a red flower", "truncation": NaN}', None, 400, r"body: invalid JSON \(NaN is not a JSON number\)"),
    ("array body", ["a red flower"], None, 422, r'body: expected a JSON object such as \{"text": .*\}, got array'),
    ("invalid JSON", b'{"text": "a red flower",', None, 400, r"body: invalid JSON \(Expecting property name .* column 25\)"),
    ("empty body", b"", None, 400, r'body: empty; send a JSON object such as \{"text": "a red flower", "n": 4\}'),
    ("invalid UTF-8", b'{"text": "a red \xff\xfe flower"}', None, 400,
     r"body: not valid UTF-8 \(invalid start byte at byte 16\); send JSON encoded as UTF-8"),
    ("deep nesting", b"[" * 30000 + b"]" * 30000, None, 400, r"body: invalid JSON \(nested too deeply\)"),
    ("huge integer", b'{"text": "a", "n": ' + b"9" * 5000 + b"}", None, 400, r"body: invalid JSON \(.*digits.*\)"),
    ("over 64 KB", {"text": "a" * 70000}, None, 413, r"body: over 65536 bytes; send at most 64 KB"),
    ("over 64 KB chunked", b"chunked", None, 413, r"body: over 65536 bytes; send at most 64 KB"),
    ("form content type", b"text=a+red+flower", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     r"Content-Type: application/x-www-form-urlencoded; send application/json"),
]


@pytest.mark.parametrize("body,headers,status,pattern", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_4xx_with_one_line_naming_field_and_limit(server, body, headers, status, pattern):
    if body == b"chunked":  # no Content-Length: the limit holds on the streamed body too
        def chunks():
            for _ in range(20):
                yield b" " * 4096

        r = httpx.post(server["url"] + "/api/generate", content=chunks(), headers={"Content-Type": "application/json"})
    elif isinstance(body, bytes):
        r = post(server["url"], content=body, headers=headers)
    else:
        r = post(server["url"], body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and "\n" not in r.text
    payload = r.json()
    assert list(payload) == ["error"] and re.fullmatch(pattern, payload["error"]), payload["error"]


def test_unknown_routes_and_methods_are_one_line_json(server):
    r = httpx.get(server["url"] + "/api/nothing")
    assert r.status_code == 404 and r.json() == {
        "error": "/api/nothing: not found; the API is POST /api/generate, GET /api/info, GET /api/health"}
    r = httpx.get(server["url"] + "/api/generate")
    assert r.status_code == 405 and r.json() == {"error": "GET /api/generate: method not allowed"}
    assert httpx.get(server["url"] + "/api/health").json()["status"] == "ok"


def test_batches_are_padded_to_a_few_fixed_sizes():
    from tools.serve.engine import bucket

    assert [bucket(r) for r in (1, 2, 3, 5, 8, 9, 33, 64)] == [1, 2, 4, 8, 8, 16, 64, 64]
    assert len({bucket(r) for r in range(1, 65)}) == 7  # graphs traced for a max batch of 64


def test_png_writer_round_trips_through_pillow():
    from tools.serve.png import encode_png

    rng = np.random.default_rng(0)
    smooth = (np.cumsum(rng.integers(-8, 9, (64, 64, 3)), axis=1) % 256).astype(np.uint8)
    sizes = {}
    for level in (0, 1, 9):
        for k, image in enumerate((smooth, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
                                   np.full((3, 5, 3), 255, np.uint8))):
            png = encode_png(image, level)
            decoded = Image.open(io.BytesIO(png))
            assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), image), (level, k)
            sizes[level, k] = len(png)
    # level 0 stores the 64×64 rows (64 × (1 + 192) bytes + zlib/PNG framing); level 1 compresses the smooth image
    assert sizes[0, 0] == 12420 and sizes[1, 0] < 0.8 * sizes[0, 0] and sizes[9, 0] <= sizes[1, 0]
    with pytest.raises(ValueError, match=r"expected uint8 \[H, W, 3\], got float32 \[4, 4, 3\]"):
        encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"PNG compression level 10: must be 0-9"):
        encode_png(smooth, 10)


def test_serve_cli_refuses_bad_options_in_one_line(tmp_path):
    import generate
    from tools.errors import UserError

    with pytest.raises(UserError, match=r"--run .*nowhere: not a run folder \(no config.json\)"):
        generate.main(["--serve", "--run", str(tmp_path / "nowhere")])
    (tmp_path / "config.json").write_text("{}")
    for flags, message in ((["--max-batch", "32"], r"--max-batch 32: must be at least 64"),
                           (["--max-queue", "10"], r"--max-queue 10: must be at least --max-batch \(64\)"),
                           (["--port", "70000"], r"--port 70000: must be 0-65535"),
                           (["--png-level", "12"], r"--png-level 12: must be 0-9"),
                           (["--checkpoint", "last"], r"--checkpoint 'last': give a step number")):
        with pytest.raises(UserError, match=message):
            generate.main(["--serve", "--run", str(tmp_path), *flags])
    with pytest.raises(SystemExit):
        generate.main(["--serve", "--help"])


MORE_BAD_INPUTS = [  # checked since the request became one pydantic model (tools/serve/limits.py)
    ("n 2.0", {"text": "a red flower", "n": 2.0}, 422, r"n: expected an integer 1-16, got number"),
    ("truncation boolean", {"text": "a red flower", "truncation": True}, 422,
     r"truncation: expected a number in \(0, 10\] or null, got boolean"),
    ("truncation beyond float", b'{"text": "a red flower", "truncation": 1' + b"0" * 400 + b"}", 422,
     r"truncation: 10{400} is outside \(0, 10\]; use e\.g\. 0\.7, or null for none"),  # was a 500 (OverflowError)
    ("unknown field first", {"steps": 5, "n": 99}, 422, r"steps: unknown field; the fields are text, texts, n, seed, truncation"),
    ("whitespace body", b"  \n", 400, r"body: invalid JSON \(Expecting value at line 2 column 1\)"),
    ("null body", b"null", 422, r'body: expected a JSON object such as \{"text": "a red flower", "n": 4\}, got null'),
]


@pytest.mark.parametrize("body,status,pattern", [b[1:] for b in MORE_BAD_INPUTS], ids=[b[0] for b in MORE_BAD_INPUTS])
def test_more_bad_input_gets_one_line_from_the_model(server, body, status, pattern):
    r = post(server["url"], content=body) if isinstance(body, bytes) else post(server["url"], body)
    assert r.status_code == status, r.text
    assert list(r.json()) == ["error"] and re.fullmatch(pattern, r.json()["error"]), r.json()["error"]


def test_docs_show_the_model_that_validates(server):
    """/openapi.json's request body is limits.GenerateRequest itself, with its bounds (no second schema)."""
    from tools.serve.limits import GenerateRequest

    spec = httpx.get(server["url"] + "/openapi.json").json()
    body = spec["paths"]["/api/generate"]["post"]["requestBody"]
    assert body["required"] and body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/GenerateRequest"}
    schema = spec["components"]["schemas"]["GenerateRequest"]
    assert schema["additionalProperties"] is False and list(schema["properties"]) == list(GenerateRequest.model_fields)
    assert (schema["properties"]["n"]["minimum"], schema["properties"]["n"]["maximum"]) == (1, 16)
    assert schema["properties"]["seed"]["maximum"] == 4294967295
    texts = schema["properties"]["texts"]["anyOf"][0]
    assert (texts["minItems"], texts["maxItems"], texts["items"]["maxLength"]) == (1, 16, 1000)
    ok = post(server["url"], {"text": "a red flower"}, headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200 and len(ok.json()["images"]) == 1
