"""What one request may ask for: the bounds, the pydantic models that hold them, and how a refusal reads.

    GenerateRequest.model_validate({"text": "a red flower", "n": 4}).job()   # -> GenerateJob (POST /api/generate)
    EmbedRequest.model_validate({"texts": ["a red flower"]})                 # POST /api/embed (embed_app.py)

FastAPI validates the bodies with these models (tools/serve/json_api.py reads and parses the JSON first);
`message(error, model)` turns pydantic's error into one line naming the field, the bad value and what to send
instead. Every refusal is an `ApiError`: an HTTP status (4xx, or 503 when the queue is full) and that line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

MAX_BODY_BYTES = 64 * 1024  # request body
MAX_N = 16  # images per caption
MAX_TEXTS = 16  # captions per request
MAX_IMAGES = 64  # captions × n per request (one request always fits one generator batch of 64)
MAX_WORDS = 100  # per caption, as the dataset importers cut captions
MAX_CHARS = 1000  # per caption
MAX_SEED = 2**32 - 1
MAX_TRUNCATION = 10.0  # beyond ~4 the truncation trick changes nothing for N(0, 1) noise


class ApiError(HTTPException):
    """A request the client can fix: `status` (4xx, or 503 when the queue is full) and a one-line message.
    An HTTPException, so FastAPI lets it through from inside body parsing."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(status, message, headers)
        self.status, self.message = status, message


@dataclass(frozen=True)
class GenerateJob:
    """A checked request: n images for each of texts, noise from (seed, truncation) as generate.py draws it."""

    texts: tuple[str, ...]  # [T] captions, whitespace collapsed as generate.py --text does
    n: int = 1  # images per caption
    seed: int = 0
    truncation: float | None = None

    @property
    def images(self) -> int:
        return len(self.texts) * self.n

    rows = images  # what the job adds to a micro-batch (tools/serve/batcher.py)


def limits_info() -> dict:
    """The limits as /api/info reports them (the page reads its bounds from here)."""
    return dict(max_body_bytes=MAX_BODY_BYTES, max_n=MAX_N, max_texts=MAX_TEXTS, max_images=MAX_IMAGES,
                max_words=MAX_WORDS, max_chars=MAX_CHARS, max_seed=MAX_SEED, max_truncation=MAX_TRUNCATION)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_body(body: bytes) -> object:
    """UTF-8 JSON bytes -> Python value; 400 for invalid UTF-8 or invalid JSON (NaN/Infinity included)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"body: not valid UTF-8 ({e.reason} at byte {e.start}); send JSON encoded as UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"body: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # NaN/Infinity, integers over 4300 digits, nesting too deep
        reason = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())[:120]
        raise ApiError(400, f"body: invalid JSON ({reason})") from None


def _check_caption(text: str) -> str:
    """Past the type and length checks: some words, at most MAX_WORDS of them. Returned as sent (the demo
    collapses whitespace in GenerateRequest.job; the embedding service encodes the text it was given)."""
    if not text.strip():
        raise PydanticCustomError("caption", f"empty caption; describe the image in 1-{MAX_WORDS} words")
    if (words := len(text.split())) > MAX_WORDS:
        raise PydanticCustomError("caption", f"{words} words; the limit is {MAX_WORDS} words")
    return text


Caption = Annotated[str, StringConstraints(max_length=MAX_CHARS), AfterValidator(_check_caption)]
Texts = Annotated[list[Caption], Field(min_length=1, max_length=MAX_TEXTS,
                                       description=f"1-{MAX_TEXTS} captions, each 1-{MAX_WORDS} words and at most "
                                                   f"{MAX_CHARS} characters")]
STRICT = ConfigDict(extra="forbid", strict=True)  # JSON types as sent: "4", 2.0 and true are not integers


class GenerateRequest(BaseModel):
    """POST /api/generate: n images for one caption (text) or several (texts)."""

    example: ClassVar[dict] = {"text": "a red flower", "n": 4}
    model_config = ConfigDict(**STRICT, json_schema_extra={"examples": [example]})

    text: Caption | None = Field(None, description=f"one caption, 1-{MAX_WORDS} words, at most {MAX_CHARS} characters")
    texts: Texts | None = None
    n: int = Field(1, ge=1, le=MAX_N, description="images per caption")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="noise seed: the same seed gives the same images")
    truncation: float | None = Field(None, gt=0, le=MAX_TRUNCATION, description="redraw noise beyond ±t")

    @model_validator(mode="after")
    def _one_caption_source_within_images(self) -> "GenerateRequest":
        if (self.text is None) == (self.texts is None):
            raise PydanticCustomError("request", 'give exactly one of "text" (a caption) or "texts" (a list of '
                                      'captions)', {"field": "text/texts"})
        captions = 1 if self.texts is None else len(self.texts)
        if captions * self.n > MAX_IMAGES:
            raise PydanticCustomError("request", f"{captions} captions x {self.n} images = {captions * self.n}; the "
                                      f"limit is {MAX_IMAGES} images per request", {"field": "n"})
        return self

    def job(self) -> GenerateJob:
        texts = [self.text] if self.texts is None else self.texts
        return GenerateJob(tuple(" ".join(t.split()) for t in texts), self.n, self.seed, self.truncation)


class EmbedRequest(BaseModel):
    """POST /api/embed: vectors for 1-MAX_TEXTS texts, in their order."""

    example: ClassVar[dict] = {"texts": ["a red flower", "this flower has five white petals"]}
    model_config = ConfigDict(**STRICT, json_schema_extra={"examples": [example]})

    texts: Texts


# how the messages name what a field takes, and what to do when a value is out of range
EXPECTED = {"caption": "a string caption", "texts": f"an array of 1-{MAX_TEXTS} captions", "n": f"an integer 1-{MAX_N}",
            "seed": f"an integer 0-{MAX_SEED}", "truncation": f"a number in (0, {MAX_TRUNCATION:g}] or null"}
OUT_OF_RANGE = {"n": f"is outside 1-{MAX_N}; ask for 1 to {MAX_N} images per caption",
                "seed": f"is outside 0-{MAX_SEED}; any integer in that range gives its own images",
                "truncation": f"is outside (0, {MAX_TRUNCATION:g}]; use e.g. 0.7, or null for none"}


def _type_name(value: object) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)


def _surrogate(text: str) -> str:
    i = next((i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF), None)
    if i is None:
        return "not valid Unicode text; send UTF-8 text"
    return f"unpaired surrogate {text[i]!r} at character {i}; send valid Unicode text"


def message(error: dict, model: type[BaseModel]) -> str:
    """One pydantic error (an item of ValidationError.errors(), FastAPI's loc starting with "body") -> one line:
    `field: what is wrong; what to send`."""
    loc = [x for x in error.get("loc", ()) if x != "body"]
    where = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in loc).lstrip(".") or "body"
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    field = "caption" if loc and (isinstance(loc[-1], int) or loc == ["text"]) else where
    example = json.dumps(model.example)
    if kind in ("caption", "request"):  # ours, worded already
        return f"{ctx.get('field', where)}: {error['msg']}"
    if kind == "extra_forbidden":
        return f"{where}: unknown field; the fields are {', '.join(model.model_fields)}"
    if where == "body":  # no body at all, or not a JSON object
        if kind == "missing":
            return f"body: empty; send a JSON object such as {example}"
        return f"body: expected a JSON object such as {example}, got {_type_name(value)}"
    if kind == "missing":
        return f"{where}: missing; send a JSON object such as {example}"
    if kind == "string_unicode":
        return f"{where}: {_surrogate(value)}"
    if kind == "string_too_long":
        return f"{where}: {len(value)} characters; the limit is {MAX_CHARS} characters"
    if kind in ("too_short", "too_long"):
        return f"{where}: {len(value)} captions; send 1-{MAX_TEXTS} per request"
    too_big = kind == "float_type" and type(value) is int  # an integer beyond float range
    if (kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") or too_big) and field in OUT_OF_RANGE:
        return f"{where}: {value} {OUT_OF_RANGE[field]}"
    if field in EXPECTED:  # *_type and anything else pydantic finds wrong with the value
        return f"{where}: expected {EXPECTED[field]}, got {_type_name(value)}"
    return f"{where}: {error.get('msg', 'invalid')}"
