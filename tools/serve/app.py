"""The FastAPI app: the page at /, POST /api/generate, GET /api/info and /api/health, the schema at /docs.

    app = create_app(engine, BatchPolicy(), png_level=0)   # engine: tools.serve.engine.Engine, already loaded
    uvicorn.run(app, host="127.0.0.1", port=8000)

The request body is validated by FastAPI against one pydantic model (limits.GenerateRequest: the bounds, and
/docs's schema). Every error leaves as one line of JSON `{"error": "..."}` with a 4xx status (503 when the
queue is full), whatever raised it (tools/serve/json_api.py): the body's size, type and JSON, the model's
checks, unknown routes and methods; an unexpected exception is logged on the server and answered 500 without
a traceback. Nothing a request sends is written to disk: texts live in memory only (the encoder memo keeps
recent captions).
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from tools.serve import limits as lim
from tools.serve.batcher import BatchPolicy, MicroBatcher
from tools.serve.json_api import JsonRoute, install_errors, submit
from tools.serve.png import check_level, png_base64

STATIC = Path(__file__).parent / "static"
PNG_THREADS = 2  # PNG encoding beside the TensorFlow thread (zlib releases the GIL)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every response but /docs (Swagger UI loads its script from a
    CDN; the demo page itself needs nothing from outside)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(("/docs", "/redoc")):
            return await self.app(scope, receive, send)
        extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def json_app(title: str, description: str, batcher: MicroBatcher, model, routes: str, info: dict, info_doc: str,
             on_stop=None) -> FastAPI:
    """The frame both servers share: a lifespan that runs `batcher` (then `on_stop()`), bounded strict-JSON bodies
    validated by the pydantic `model`, every error one line of JSON, the security headers, and GET /api/info
    answering `info` (`info_doc`: its description at /docs)."""
    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        yield
        await batcher.stop()
        if on_stop is not None:
            on_stop()

    app = FastAPI(title=title, version="1", lifespan=lifespan, description=description)
    app.router.route_class = JsonRoute  # bodies: application/json, at most MAX_BODY_BYTES, strict JSON
    app.add_middleware(SecurityHeaders)
    install_errors(app, model, routes)

    async def api_info():
        return info

    api_info.__doc__ = info_doc
    app.get("/api/info")(api_info)
    return app


def create_app(engine, policy: BatchPolicy = BatchPolicy(), png_level: int = 0) -> FastAPI:
    """png_level: zlib level of the returned PNGs (tools/serve/png.py: 0 stores them, the least CPU)."""
    check_level(png_level)  # at start-up, not as a 500 on every request
    batcher = MicroBatcher(engine.run_batch, policy)
    png_pool = ThreadPoolExecutor(PNG_THREADS, thread_name_prefix="png")
    info = {**engine.info(), "limits": lim.limits_info(), "batching": vars(policy).copy(), "png_level": png_level}
    started = time.time()

    app = json_app("t2i-cache-gan web demo",
                   f"Text-to-image GAN run {info['run']} (encoder {info['encoder']}, step {info['step']}).",
                   batcher, lim.GenerateRequest, "POST /api/generate, GET /api/info, GET /api/health", info,
                   "Run, dataset, encoder, checkpoint step, image size, limits, batching policy, example captions.",
                   on_stop=lambda: png_pool.shutdown(wait=False, cancel_futures=True))

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health")
    async def api_health():
        c = batcher.counters
        return dict(status="ok", uptime_s=round(time.time() - started, 1), pending_images=batcher.pending_rows,
                    max_queue_images=policy.max_queue_images, batches=c.batches, images=c.rows, requests=c.requests,
                    rejected=c.rejected, mean_batch=round(c.rows / c.batches, 2) if c.batches else 0.0,
                    largest_batch=c.largest_batch, encoded=c.encoded, reused=c.reused,
                    busy_s=round(c.busy_s, 3))

    @app.post("/api/generate")
    async def api_generate(body: lim.GenerateRequest):
        """{"text": str | "texts": [str], "n", "seed", "truncation"} -> {"images": [base64 PNG], "encoder", "step", "ms"}.
        Images are in caption order, n per caption."""
        t0 = time.perf_counter()  # from a validated body (read and checked before the handler runs)
        job = body.job()
        images, batch = await submit(batcher, job, "images")
        encoded = await asyncio.get_running_loop().run_in_executor(png_pool, lambda: [png_base64(im, png_level) for im in images])
        return JSONResponse(dict(images=encoded, encoder=info["encoder"], step=info["step"], texts=list(job.texts),
                                 n=job.n, seed=job.seed, truncation=job.truncation, batch_images=batch,
                                 ms=round(1e3 * (time.perf_counter() - t0), 1)))  # plain JSON: no jsonable_encoder walk

    return app
