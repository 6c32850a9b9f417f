"""Captioned images given as URLs: the list tools/fetch_images.py downloads, read from three kinds of file.

    items = read_url_source("eee443_project_dataset_train.h5")     # EEE443 COCO: train_url + decoded captions
    items = read_url_source("urls.csv", url_column="photo")        # any CSV / JSONL with a URL column

- EEE443 .h5: one item per train_url row (id = the URL's file stem, COCO_train2014_000000000123), its
  captions decoded like tools/datasets/eee443.py does (frame tokens and x_UNK_ dropped).
- .csv / .jsonl: one row per caption or per image. Columns are found by name unless given: the URL column
  among URL_COLUMNS, the caption column as imagefolder finds it (a cell may hold a list in JSONL), the id
  column among ID_COLUMNS (else the URL's file stem when those are unique, else the row number). Rows with
  the same id add captions; they must agree on the URL.
Errors are one line naming file:line and the column; an item's `where` names its first row.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tools.datasets.imagefolder import caption_list, pick_caption_column, read_table
from tools.errors import UserError

URL_COLUMNS = ("url", "image_url", "URL", "img_url", "link")
ID_COLUMNS = ("image_id", "key", "id")


@dataclass
class UrlItem:
    id: str  # unique image id (kept as the manifest's image_id)
    url: str
    captions: list[str] = field(default_factory=list)
    where: str = ""  # file:line of its first row

    @property
    def file_stem(self) -> str:
        """File-name-safe form of the id ("a/b c" -> "a_b_c")."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.id).strip("._") or "image"


def url_stem(url: str) -> str:
    return os.path.splitext(urlsplit(url.strip()).path.rsplit("/", 1)[-1])[0]


def _pick(columns: list[str], given: str | None, choices: tuple[str, ...], flag: str, where: str,
          required: bool) -> str | None:
    if given is not None:
        if given not in columns:
            raise UserError(f"{where}: {flag} {given!r} is not a column; found {', '.join(columns)}")
        return given
    found = [c for c in choices if c in columns]
    if found:
        return found[0]
    if required:
        raise UserError(f"{where}: no URL column (looked for {', '.join(choices)}; found {', '.join(columns)}); "
                        f"name it with {flag}")
    return None


def _eee443(path: Path) -> list[UrlItem]:
    from tools.datasets.eee443 import FRAME, UNKNOWN, _read

    id2word, caps, image_of, urls = _read(path)
    drop = set(FRAME) | {UNKNOWN}
    items = [UrlItem(url_stem(u), u.strip(), [], f"{path}: train_url[{j}]") for j, u in enumerate(urls)]
    for ids, image in zip(caps, image_of):
        items[image].captions.append(" ".join(id2word[i] for i in ids.tolist() if id2word[i] not in drop))
    return items


def _rows(path: Path, url_column, caption_column, id_column) -> list[UrlItem]:
    columns, text_columns, rows = read_table(path, "a url column")
    where = str(path)
    url_col = _pick(columns, url_column, URL_COLUMNS, "--url-column", where, required=True)
    cap_col = pick_caption_column([c for c in columns if c != url_col], caption_column, where,
                                  [c for c in text_columns if c not in (url_col, id_column, *ID_COLUMNS)])
    id_col = _pick(columns, id_column, ID_COLUMNS, "--id-column", where, required=False)
    if id_col is None:
        stems = [url_stem(str(r.get(url_col, ""))) for _, r in rows]
        by_url = len({str(r.get(url_col)) for _, r in rows}) == len(set(stems)) and all(stems)
    items: dict[str, UrlItem] = {}
    for n, (where, row) in enumerate(rows):
        url = row.get(url_col)
        if not isinstance(url, str) or not url.strip():
            raise UserError(f"{where}: {url_col} is {url!r:.40}; expected an http(s) URL")
        key = str(row.get(id_col)) if id_col else (url_stem(url) if by_url else f"{n:09d}")
        item = items.setdefault(key, UrlItem(key, url.strip(), [], where))
        if item.url != url.strip():
            raise UserError(f"image id {key!r} has two URLs: {item.where} ({item.url}) and {where} ({url}); "
                            f"ids must be unique — rename one")
        if cap_col in row:
            item.captions += caption_list(row[cap_col], f"{where} {cap_col}")
    return list(items.values())


def read_url_source(path: str | os.PathLike, *, url_column: str | None = None, caption_column: str | None = None,
                    id_column: str | None = None) -> list[UrlItem]:
    """The items to fetch, in the file's order; UserError for an unknown kind of file or bad rows."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--source {path}: no such file; expected an EEE443 .h5, or a .csv/.jsonl with a URL column")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        items = _eee443(path)
    elif suffix in (".csv", ".jsonl"):
        items = _rows(path, url_column, caption_column, id_column)
    else:
        raise UserError(f"--source {path}: unknown file type {suffix!r}; expected .h5 (EEE443), .csv or .jsonl")
    stems: dict[str, UrlItem] = {}
    for item in items:
        other = stems.setdefault(item.file_stem, item)
        if other is not item:
            raise UserError(f"image ids {other.id!r} ({other.where}) and {item.id!r} ({item.where}) map to the same "
                            f"file name {item.file_stem!r}; make the ids differ in letters or digits")
    return items
