"""The FastAPI app: the page at /, POST /api/generate, GET /api/info and /api/health, the schema at /docs.

    app = create_app(engine, BatchPolicy(), png_level=0)   # engine: tools.serve.engine.Engine, already loaded
    uvicorn.run(app, host="127.0.0.1", port=8000)

Every error leaves as one line of JSON `{"error": "..."}` with a 4xx status (503 when the queue is full),
whatever raised it: our own checks (tools/serve/limits.py), FastAPI's validation, unknown routes and methods;
an unexpected exception is logged on the server and answered 500 without a traceback. Nothing a request
sends is written to disk: texts live in memory only (the encoder memo keeps recent captions).
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tools.serve import limits as lim
from tools.serve.batcher import BatchPolicy, MicroBatcher, QueueFull
from tools.serve.png import check_level, png_base64

STATIC = Path(__file__).parent / "static"
PNG_THREADS = 2  # PNG encoding beside the TensorFlow thread (zlib releases the GIL)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
log = logging.getLogger("tools.serve")


class GenerateBody(BaseModel):
    """The request schema as /docs shows it; the checks themselves are limits.parse_job (clearer messages)."""

    text: str | None = Field(None, description=f"one caption, 1-{lim.MAX_WORDS} words, at most {lim.MAX_CHARS} characters")
    texts: list[str] | None = Field(None, description=f"or 1-{lim.MAX_TEXTS} captions")
    n: int = Field(1, ge=1, le=lim.MAX_N, description="images per caption")
    seed: int = Field(0, ge=0, le=lim.MAX_SEED, description="noise seed: the same seed gives the same images")
    truncation: float | None = Field(None, gt=0, le=lim.MAX_TRUNCATION, description="redraw noise beyond ±t")


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


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


async def read_body(request: Request) -> bytes:
    """The body, refused with 413 as soon as it passes MAX_BODY_BYTES (declared or streamed)."""
    too_big = f"body: over {lim.MAX_BODY_BYTES} bytes; send at most {lim.MAX_BODY_BYTES // 1024} KB"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > lim.MAX_BODY_BYTES:
        raise lim.ApiError(413, too_big)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > lim.MAX_BODY_BYTES:
            raise lim.ApiError(413, too_big)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(engine, policy: BatchPolicy = BatchPolicy(), png_level: int = 0) -> FastAPI:
    """png_level: zlib level of the returned PNGs (tools/serve/png.py: 0 stores them, the least CPU)."""
    check_level(png_level)  # at start-up, not as a 500 on every request
    batcher = MicroBatcher(engine.run_batch, policy)
    png_pool = ThreadPoolExecutor(PNG_THREADS, thread_name_prefix="png")
    info = {**engine.info(), "limits": lim.limits_info(), "batching": vars(policy).copy(), "png_level": png_level}
    started = time.time()

    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        yield
        await batcher.stop()
        png_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="t2i-cache-gan web demo", version="1", lifespan=lifespan,
                  description=f"Text-to-image GAN run {info['run']} (encoder {info['encoder']}, step {info['step']}).")

    app.add_middleware(SecurityHeaders)

    @app.exception_handler(lim.ApiError)
    async def api_error(_request, e: lim.ApiError):
        return error(e.status, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {"loc": ("body",), "msg": "invalid request"}
        field = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path")) or "body"
        return error(422, f"{field}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        if e.status_code == 404:
            return error(404, f"{request.url.path}: not found; the API is POST /api/generate, GET /api/info, GET /api/health")
        if e.status_code == 405:
            return error(405, f"{request.method} {request.url.path}: method not allowed", getattr(e, "headers", None))
        return error(e.status_code, e.detail)

    @app.exception_handler(Exception)
    async def unexpected(_request, e: Exception):
        log.exception("unexpected error")  # the traceback stays in the server log
        return error(500, f"internal error ({type(e).__name__}); the server log has the details")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/info")
    async def api_info():
        """Run, dataset, encoder, checkpoint step, image size, limits, batching policy, example captions."""
        return info

    @app.get("/api/health")
    async def api_health():
        c = batcher.counters
        return dict(status="ok", uptime_s=round(time.time() - started, 1), pending_images=batcher.pending_images,
                    max_queue_images=policy.max_queue_images, batches=c.batches, images=c.images, requests=c.requests,
                    rejected=c.rejected, mean_batch=round(c.images / c.batches, 2) if c.batches else 0.0,
                    largest_batch=c.largest_batch, encoded=c.encoded, reused=c.reused,
                    busy_s=round(c.busy_s, 3))

    @app.post("/api/generate", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": GenerateBody.model_json_schema()}}}})
    async def api_generate(request: Request):
        """{"text": str | "texts": [str], "n", "seed", "truncation"} -> {"images": [base64 PNG], "encoder", "step", "ms"}.
        Images are in caption order, n per caption."""
        t0 = time.perf_counter()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise lim.ApiError(415, f"Content-Type: {ctype or 'missing'}; send application/json")
        job = lim.parse_job(lim.parse_body(await read_body(request)))
        try:
            images, batch = await batcher.submit(job)
        except QueueFull as e:
            raise lim.ApiError(503, f"queue: full ({batcher.pending_images} images waiting, limit "
                                    f"{policy.max_queue_images}); retry after {e.retry_after_s} s",
                               {"Retry-After": str(e.retry_after_s)}) from None
        encoded = await asyncio.get_running_loop().run_in_executor(png_pool, lambda: [png_base64(im, png_level) for im in images])
        return JSONResponse(dict(images=encoded, encoder=info["encoder"], step=info["step"], texts=list(job.texts),
                                 n=job.n, seed=job.seed, truncation=job.truncation, batch_images=batch,
                                 ms=round(1e3 * (time.perf_counter() - t0), 1)))  # plain JSON: no jsonable_encoder walk

    return app
