"""FastAPI plumbing shared by the web demo (app.py) and the embedding service (embed_app.py): a JSON body is
checked for its Content-Type, read up to MAX_BODY_BYTES and parsed as strict JSON before the route's pydantic
model sees it, and every error leaves as one line of JSON `{"error": "..."}`.

    app = FastAPI(...)
    app.router.route_class = JsonRoute                        # before the routes are declared
    install_errors(app, GenerateRequest, "POST /api/generate, GET /api/info, GET /api/health")
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from tools.serve.batcher import MicroBatcher, QueueFull
from tools.serve.limits import MAX_BODY_BYTES, ApiError, message, parse_body

log = logging.getLogger("tools.serve")


def error(status: int, text: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(text).split())}, status_code=status, headers=headers)


class BoundedJsonRequest(Request):
    """A request whose body() stops with 413 as soon as it passes MAX_BODY_BYTES (declared or streamed), and
    whose json() is limits.parse_body (400 naming what is wrong, NaN refused) — FastAPI calls both."""

    async def body(self) -> bytes:
        if not hasattr(self, "_bounded_body"):
            too_big = f"body: over {MAX_BODY_BYTES} bytes; send at most {MAX_BODY_BYTES // 1024} KB"
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise ApiError(413, too_big)
            chunks, size = [], 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ApiError(413, too_big)
                chunks.append(chunk)
            self._bounded_body = b"".join(chunks)
        return self._bounded_body

    async def json(self) -> object:
        if not hasattr(self, "_parsed"):
            self._parsed = parse_body(await self.body())
        return self._parsed


class JsonRoute(APIRoute):
    """A route whose body (when it takes one) must be application/json and is read by BoundedJsonRequest."""

    def get_route_handler(self):
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def json_only(request: Request):
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise ApiError(415, f"Content-Type: {ctype or 'missing'}; send application/json")
            return await handler(BoundedJsonRequest(request.scope, request.receive))

        return json_only


def install_errors(app: FastAPI, model: type[BaseModel], routes: str) -> None:
    """Every error as one line of JSON: ours (ApiError), FastAPI's validation against `model` (422), unknown
    routes (404 naming `routes`) and methods (405); anything unexpected is logged and answered 500."""

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, e: RequestValidationError):
        errors = sorted(e.errors(), key=lambda x: x.get("type") != "extra_forbidden")  # unknown fields first
        if not errors:
            return error(422, "body: invalid request")
        empty = errors[0]["type"] == "missing" and tuple(errors[0]["loc"]) == ("body",)  # no body: 400 like bad JSON
        return error(400 if empty else 422, message(errors[0], model))

    @app.exception_handler(HTTPException)  # ApiError is one
    async def http_error(request: Request, e: HTTPException):
        if e.status_code == 404:
            return error(404, f"{request.url.path}: not found; the API is {routes}")
        if e.status_code == 405:
            return error(405, f"{request.method} {request.url.path}: method not allowed", e.headers)
        return error(e.status_code, e.detail, e.headers)

    @app.exception_handler(Exception)
    async def unexpected(_request, e: Exception):
        log.exception("unexpected error")  # the traceback stays in the server log
        return error(500, f"internal error ({type(e).__name__}); the server log has the details")


async def submit(batcher: MicroBatcher, job, unit: str):
    """batcher.submit(job), with a full queue answered 503 + Retry-After (`unit`: what a queued row is)."""
    try:
        return await batcher.submit(job)
    except QueueFull as e:
        raise ApiError(503, f"queue: full ({batcher.pending_rows} {unit} waiting, limit {batcher.policy.max_queue_images}); "
                            f"retry after {e.retry_after_s} s", {"Retry-After": str(e.retry_after_s)}) from None
