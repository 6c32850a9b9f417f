"""Where generate.py's texts come from: --text, a captions file (txt / CSV / JSONL), a DataLab testData.pkl.

Every source yields `(ids, texts)`; ids become file names (`inference_{ID}`), so ids that could escape the
output folder or make odd file names are refused here, before anything is written.
"""
from __future__ import annotations

import re
from pathlib import Path

from tools.errors import UserError

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_ids(ids: list[str], source: str) -> list[str]:
    """Refuse ids that would make unsafe file names (path separators, dots, spaces, empties) or repeat."""
    seen: dict[str, int] = {}
    for row, i in enumerate(ids):
        if not SAFE_ID.match(i):
            raise UserError(
                f"{source}: row {row + 1}: id {i!r} is not a safe file name "
                "(use 1-64 letters, digits, '_' or '-', starting with a letter or digit)"
            )
        if i in seen:
            raise UserError(f"{source}: id {i!r} appears on rows {seen[i] + 1} and {row + 1}; ids must be unique")
        seen[i] = row
    return ids


def _check_text(text: object, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: empty or missing caption; give every row a non-empty caption")
    return " ".join(text.split())


def from_datalab_test(path: str | Path) -> tuple[list[str], list[str]]:
    """A DataLab Cup testData.pkl, decoded with its dataset's dictionary (ROOT/dictionary/)."""
    from tools.dataset import SkipReport
    from tools.datasets.datalab import read_test_captions

    if not Path(path).is_file():
        raise UserError(f"{path}: no such file; pass ROOT/dataset/testData.pkl of a DataLab Cup dataset")
    ids, texts = read_test_captions(Path(path), SkipReport())
    return check_ids(ids, str(path)), texts


def from_texts(texts: list[str]) -> tuple[list[str], list[str]]:
    """--text "..." (repeatable): ids are 0, 1, 2, ... in the order given."""
    return [str(i) for i in range(len(texts))], [_check_text(t, f"--text #{i + 1}") for i, t in enumerate(texts)]


def _read_utf8(path: Path) -> str:
    from tools.datasets.common import read_utf8

    if not path.is_file():
        raise UserError(f"{path}: no such captions file")
    return read_utf8(path)


def from_captions_file(path: str | Path) -> tuple[list[str], list[str]]:
    """One caption per line (.txt; ids 0..N-1), CSV with `id`/`ID` and `caption`/`text` columns, or JSONL
    rows with the same keys (the synthetic set's test_captions.jsonl is such a file)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _from_jsonl(path)
    if suffix == ".csv":
        return _from_csv(path)
    lines = [ln for ln in _read_utf8(path).splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"{path}: no captions in file; write one caption per line")
    return check_ids([str(i) for i in range(len(lines))], str(path)), [" ".join(ln.split()) for ln in lines]


def _pick(row: dict, keys: tuple[str, ...], where: str) -> object:
    for k in keys:
        if k in row:
            return row[k]
    raise UserError(f"{where}: no {' or '.join(map(repr, keys))} field; found {sorted(row)}")


def _from_jsonl(path: Path) -> tuple[list[str], list[str]]:
    from tools.datasets.common import jsonl_rows

    _read_utf8(path)  # a missing file is a one-line error here too
    ids, texts = [], []
    for n, row in jsonl_rows(path):
        ids.append(str(_pick(row, ("id", "ID"), f"{path}:{n}")))
        texts.append(_check_text(_pick(row, ("caption", "text"), f"{path}:{n}"), f"{path}:{n}"))
    return check_ids(ids, str(path)), texts


def _from_csv(path: Path) -> tuple[list[str], list[str]]:
    import pandas as pd

    _read_utf8(path)  # one-line error for non-UTF-8 bytes, with the line number
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    id_col = next((c for c in ("id", "ID") if c in df.columns), None)
    text_col = next((c for c in ("caption", "text") if c in df.columns), None)
    if id_col is None or text_col is None:
        raise UserError(f"{path}: CSV needs columns 'id' and 'caption'; found {list(df.columns)}")
    texts = [_check_text(t, f"{path}:{i + 2}") for i, t in enumerate(df[text_col])]
    return check_ids(list(df[id_col]), str(path)), texts
