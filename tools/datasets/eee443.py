"""COCO-style HDF5 of the EEE443 (Bilkent) captioning projects, e.g. eee443_project_dataset_train.h5.

    train_cap   [N, 17] int word ids: x_START_ ... x_END_, padded with x_NULL_ (x_UNK_ = unknown word)
    train_imid  [N]     1-based row in train_url of each caption's image
    train_url   [M]     bytes, e.g. b"http://images.cocodataset.org/train2014/COCO_train2014_000000000123.jpg"
    word_code   (1,)    one compound record: field names are the words, values their ids

Images are not in the file: they are looked up by the URL's file name in --images-dir, else train_images/ or
images/ beside the .h5 (searched recursively). Missing images are skipped with their captions (counted).
The image id is the file stem (COCO_train2014_000000000123). Frame tokens are dropped; x_UNK_ is dropped and
noted, like DataLab's <RARE> (see datalab.py for why). The test_* datasets of the separate test file hold
captions of test *images*, not held-out caption ids, so they are not read.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tools.dataset import SkipReport
from tools.datasets.common import DatasetBuilder
from tools.errors import UserError

REQUIRED = ("train_cap", "train_imid", "train_url", "word_code")
FRAME = ("x_START_", "x_END_", "x_NULL_")
UNKNOWN = "x_UNK_"
IMAGE_DIRS = ("train_images", "images")


def is_eee443(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "train_cap" in f and "word_code" in f
    except OSError:
        return False


def _vocabulary(path: Path, word_code) -> dict[int, str]:
    record = np.asarray(word_code[()])
    if record.dtype.names is None or record.size < 1:
        raise UserError(
            f"{path}: word_code is a {record.dtype} array of shape {record.shape}; expected one compound record "
            f"whose field names are words and values their ids"
        )
    record = record.reshape(-1)[0]
    return {int(record[w]): w for w in record.dtype.names}


def _image_files(folders: list[Path]) -> dict[str, str]:
    """file name -> absolute path, one walk."""
    found: dict[str, str] = {}
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for f in files:
                found.setdefault(f, os.path.abspath(os.path.join(dirpath, f)))
    return found


def _read(path: Path) -> tuple[dict[int, str], np.ndarray, np.ndarray, list[str]]:
    """(id -> word, train_cap [N, 17], 0-based image rows [N], urls [M]), checked for consistency."""
    import h5py

    if not path.is_file():
        raise UserError(f"{path}: --layout eee443 needs the .h5 file itself (e.g. eee443_project_dataset_train.h5)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        missing = [k for k in REQUIRED if k not in f]
        if missing:
            raise UserError(
                f"{path}: lacks {', '.join(missing)} (has {', '.join(f.keys())}); expected {', '.join(REQUIRED)}"
            )
        id2word = _vocabulary(path, f["word_code"])
        caps = np.asarray(f["train_cap"][()], dtype=np.int64)  # [N, 17]
        imid = np.asarray(f["train_imid"][()], dtype=np.int64).reshape(-1)  # [N]
        urls = [u.decode("utf-8", "replace") if isinstance(u, bytes) else str(u) for u in f["train_url"][()].ravel()]
    if caps.ndim != 2 or len(caps) != len(imid):
        raise UserError(f"{path}: train_cap {caps.shape} and train_imid {imid.shape} disagree; expected [N, 17], [N]")
    bad = np.flatnonzero((imid < 1) | (imid > len(urls)))
    if len(bad):
        raise UserError(
            f"{path}: train_imid[{bad[0]}] = {imid[bad[0]]} is outside 1..{len(urls)} (1-based rows of train_url)"
        )
    unknown = sorted(set(np.unique(caps).tolist()) - set(id2word))
    if unknown:
        row = int(np.flatnonzero(np.isin(caps, unknown).any(axis=1))[0])
        raise UserError(f"{path}: train_cap[{row}] uses word id {unknown[0]}, which word_code does not define")
    return id2word, caps, imid - 1, urls


def _add_images(builder: DatasetBuilder, path: Path, urls: list[str], images_dir: Path | None) -> list[int | None]:
    """Builder row (None: missing) of each url, found by file name in the image folders."""
    folders = [images_dir] if images_dir else [path.parent / d for d in IMAGE_DIRS if (path.parent / d).is_dir()]
    if not folders:
        looked = ", ".join(str(path.parent / d) for d in IMAGE_DIRS)
        raise UserError(f"{path}: no image folder found (looked for {looked}); point --images-dir at the COCO images")
    files = _image_files(folders)
    rows = []
    for j, url in enumerate(urls):
        file_name = url.strip().rsplit("/", 1)[-1]
        image_path = files.get(file_name, str(folders[0] / file_name))
        rows.append(builder.add_image(os.path.splitext(file_name)[0], image_path, f"{path}: train_url[{j}]"))
    return rows


def load(path: Path, images_dir: Path | None, skips: SkipReport) -> DatasetBuilder:
    path = Path(path)
    id2word, caps, image_of, urls = _read(path)
    builder = DatasetBuilder(path.parent, "eee443", skips)
    rows = _add_images(builder, path, urls, images_dir)
    vocab = np.array([id2word.get(i, "") for i in range(max(id2word) + 1)], dtype=object)  # id -> word
    vocab[[i for i, w in id2word.items() if w in FRAME]] = ""
    unk_id = next((i for i, w in id2word.items() if w == UNKNOWN), None)
    for i, (ids, image) in enumerate(zip(caps, image_of)):
        where = f"{path}: train_cap[{i}]"
        if rows[image] is None:
            builder.add_caption(None, "", where)
            continue
        if unk_id is not None and (ids == unk_id).any():
            skips.note(f"captions with {UNKNOWN} dropped", where)
            ids = ids[ids != unk_id]
        builder.add_caption(rows[image], " ".join(w for w in vocab[ids] if w), where)
    return builder
