"""The embedding service's FastAPI app: POST /api/embed, GET /api/info and /api/health, the schema at /docs.

    app = create_embed_app(EmbedEngine.open("cache/synthetic-flowers-minilm.h5"), BatchPolicy())
    uvicorn.run(app, host="127.0.0.1", port=8001)

    POST /api/embed {"texts": ["a red flower", ...]}
      -> {"vectors": [[...D floats], ...], "cached": [true, ...], "encoder", "dim", "fingerprint", "batch_texts", "ms"}

The body is validated by one pydantic model (limits.EmbedRequest) with the web demo's bounds, read and parsed
by tools/serve/json_api.py, and every error is the demo's one line of JSON (503 + Retry-After when the queue
is full). Requests are micro-batched (tools/serve/batcher.py): concurrent ones share one encoder call.
Nothing a request sends is written to disk or kept after its answer.
"""
from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tools.serve import limits as lim
from tools.serve.app import json_app
from tools.serve.batcher import BatchPolicy, MicroBatcher
from tools.serve.embed_engine import EmbedJob
from tools.serve.json_api import submit

ROUTES = "POST /api/embed, GET /api/info, GET /api/health"


def create_embed_app(engine, policy: BatchPolicy = BatchPolicy()) -> FastAPI:
    """engine: tools.serve.embed_engine.EmbedEngine (or anything with info() and run_batch(jobs)); the policy
    counts texts (max_batch texts per encoder call, max_queue_images texts queued before 503)."""
    batcher = MicroBatcher(engine.run_batch, policy, max_job_rows=lim.MAX_TEXTS)
    limits = {k: v for k, v in lim.limits_info().items() if k in ("max_body_bytes", "max_texts", "max_words", "max_chars")}
    batching = dict(max_batch_texts=policy.max_batch, max_wait_ms=policy.max_wait_ms,
                    max_queue_texts=policy.max_queue_images)
    info = {**engine.info(), "limits": limits, "batching": batching}
    started = time.time()

    app = json_app("t2i-cache-gan embedding service",
                   f"Vectors from cache {info['file']} (encoder {info['encoder']}, {info['dim']}-d): "
                   "stored rows for its captions, its own encoder for any other text.",
                   batcher, lim.EmbedRequest, ROUTES, info,
                   "Encoder spec, dim, storage dtype and fingerprint of the cache, its dataset, limits, batching "
                   "policy.")

    @app.get("/api/health")
    async def api_health():
        c = batcher.counters
        return dict(status="ok", uptime_s=round(time.time() - started, 1), pending_texts=batcher.pending_rows,
                    max_queue_texts=policy.max_queue_images, batches=c.batches, texts=c.rows, requests=c.requests,
                    rejected=c.rejected, encoded=c.encoded, cached=c.reused, largest_batch=c.largest_batch,
                    busy_s=round(c.busy_s, 3))

    @app.post("/api/embed")
    async def api_embed(body: lim.EmbedRequest):
        """{"texts": [str]} -> {"vectors": [[float]], "cached": [bool], ...}, in the order of texts. A text the cache
        holds (exactly) gets its stored vector, any other the cache's encoder's."""
        t0 = time.perf_counter()
        out, batch = await submit(batcher, EmbedJob(tuple(body.texts)), "texts")
        return JSONResponse(dict(vectors=out.vectors.tolist(), cached=out.cached.tolist(), encoder=info["encoder"],
                                 dim=info["dim"], fingerprint=info["fingerprint"], batch_texts=batch,
                                 ms=round(1e3 * (time.perf_counter() - t0), 1)))

    return app
