"""What every encoder family shares: spec/option parsing, optional-package checks, length-sorted batching,
pooling and L2 normalisation. Written once here; the family files only say how to run one batch.

Spec grammar: `family[:argument][?key=value&key=value]`, e.g. `hf:bert-base-uncased?pooling=cls&max_length=64`.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from embeddings.base import TextEncoder
from tools.errors import UserError

_OPTIONS_RE = re.compile(r"^[a-z_]+=[^&=]*(&[a-z_]+=[^&=]*)*$")  # "k=v&k2=v2" (keys: lowercase + "_")


# ---------------------------------------------------------------------------------------------- specs/options
def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """'hf:bert-base-uncased?pooling=cls' -> ('hf', 'bert-base-uncased', {'pooling': 'cls'}).

    The family is what precedes the first ':'; a trailing '?k=v&...' is options only if it looks like options
    (so a URL query such as '?tf-hub-format=compressed' stays part of the argument).
    """
    spec = str(spec).strip()
    options: dict[str, str] = {}
    head, sep, tail = spec.rpartition("?")
    if sep and _OPTIONS_RE.match(tail):
        spec = head
        for pair in tail.split("&"):
            key, _, value = pair.partition("=")
            options[key] = value
    family, _, arg = spec.partition(":")
    return family.strip().lower(), arg.strip(), options


@dataclass(frozen=True)
class Option:
    default: Any  # its type is the option's type (bool, int, str)
    help: str
    choices: tuple = ()


def _coerce(family: str, name: str, opt: Option, value: Any) -> Any:
    kind = type(opt.default)
    try:
        if kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                value = low in ("1", "true", "yes")
            value = bool(value)
        elif kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            value = int(value)
            if value <= 0:
                raise ValueError(value)
        else:
            value = str(value)
    except (TypeError, ValueError):
        want = {bool: "true or false", int: "a positive integer"}.get(kind, "a string")
        raise UserError(f"{family}: option {name}={value!r} must be {want} ({opt.help})") from None
    if opt.choices and value not in opt.choices:
        raise UserError(f"{family}: option {name}={value!r} is not one of {'|'.join(opt.choices)}")
    return value


def resolve_options(family: str, declared: dict[str, Option], given: dict[str, Any]) -> dict[str, Any]:
    """Declared defaults overridden by `given` (strings from a spec are coerced); unknown keys are errors."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        valid = ", ".join(declared) or "none"
        raise UserError(f"{family}: unknown option {', '.join(unknown)} (valid options: {valid})")
    return {name: _coerce(family, name, opt, given.get(name, opt.default)) for name, opt in declared.items()}


def canonical_spec(family: str, arg: str, options: dict[str, Any], declared: dict[str, Option]) -> str:
    """family[:arg] plus the non-default options, sorted: equal encoders get equal specs."""
    spec = f"{family}:{arg}" if arg else family
    changed = {k: v for k, v in sorted(options.items()) if k in declared and v != declared[k].default}
    if changed:
        fmt = lambda v: str(v).lower() if isinstance(v, bool) else str(v)  # noqa: E731
        spec += "?" + "&".join(f"{k}={fmt(v)}" for k, v in changed.items())
    return spec


def require(module: str, pip: str, who: str):
    """Import an optional package or raise one line naming the `pip install` that fixes it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"encoder {who} needs the '{module}' package ({e}): pip install {pip}") from None


def is_remote(handle: str) -> bool:
    """A URL (TF Hub / Kaggle / GCS) rather than a local path."""
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", handle))


# -------------------------------------------------------------------------------------------- numeric shared
def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows divided by max(||row||, 1e-12) (as torch.nn.functional.normalize); zero rows stay zero."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def pool(hidden, mask, mode: str, pooled=None):
    """TF pooling of token states. hidden [B, T, H], mask [B, T] (1 = real token) -> [B, H].

    mean: attention-mask mean (sentence-transformers); cls: first token; pooler: the model's pooled output.
    """
    import tensorflow as tf

    if mode == "cls":
        return hidden[:, 0]
    if mode == "pooler":
        return pooled
    m = tf.cast(mask, hidden.dtype)[:, :, None]  # [B, T, 1]
    summed = tf.reduce_sum(hidden * m, axis=1)  # [B, H]
    return summed / tf.maximum(tf.reduce_sum(m, axis=1), 1e-9)


def as_text_list(texts: Sequence[str]) -> list[str]:
    out = []
    for t in texts:
        if isinstance(t, bytes):
            t = t.decode("utf-8")
        if not isinstance(t, str):
            raise TypeError(f"encode() takes strings, got {type(t).__name__}: {t!r}")
        out.append(str(t))
    return out


def dedup(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Unique texts in first-seen order, and for each input its row among them."""
    index: dict[str, int] = {}
    inverse = np.fromiter((index.setdefault(t, len(index)) for t in texts), dtype=np.int64, count=len(texts))
    return list(index), inverse


def batch_order(lengths: Sequence[int], batch_size: int, sort: bool) -> list[np.ndarray]:
    """Index batches; with sort, by length (stable, so ties keep input order) so each batch pads little."""
    n = len(lengths)
    order = np.argsort(np.asarray(lengths), kind="stable") if sort else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


# ---------------------------------------------------------------------------------------------- base class
class BatchedEncoder(TextEncoder):
    """`encode` written once: dedup -> prepare -> length-sorted batches -> restore order -> (normalise).

    Families implement `_prepare(texts) -> (items, lengths)` and `_run_batch(items, compiled) -> [b, D]`.
    """

    batch_size: int = 128  # default encode batch (length-sorted, so little padding)
    normalize: bool = False  # L2-normalise rows after pooling

    def _prepare(self, texts: list[str]) -> tuple[list, list[int]]:
        return texts, [len(t) for t in texts]

    def _run_batch(self, items: list, compiled: bool) -> np.ndarray:
        raise NotImplementedError

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        sort: bool = True,
        compiled: bool = True,
        dedup_texts: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """float32 [N, D], row i for texts[i]; the same list always gives the same bytes.

        sort/compiled/dedup_texts=False and batch_size=64 give the naive path (see `naive_encode`).
        progress(k) is called after each batch with the number of (unique) texts just encoded.
        """
        texts = as_text_list(texts)
        uniq, inverse = dedup(texts) if dedup_texts else (texts, None)
        out = np.zeros((len(uniq), self.dim), dtype=np.float32)
        if uniq:
            items, lengths = self._prepare(uniq)
            for idx in batch_order(lengths, batch_size or self.batch_size, sort):
                out[idx] = self._run_batch([items[i] for i in idx], compiled)
                if progress:
                    progress(len(idx))
        if self.normalize:
            out = l2_normalize(out)
        return out if inverse is None else out[inverse]


def naive_encode(encoder: TextEncoder, texts: Sequence[str]) -> np.ndarray:
    """The baseline a benchmark compares against: eager, input order, batch 64, no dedup."""
    return encoder.encode(texts, sort=False, compiled=False, dedup_texts=False, batch_size=64)
