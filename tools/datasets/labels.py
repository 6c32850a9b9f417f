"""Class labels of a dataset's images: what importers record per image, the --labels choice, and attribute groupings.

Where a label comes from (`--labels`, default auto):
    auto        the layout's own class where it has one (text_c10: the class folder; manifest/CSV/imagefolder: a
                `class` or `label` field), else none: a dataset without labels is imported exactly as before
    none        no labels, even where the layout has them (keeps an older cache's fingerprint)
    A,B,...     attributes.jsonl beside the data (the synthetic flowers': {"image_id", "petal_color", ...}); an image's
                class is the combination of the named attributes, e.g. "purple|round" for petal_color,petal_shape
Labels are stored per image in the cache as ids [M] int64 into sorted class names [K] (cache/labels.py), and are
part of the cache's fingerprint, so another grouping is another cache.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tools.errors import UserError

LABEL_FIELDS = ("class", "label")  # manifest / CSV / imagefolder field names that hold an image's class
ATTRIBUTES_NAME = "attributes.jsonl"
SEPARATOR = "|"  # joins attribute values into one class name


def label_field(row: dict, where: str) -> str | None:
    """The row's class from its `class` or `label` field (None when it has neither); both, or a non-scalar: error."""
    present = [k for k in LABEL_FIELDS if k in row and row[k] not in (None, "")]
    if not present:
        return None
    if len(present) > 1:
        raise UserError(f"{where}: both 'class' and 'label' are given; keep one of them")
    value = row[present[0]]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UserError(f"{where}: field {present[0]!r} is {type(value).__name__}; expected a class name or number")
    return str(value).strip()


def encode_labels(names_per_image: list[str | None], wheres: list[str]) -> tuple[np.ndarray, list[str]] | None:
    """Per-image class names -> (ids [M] int64 into the sorted names, names [K]); None when no image has one.
    Some images labelled and others not is an error naming the first unlabelled one."""
    if all(n is None for n in names_per_image):
        return None
    missing = [i for i, n in enumerate(names_per_image) if n is None]
    if missing:
        raise UserError(f"{wheres[missing[0]]}: no class, but other images have one ({len(missing)} of "
                        f"{len(names_per_image)} lack it); give every image a class or none (--labels none)")
    names = sorted(set(names_per_image))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[n] for n in names_per_image], np.int64), names


def parse_labels_option(value: str | None) -> tuple[str, ...] | str:
    """--labels: "auto" | "none" | a tuple of attribute names."""
    value = (value or "auto").strip()
    if value in ("auto", "none"):
        return value
    attrs = tuple(a.strip() for a in value.split(","))
    if not all(attrs) or len(set(attrs)) != len(attrs):
        raise UserError(f"--labels {value!r}: expected auto, none or distinct attribute names like "
                        f"petal_color,petal_shape")
    return attrs


def attribute_classes(root: Path, image_ids: list[str], attrs: tuple[str, ...]) -> list[str]:
    """Class name of every image from ROOT/attributes.jsonl: the named attributes' values joined by '|'."""
    from tools.datasets.common import jsonl_rows

    path = Path(root) / ATTRIBUTES_NAME
    if not path.is_file():
        raise UserError(f"--labels {','.join(attrs)}: {path} not found; attribute groupings need an "
                        f"{ATTRIBUTES_NAME} beside the data (use --labels auto or none otherwise)")
    by_id: dict[str, str] = {}
    for lineno, row in jsonl_rows(path):
        where = f"{path}:{lineno}"
        missing = [a for a in attrs if a not in row]
        if missing:
            known = ", ".join(k for k in row if k != "image_id")
            raise UserError(f"{where}: no attribute {missing[0]!r}; this file has {known}")
        by_id[str(row.get("image_id"))] = SEPARATOR.join(str(row[a]) for a in attrs)
    absent = [i for i in image_ids if i not in by_id]
    if absent:
        raise UserError(f"{path}: image {absent[0]!r} has no row ({len(absent)} images lack one); "
                        f"every image needs its attributes")
    return [by_id[i] for i in image_ids]


def apply_labels(dataset, option: str | None):
    """Set dataset.labels / label_names / label_source from --labels (the importer's own labels for auto)."""
    choice = parse_labels_option(option)
    if choice == "none":
        dataset.labels = dataset.label_names = None
        dataset.label_source = ""
    elif choice != "auto":
        names = attribute_classes(dataset.root, dataset.image_ids, choice)
        dataset.labels, dataset.label_names = encode_labels(names, dataset.image_ids)
        dataset.label_source = ",".join(choice)
    return dataset
