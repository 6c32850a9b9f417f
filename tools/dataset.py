"""The one in-memory form every dataset importer produces, and the skip report.

Importers (tools/datasets/) turn DataLab Cup pickles, Reed `text_c10` folders, EEE443 HDF5, CSV/JSONL
manifests and the synthetic set into a `CaptionDataset`; everything downstream reads only this.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SkipReport:
    """Counted, reported skips: nothing is dropped silently.

    `add(reason, where)` records one skipped item; `summary()` is printed at the end of a run.
    With strict=True the first skip raises UserError instead (the `--strict` flag).
    """

    strict: bool = False
    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # reason -> first few "where" strings

    def add(self, reason: str, where: str, fix: str = "") -> None:
        if self.strict:
            from tools.errors import UserError

            raise UserError(f"{where}: {reason}" + (f" ({fix})" if fix else "") + " [--strict]")
        self.note(reason, where)

    def note(self, reason: str, where: str) -> None:
        """Count a data transformation (e.g. a dropped <RARE> token) in the report; never a --strict error."""
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < 3:
            examples.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "skipped: none"
        parts = [f"{n} {reason} (e.g. {', '.join(self.examples[reason])})" for reason, n in self.counts.items()]
        return f"skipped {self.total}: " + "; ".join(parts) + " — use --strict to make these errors"


@dataclass
class CaptionDataset:
    """Images with ids and paths; captions with text and their image; optional test captions with ids."""

    name: str  # short, file-name-safe name used in cache/run names, e.g. "synthetic-flowers"
    root: Path  # the dataset root the user named
    layout: str  # "manifest" | "csv" | "datalab" | "text_c10" | "eee443"
    image_ids: list[str]  # [M] unique
    image_paths: list[str]  # [M] absolute paths
    captions: list[str]  # [N] caption texts
    caption_image: np.ndarray  # [N] int64, row in image_ids
    test_ids: list[str] | None = None  # [T] ids of held-out test captions (e.g. DataLab testData.pkl)
    test_captions: list[str] | None = None  # [T]
    skips: SkipReport = field(default_factory=SkipReport)
    labels: np.ndarray | None = None  # [M] int64 class id of each image, into label_names (None: no labels)
    label_names: list[str] | None = None  # [K] sorted class names (tools/datasets/labels.py)
    label_source: str = ""  # where the labels came from: "class" (the layout's own) or "petal_color,..." (attributes)

    def __post_init__(self) -> None:
        self.caption_image = np.asarray(self.caption_image, dtype=np.int64)
        assert len(self.image_ids) == len(self.image_paths), "image ids and paths differ in length"
        assert len(self.captions) == len(self.caption_image), "captions and caption_image differ in length"
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            assert len(self.labels) == len(self.image_ids), "labels and image ids differ in length"

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_captions(self) -> int:
        return len(self.captions)
