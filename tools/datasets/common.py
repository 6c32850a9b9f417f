"""Helpers shared by the importers: caption cleaning, strict UTF-8 reading, safe paths, the dataset builder.

Decisions every layout shares (documented once, here):
- Captions are stripped and their whitespace collapsed; case and punctuation are kept (pretrained encoders
  use them). A caption empty after that is skipped and counted ("empty caption", file:line).
- A caption longer than LONG_WORDS words or LONG_CHARS characters is cut to that length and counted
  ("truncated long caption"): it is almost always a parsing accident (a whole file in one cell), and keeping
  its start loses less than dropping it. With --strict it is an error instead.
- Text files (JSONL, CSV, text_c10 .txt) must be UTF-8: other bytes are a one-line UserError naming the file
  and line with the fix "re-save as UTF-8", never silently replaced, since a mis-decoded caption would be
  encoded and trained on without anyone noticing.
- Duplicate image ids are a UserError naming both places: which captions belong to which image is ambiguous.
- Images whose file is missing are skipped with their captions (both counted); images left with no caption
  are dropped and counted ("image without captions").
- Vocabulary markers (DataLab `<RARE>`, EEE443 `x_UNK_`) are dropped from the text and only *noted* in the
  report (see `note`): they are part of those datasets, not a user mistake, so --strict does not reject them.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from tools.dataset import CaptionDataset, SkipReport
from tools.datasets.labels import encode_labels
from tools.datasets.shards import image_exists
from tools.errors import UserError

LONG_WORDS = 100  # captions longer than this are truncated (and counted)
LONG_CHARS = 1000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def slugify(text: str, fallback: str = "dataset") -> str:
    """File-name-safe short name: "Synthetic Flowers" -> "synthetic-flowers"."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return slug or fallback


def read_utf8(path: Path) -> str:
    """The whole text file as str; non-UTF-8 bytes -> one-line UserError naming file, line and fix."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        bad = data[e.start : e.start + 4]
        raise UserError(
            f"{path}:{line}: not UTF-8 (byte {bad[:1].hex()} at offset {e.start}); re-save the file as UTF-8"
        ) from None


def inside_root(root: Path, relative: str | os.PathLike, what: str) -> Path:
    """`root/relative` if it exists and stays inside root with no symlink on the way, else UserError.

    Used for every file that may hold a pickle: a link or '..' could make us unpickle a file the user never
    pointed at.
    """
    real_root = Path(root).resolve()
    path = real_root / relative
    part = real_root
    for name in Path(relative).parts:
        part = part / name
        if part.is_symlink():
            raise UserError(
                f"{path}: {what} is reached through a symlink ({part}); pickles are only read from inside "
                f"the dataset root {real_root} — copy the file there instead of linking it"
            )
    resolved = path.resolve()
    if resolved != real_root and real_root not in resolved.parents:
        raise UserError(
            f"{path}: {what} lies outside the dataset root {real_root}; pickles are only read from inside it"
        )
    if not resolved.is_file():
        raise UserError(f"{path}: {what} not found (expected it under the dataset root {real_root})")
    return resolved


def find_image(relative: str, base: Path, images_dir: Path | None) -> str:
    """Absolute path of an image named relative to `base`; with --images-dir, look there (path, then name)."""
    rel = Path(relative)
    if rel.is_absolute():
        return os.path.normpath(rel)
    if images_dir is not None:
        first = images_dir / rel
        return os.path.abspath(first if first.is_file() else images_dir / rel.name)
    return os.path.abspath(base / rel)


class DatasetBuilder:
    """Collects images and captions with the shared checks, then builds a CaptionDataset."""

    def __init__(self, root: Path, layout: str, skips: SkipReport) -> None:
        self.root, self.layout, self.skips = Path(root), layout, skips
        self.image_ids: list[str] = []
        self.image_paths: list[str] = []
        self.image_where: list[str] = []
        self.image_labels: list[str | None] = []  # class name per image (None: the layout gave none)
        self.captions: list[str] = []
        self.caption_image: list[int] = []
        self.test_ids: list[str] = []
        self.test_captions: list[str] = []
        self._seen: dict[str, str] = {}  # image id -> where it was defined (missing images included)
        self._seen_test: dict[str, str] = {}

    def add_image(self, image_id: str, path: str, where: str, label: str | None = None) -> int | None:
        """Row of the new image, or None when its file is missing (counted; its captions are skipped).
        label: the image's class name where the layout knows one (tools/datasets/labels.py)."""
        if image_id in self._seen:
            raise UserError(
                f"duplicate image id {image_id!r}: {self._seen[image_id]} and {where}; "
                f"image ids must be unique — rename or remove one"
            )
        self._seen[image_id] = where
        if not image_exists(path):  # a path, or a SHARD.tar#MEMBER reference (tools/datasets/shards.py)
            self.skips.add("missing image", where=path, fix="restore the file, or point --images-dir at the images")
            return None
        self.image_ids.append(image_id)
        self.image_paths.append(path)
        self.image_where.append(where)
        self.image_labels.append(label)
        return len(self.image_ids) - 1

    def clean(self, text: str, where: str) -> str:
        """Collapsed whitespace, truncated (and counted) when absurdly long; may return ''."""
        words = text.split()
        if len(words) > LONG_WORDS or len(" ".join(words)) > LONG_CHARS:
            fix = f"captions are cut to {LONG_WORDS} words / {LONG_CHARS} chars"
            self.skips.add("truncated long caption", where=where, fix=fix)
            words = words[:LONG_WORDS]
            while len(" ".join(words)) > LONG_CHARS and len(words) > 1:
                words.pop()
            return " ".join(words)[:LONG_CHARS]
        return " ".join(words)

    def add_caption(self, row: int | None, text: str, where: str) -> None:
        if row is None:
            self.skips.note("caption of a missing image", where)
            return
        text = self.clean(text, where)
        if not text:
            self.skips.add("empty caption", where=where, fix="fill in or delete the blank caption")
            return
        self.captions.append(text)
        self.caption_image.append(row)

    def add_test(self, test_id: str, text: str, where: str) -> None:
        """A held-out test caption; kept even when empty so its id still gets an image (noted)."""
        if test_id in self._seen_test:
            first = self._seen_test[test_id]
            raise UserError(f"duplicate test id {test_id!r}: {first} and {where}; test ids must be unique")
        self._seen_test[test_id] = where
        text = self.clean(text, where)
        if not text:
            self.skips.note("empty test caption (kept)", where)
        self.test_ids.append(test_id)
        self.test_captions.append(text)

    def build(self, name: str) -> CaptionDataset:
        """Drop images left without captions (counted) and renumber caption -> image rows."""
        caption_image = np.asarray(self.caption_image, dtype=np.int64)  # [N]
        used = np.zeros(len(self.image_ids), dtype=bool)
        used[caption_image] = True
        for row in np.flatnonzero(~used):
            where = self.image_where[row]
            self.skips.add("image without captions", where=where, fix="add captions or remove the image")
        new_row = np.cumsum(used) - 1  # old row -> new row, valid where used
        keep = np.flatnonzero(used)
        if not len(keep):
            raise UserError(
                f"{self.root}: no image with a caption found in this {self.layout} dataset ({self.skips.summary()}); "
                f"check the image paths, or point --images-dir at the images"
            )
        labels = encode_labels([self.image_labels[i] for i in keep], [self.image_where[i] for i in keep])
        return CaptionDataset(
            name=name,
            root=self.root,
            layout=self.layout,
            image_ids=[self.image_ids[i] for i in keep],
            image_paths=[self.image_paths[i] for i in keep],
            captions=self.captions,
            caption_image=new_row[caption_image],
            test_ids=self.test_ids or None,
            test_captions=self.test_captions or None,
            skips=self.skips,
            labels=None if labels is None else labels[0],
            label_names=None if labels is None else labels[1],
            label_source="" if labels is None else "class",
        )


def jsonl_rows(path: Path):
    """(line number, dict) for each non-blank line; bad JSON -> UserError naming file:line."""
    for lineno, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg}); each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object per line, found {type(row).__name__}")
        yield lineno, row
