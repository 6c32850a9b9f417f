"""Reed et al. (2016) caption folders, `text_c10`, for Oxford-102 flowers and CUB birds.

    Oxford-102: ROOT/text_c10/class_00001/image_06734.txt      images: ROOT/jpg/image_06734.jpg
    CUB-200:    ROOT/text_c10/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.txt
                images: ROOT/images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg
One caption per line (UTF-8; blank lines ignored). --data may name ROOT or the text_c10 folder itself.
Images are found by file stem anywhere under ROOT/jpg, ROOT/images, ROOT/CUB_200_2011/images (or --images-dir);
when a stem occurs twice, the copy inside a folder named like the caption's class folder wins.
Each image's class is its caption folder's name (class_00001, 001.Black_footed_Albatross): stored as its label.
"""
from __future__ import annotations

import os
from pathlib import Path

from tools.dataset import SkipReport
from tools.datasets.common import IMAGE_SUFFIXES, DatasetBuilder, read_utf8
from tools.errors import UserError

TEXT_DIR = "text_c10"
IMAGE_DIRS = ("jpg", "images", "CUB_200_2011/images")


def split_root(path: Path) -> tuple[Path, Path]:
    """(dataset root, text_c10 folder) for --data naming either."""
    path = Path(path)
    return (path.parent, path) if path.name == TEXT_DIR else (path, path / TEXT_DIR)


def _image_index(folders: list[Path]) -> dict[str, list[str]]:
    """stem -> absolute image paths, from one walk over the image folders."""
    index: dict[str, list[str]] = {}
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for f in files:
                stem, suffix = os.path.splitext(f)
                if suffix.lower() in IMAGE_SUFFIXES:
                    index.setdefault(stem, []).append(os.path.abspath(os.path.join(dirpath, f)))
    return index


def load(path: Path, images_dir: Path | None, skips: SkipReport) -> DatasetBuilder:
    root, text_dir = split_root(path)
    if not text_dir.is_dir():
        raise UserError(f"{text_dir}: folder not found; --layout text_c10 needs ROOT/text_c10/<class>/<image>.txt")
    folders = [images_dir] if images_dir else [root / d for d in IMAGE_DIRS if (root / d).is_dir()]
    if not folders:
        looked = ", ".join(str(root / d) for d in IMAGE_DIRS)
        raise UserError(f"{root}: no image folder found (looked for {looked}); point --images-dir at the images")
    index = _image_index(folders)
    builder = DatasetBuilder(root, "text_c10", skips)
    files = 0
    for class_dir in sorted(p for p in text_dir.iterdir() if p.is_dir()):
        for txt in sorted(class_dir.glob("*.txt")):
            files += 1
            candidates = index.get(txt.stem, [])
            same_class = [c for c in candidates if Path(c).parent.name == class_dir.name]
            image_path = (same_class or candidates or [str(folders[0] / f"{txt.stem}.jpg")])[0]
            image = builder.add_image(txt.stem, image_path, str(txt), class_dir.name)  # the class folder: its label
            for lineno, line in enumerate(read_utf8(txt).splitlines(), start=1):
                if line.strip():
                    builder.add_caption(image, line, f"{txt}:{lineno}")
    if not files:
        raise UserError(f"{text_dir}: no <class>/<image>.txt caption files found")
    return builder
