"""The project's generic formats: a JSONL manifest (one image per line) and a CSV (one caption per row).

JSONL (what tools/make_synthetic_flowers.py writes), `manifest.jsonl`:
    {"image_id": "00001", "image_path": "images/00001.png", "captions": ["a red flower ...", ...]}
image_path is relative to the manifest's folder (or absolute; or looked up in --images-dir); an optional
"class" (or "label") field is the image's class, stored as its label in the cache (tools/datasets/labels.py).
A sibling `test_captions.jsonl` with rows {"id": 17, "caption": "..."} becomes the held-out test captions.

CSV with header `image_id,image_path,caption`, one row per caption; rows of one image may be anywhere in the
file but must agree on image_path (and on an optional `class`/`label` column). Both files must be UTF-8
(see common.py).
"""
from __future__ import annotations

import io
from pathlib import Path

from tools.dataset import SkipReport
from tools.datasets.common import DatasetBuilder, find_image, jsonl_rows, read_utf8
from tools.datasets.labels import LABEL_FIELDS, label_field
from tools.errors import UserError

MANIFEST_NAME = "manifest.jsonl"
TEST_NAME = "test_captions.jsonl"
CSV_COLUMNS = ("image_id", "image_path", "caption")


def _field(row: dict, key: str, kinds: tuple, where: str, example: str):
    value = row.get(key)
    if not isinstance(value, kinds) or isinstance(value, bool):
        found = "missing" if key not in row else f"{type(value).__name__} {value!r:.40}"
        raise UserError(f"{where}: field {key!r} is {found}; expected {example}")
    return value


def load_jsonl(path: Path, images_dir: Path | None, skips: SkipReport) -> DatasetBuilder:
    manifest = path / MANIFEST_NAME if path.is_dir() else path
    if not manifest.is_file():
        raise UserError(f"{manifest}: manifest not found; --layout manifest needs a manifest.jsonl or a .jsonl file")
    base = manifest.parent
    builder = DatasetBuilder(base, "manifest", skips)
    for lineno, row in jsonl_rows(manifest):
        where = f"{manifest}:{lineno}"
        image_id = str(_field(row, "image_id", (str, int), where, 'an image id like "00001"'))
        image_path = _field(row, "image_path", (str,), where, 'a path like "images/00001.png"')
        captions = _field(row, "captions", (list,), where, 'a list of caption strings ["a red flower ...", ...]')
        image = builder.add_image(image_id, find_image(image_path, base, images_dir), where, label_field(row, where))
        for k, caption in enumerate(captions):
            if not isinstance(caption, str):
                raise UserError(f"{where}: captions[{k}] is {type(caption).__name__}; expected a string")
            builder.add_caption(image, caption, f"{where} captions[{k}]")
    test = base / TEST_NAME
    if test.is_file():
        for lineno, row in jsonl_rows(test):
            where = f"{test}:{lineno}"
            test_id = _field(row, "id", (int, str), where, "a test caption id like 17")
            builder.add_test(str(test_id), _field(row, "caption", (str,), where, "the caption string"), where)
    return builder


def load_csv(path: Path, images_dir: Path | None, skips: SkipReport) -> DatasetBuilder:
    import pandas as pd

    if not path.is_file():
        raise UserError(f"{path}: --layout csv needs a .csv file with header {','.join(CSV_COLUMNS)}")
    try:
        table = pd.read_csv(io.StringIO(read_utf8(path)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        header = ",".join(CSV_COLUMNS)
        raise UserError(f"{path}: cannot parse CSV ({str(e).strip()}); expected header {header}") from None
    missing = [c for c in CSV_COLUMNS if c not in table.columns]
    if missing:
        raise UserError(
            f"{path}: CSV lacks column(s) {', '.join(missing)}; found {', '.join(map(str, table.columns))}, "
            f"expected header {','.join(CSV_COLUMNS)} (one row per caption)"
        )
    builder = DatasetBuilder(path.parent, "csv", skips)
    rows: dict[str, tuple[int | None, str, str]] = {}  # image id -> (row, image_path, where first seen)
    classes = _csv_classes(table, path)  # [rows] class per caption row, or None
    for i, (image_id, image_path, caption) in enumerate(zip(table.image_id, table.image_path, table.caption)):
        where = f"{path}:{i + 2}"  # file line of a single-line row (line 1 is the header)
        if image_id not in rows:
            label = None if classes is None else label_field({"class": classes[i]}, where)
            rows[image_id] = (builder.add_image(image_id, find_image(image_path, path.parent, images_dir), where,
                                                label), image_path, where)
        elif rows[image_id][1] != image_path:
            raise UserError(
                f"duplicate image id {image_id!r} with different paths: {rows[image_id][2]} ({rows[image_id][1]}) "
                f"and {where} ({image_path}); image ids must be unique — rename one"
            )
        if classes is not None and label_field({"class": classes[i]}, where) != builder_label(builder, rows[image_id]):
            raise UserError(f"{where}: image {image_id!r} has class {classes[i]!r} here but another class at "
                            f"{rows[image_id][2]}; an image has one class")
        builder.add_caption(rows[image_id][0], caption, where)
    return builder


def _csv_classes(table, path: Path) -> list[str] | None:
    """The CSV's class column ('class' or 'label'), or None when it has neither."""
    found = [c for c in LABEL_FIELDS if c in table.columns]
    if len(found) > 1:
        raise UserError(f"{path}: both 'class' and 'label' columns; keep one of them")
    return list(table[found[0]]) if found else None


def builder_label(builder: DatasetBuilder, entry: tuple) -> str | None:
    """The class recorded for an image added by load_csv (entry: its (row, path, where)); None if it was skipped."""
    row = entry[0]
    return None if row is None else builder.image_labels[row]
