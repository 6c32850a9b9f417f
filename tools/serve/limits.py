"""What one POST /api/generate may ask for, and the checks that turn a request body into a `GenerateJob`.

Every refusal is an `ApiError`: an HTTP status (4xx) and one line naming the field, the bad value and the
limit. The checks are written out by hand (not left to pydantic) so each message says what to send instead.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

MAX_BODY_BYTES = 64 * 1024  # request body
MAX_N = 16  # images per caption
MAX_TEXTS = 16  # captions per request
MAX_IMAGES = 64  # captions × n per request (one request always fits one generator batch of 64)
MAX_WORDS = 100  # per caption, as the dataset importers cut captions
MAX_CHARS = 1000  # per caption
MAX_SEED = 2**32 - 1
MAX_TRUNCATION = 10.0  # beyond ~4 the truncation trick changes nothing for N(0, 1) noise
FIELDS = ("text", "texts", "n", "seed", "truncation")


class ApiError(Exception):
    """A request the client can fix: `status` (4xx, or 503 when the queue is full) and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


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
    if not text.strip():
        raise ApiError(400, 'body: empty; send a JSON object such as {"text": "a red flower", "n": 4}')
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"body: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # NaN/Infinity, integers over 4300 digits, nesting too deep
        reason = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())[:120]
        raise ApiError(400, f"body: invalid JSON ({reason})") from None


def _type_name(value: object) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(value), type(value).__name__)


def check_caption(value: object, field: str) -> str:
    """One caption: a string with text, at most MAX_WORDS words and MAX_CHARS characters, valid Unicode."""
    if not isinstance(value, str):
        raise ApiError(422, f"{field}: expected a string caption, got {_type_name(value)}")
    if not value.strip():
        raise ApiError(422, f"{field}: empty caption; describe the image in 1-{MAX_WORDS} words")
    if len(value) > MAX_CHARS:
        raise ApiError(422, f"{field}: {len(value)} characters; the limit is {MAX_CHARS} characters")
    words = len(value.split())
    if words > MAX_WORDS:
        raise ApiError(422, f"{field}: {words} words; the limit is {MAX_WORDS} words")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(422, f"{field}: unpaired surrogate {value[e.start]!r} at character {e.start}; send valid "
                            "Unicode text") from None
    return " ".join(value.split())


def _int_field(obj: dict, name: str, default: int, lo: int, hi: int, hint: str) -> int:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(422, f"{name}: expected an integer {lo}-{hi}, got {_type_name(value)}")
    if not lo <= value <= hi:
        raise ApiError(422, f"{name}: {value} is outside {lo}-{hi}; {hint}")
    return value


def _truncation(obj: dict) -> float | None:
    value = obj.get("truncation")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(422, f"truncation: expected a number in (0, {MAX_TRUNCATION:g}] or null, got {_type_name(value)}")
    if not (math.isfinite(value) and 0 < value <= MAX_TRUNCATION):
        raise ApiError(422, f"truncation: {value} is outside (0, {MAX_TRUNCATION:g}]; use e.g. 0.7, or null for none")
    return float(value)


def _texts(obj: dict) -> tuple[str, ...]:
    if ("text" in obj) == ("texts" in obj):
        raise ApiError(422, 'text/texts: give exactly one of "text" (a caption) or "texts" (a list of captions)')
    if "text" in obj:
        return (check_caption(obj["text"], "text"),)
    texts = obj["texts"]
    if not isinstance(texts, list):
        raise ApiError(422, f"texts: expected an array of 1-{MAX_TEXTS} captions, got {_type_name(texts)}")
    if not 1 <= len(texts) <= MAX_TEXTS:
        raise ApiError(422, f"texts: {len(texts)} captions; send 1-{MAX_TEXTS} per request")
    return tuple(check_caption(t, f"texts[{i}]") for i, t in enumerate(texts))


def parse_job(obj: object) -> GenerateJob:
    """A decoded JSON body -> GenerateJob, or ApiError(422) naming the first field that is wrong."""
    if not isinstance(obj, dict):
        raise ApiError(422, f'body: expected a JSON object such as {{"text": "a red flower", "n": 4}}, got {_type_name(obj)}')
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise ApiError(422, f"{unknown[0]}: unknown field; the fields are {', '.join(FIELDS)}")
    texts = _texts(obj)
    n = _int_field(obj, "n", 1, 1, MAX_N, f"ask for 1 to {MAX_N} images per caption")
    if len(texts) * n > MAX_IMAGES:
        raise ApiError(422, f"n: {len(texts)} captions x {n} images = {len(texts) * n}; the limit is {MAX_IMAGES} "
                            "images per request")
    seed = _int_field(obj, "seed", 0, 0, MAX_SEED, "any integer in that range gives its own images")
    return GenerateJob(texts=texts, n=n, seed=seed, truncation=_truncation(obj))
