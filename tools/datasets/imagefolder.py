"""Hugging Face `imagefolder` datasets: images with a metadata file, or one caption file per image.

    ROOT/metadata.jsonl   {"file_name": "0001.jpg", "text": "a red flower"}      (or metadata.csv, same columns)
    ROOT/0001.jpg ...
or, split folders as `datasets` writes them: ROOT/train/metadata.jsonl + ROOT/train/*.jpg, ROOT/test/...;
or, with no metadata file, caption files beside the images:
    ROOT/0001.jpg + ROOT/0001.txt     one caption per line (blank lines ignored), any folder depth

file_name is relative to the metadata file's folder. The caption column is found by name (the first of
CAPTION_COLUMNS present; two of them present is ambiguous), else it is the only text column besides
file_name; otherwise name it with --caption-column. A cell may hold one caption or a list of captions, and
rows repeating a file_name add captions to that image. A `class` or `label` column is the image's class
(stored as its label; never taken for the caption column). The image id is the image's path relative to ROOT
without its suffix ("0001", "train/0001"). Images no row names are counted as "image without captions";
caption files without an image as "caption file without image". Text files must be UTF-8 (common.py).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from tools.dataset import SkipReport
from tools.datasets.common import IMAGE_SUFFIXES, DatasetBuilder, jsonl_rows, read_utf8
from tools.datasets.labels import LABEL_FIELDS, label_field
from tools.errors import UserError

METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
CAPTION_COLUMNS = ("text", "caption", "captions", "sentence", "sentences", "prompt", "description")
FILE_COLUMN = "file_name"


def metadata_files(root: Path) -> list[Path]:
    """metadata.jsonl/.csv in ROOT or in its split folders (one level down), sorted; UserError for both kinds."""
    found = []
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        here = [folder / n for n in METADATA_NAMES if (folder / n).is_file()]
        if len(here) > 1:
            raise UserError(f"{folder}: holds both metadata.jsonl and metadata.csv; keep one of them")
        found += here
    return found


def has_caption_files(root: Path) -> bool:
    """Some image in ROOT or one level down has a same-named .txt beside it (cheap check for detection)."""
    for folder in [root, *(p for p in root.iterdir() if p.is_dir())]:
        names = set(os.listdir(folder))
        if any(os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES and os.path.splitext(n)[0] + ".txt" in names
               for n in names):
            return True
    return False


def pick_caption_column(columns: list[str], given: str | None, where: str, text_columns: list[str]) -> str:
    """The column holding captions: `given` (checked), a known name, or the only text column; else UserError."""
    if given is not None:
        if given not in columns:
            raise UserError(f"{where}: --caption-column {given!r} is not a column; found {', '.join(columns)}")
        return given
    known = [c for c in CAPTION_COLUMNS if c in columns]
    if len(known) == 1:
        return known[0]
    candidates = known or [c for c in text_columns if c not in (FILE_COLUMN, *LABEL_FIELDS)]  # a class is no caption
    if len(candidates) == 1:
        return candidates[0]
    raise UserError(
        f"{where}: cannot tell which column holds the captions (found {', '.join(columns) or 'none'}); "
        f"name it with --caption-column, e.g. --caption-column {(candidates or columns or ['text'])[0]}"
    )


def caption_list(value, where: str) -> list[str]:
    """A cell as captions: one string, or a list of strings; anything else is a one-line UserError."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise UserError(f"{where}: caption is {type(value).__name__} {value!r:.40}; expected a string or a list of strings")


def read_table(path: Path, header: str = "file_name") -> tuple[list[str], list[str], list[tuple[str, dict]]]:
    """(columns, text columns, [(where, row)]) of a .jsonl or .csv; `header`: the column a CSV must have, named in
    the error when it cannot be parsed."""
    if path.suffix.lower() == ".jsonl":
        rows = [(f"{path}:{n}", row) for n, row in jsonl_rows(path)]
        columns = list(dict.fromkeys(k for _, r in rows[:100] for k in r))
        text = [c for c in columns if all(isinstance(r.get(c), (str, list)) for _, r in rows[:100])]
        return columns, text, rows
    import pandas as pd

    try:
        table = pd.read_csv(io.StringIO(read_utf8(path)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path}: cannot parse CSV ({str(e).strip()}); expected a header with {header}") from None
    columns = [str(c) for c in table.columns]
    return columns, columns, [(f"{path}:{i + 2}", row) for i, row in enumerate(table.to_dict("records"))]


def _image_id(root: Path, image: Path) -> str:
    return Path(os.path.relpath(image, root)).with_suffix("").as_posix()


def _load_metadata(root: Path, metas: list[Path], images_dir, caption_column, builder) -> set[str]:
    """Add every metadata row; returns the absolute image paths the rows name."""
    named: set[str] = set()
    for meta in metas:
        columns, text_columns, rows = read_table(meta)
        if FILE_COLUMN not in columns:
            raise UserError(f"{meta}: no {FILE_COLUMN!r} column (found {', '.join(columns)}); "
                            f"each row needs file_name, the image path relative to this file's folder")
        column = pick_caption_column(columns, caption_column, str(meta), text_columns)
        image_rows: dict[str, int | None] = {}
        for where, row in rows:
            file_name = row.get(FILE_COLUMN)
            if not isinstance(file_name, str) or not file_name.strip():
                raise UserError(f"{where}: {FILE_COLUMN} is {file_name!r:.40}; expected an image path like 0001.jpg")
            base = images_dir if images_dir is not None else meta.parent
            image = Path(os.path.abspath(base / file_name))
            key = str(image)
            label = label_field(row, where)  # a `class`/`label` column: the image's class
            if key not in image_rows:
                named.add(key)
                image_rows[key] = builder.add_image(_image_id(root if images_dir is None else base, image), key, where,
                                                    label)
            elif image_rows[key] is not None and builder.image_labels[image_rows[key]] != label:
                raise UserError(f"{where}: {file_name} has class {label!r} here and "
                                f"{builder.image_labels[image_rows[key]]!r} in an earlier row; an image has one class")
            if column not in row:
                raise UserError(f"{where}: no {column!r} field; every row needs its caption")
            for k, caption in enumerate(caption_list(row[column], f"{where} {column}")):
                builder.add_caption(image_rows[key], caption, f"{where} {column}" + (f"[{k}]" if k else ""))
    return named


def _load_caption_files(root: Path, builder: DatasetBuilder) -> set[str]:
    """name.txt beside name.jpg anywhere under ROOT; returns the image paths used."""
    named: set[str] = set()
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        stems = {}
        for f in sorted(files):
            stem, suffix = os.path.splitext(f)
            if suffix.lower() in IMAGE_SUFFIXES:
                stems.setdefault(stem, f)
        for f in sorted(files):
            stem, suffix = os.path.splitext(f)
            if suffix != ".txt":
                continue
            txt = Path(dirpath) / f
            if stem not in stems:
                builder.skips.add("caption file without image", where=str(txt),
                                  fix=f"add {stem}.jpg beside it or remove the .txt")
                continue
            image = Path(os.path.abspath(Path(dirpath) / stems[stem]))
            named.add(str(image))
            row = builder.add_image(_image_id(root, image), str(image), str(txt))
            for lineno, line in enumerate(read_utf8(txt).splitlines(), start=1):
                if line.strip():
                    builder.add_caption(row, line, f"{txt}:{lineno}")
    return named


def _count_unnamed_images(root: Path, named: set[str], skips: SkipReport) -> None:
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            path = os.path.abspath(os.path.join(dirpath, f))
            if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES and path not in named:
                skips.add("image without captions", where=path, fix="add a caption for it or remove the image")


def load(path: Path, images_dir: Path | None, skips: SkipReport, caption_column: str | None = None) -> DatasetBuilder:
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: --layout imagefolder needs a folder of images with metadata.jsonl/.csv "
                        f"or name.txt caption files beside them")
    builder = DatasetBuilder(root, "imagefolder", skips)
    metas = metadata_files(root)
    if metas:
        named = _load_metadata(root, metas, images_dir, caption_column, builder)
    else:
        if caption_column is not None:
            raise UserError(f"{root}: --caption-column needs a metadata.jsonl/.csv; this folder has caption "
                            f".txt files beside the images (one caption per line)")
        named = _load_caption_files(root, builder)
        if not named:
            raise UserError(f"{root}: no metadata.jsonl/.csv and no image with a same-named .txt caption file")
    if images_dir is None:  # with --images-dir the folder may hold images of other datasets
        _count_unnamed_images(root, named, skips)
    return builder
