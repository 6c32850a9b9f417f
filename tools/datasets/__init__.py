"""Dataset importers: any supported layout -> one `CaptionDataset` (tools/dataset.py).

    from tools.datasets import load_dataset
    ds = load_dataset("data/synthetic-flowers")            # layout auto-detected
    ds = load_dataset("oxford", "datalab", strict=True)    # forced layout; any skip is an error
    print(ds.num_images, ds.num_captions, ds.skips.summary())

CLIs share the flags through `add_dataset_args(parser)` and `dataset_from_args(args)`.
Layouts, one module each: manifest.py (JSONL manifest and CSV), datalab.py, text_c10.py, eee443.py,
imagefolder.py (Hugging Face imagefolder), webdataset.py (tar shards, streamed; shards.py reads them);
shared checks and decisions (caption cleaning, UTF-8, duplicates, long captions) in common.py.
"""
from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

from tools.dataset import CaptionDataset, SkipReport
from tools.datasets.common import slugify
from tools.errors import UserError

LAYOUTS = {  # name -> what auto-detection looks for
    "manifest": "a folder with manifest.jsonl, or a .jsonl file",
    "csv": "a .csv file with header image_id,image_path,caption",
    "datalab": "a folder with dataset/text2ImgData.pkl and dictionary/ (DataLab Cup)",
    "text_c10": "a folder with text_c10/ (Reed et al., Oxford-102 or CUB), or text_c10/ itself",
    "eee443": "a .h5/.hdf5 file with train_cap and word_code (EEE443 COCO)",
    "imagefolder": "a folder of images with metadata.jsonl/.csv (file_name + text), or name.txt beside name.jpg",
    "webdataset": "a .tar shard, a pattern like shards/{00000..00041}.tar, or a folder of .tar shards",
}
CAPTION_COLUMN_LAYOUTS = ("imagefolder", "webdataset")  # the layouts --caption-column applies to
LAYOUT_FLAG = f"--layout {{auto,{','.join(LAYOUTS)}}}"

DATA_HELP = (
    "dataset to import: a folder, a .jsonl/.csv/.h5/.tar file or a shard pattern like 'shards/{00000..00041}.tar' "
    "(quoted); the layout is detected (see --layout). "
    "WARNING: DataLab Cup datasets are pandas pickles, and loading a pickle can execute code — only point "
    "--data at datasets you trust. Pickles are only read from inside the dataset root you name "
    "(symlinks and paths leading out of it are refused)."
)


def _unknown(path: Path, why: str) -> UserError:
    looked = "; ".join(f"{desc} ({name})" for name, desc in LAYOUTS.items())
    return UserError(f"{path}: {why}; looked for {looked} — name the layout with {LAYOUT_FLAG}")


def detect_layout(path: str | Path) -> str:
    """The layout name for `path`, from the files it holds; UserError when none matches."""
    from tools.datasets import imagefolder, shards

    path = Path(path)
    if not path.exists():
        if shards.is_pattern(str(path)):
            return "webdataset"
        raise UserError(f"--data {path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if shards.is_shard_file(path):
            return "webdataset"
        if suffix == ".jsonl":
            return "manifest"
        if suffix == ".csv":
            return "csv"
        if suffix in (".h5", ".hdf5"):
            from tools.datasets.eee443 import is_eee443

            if is_eee443(path):
                return "eee443"
            raise _unknown(path, "HDF5 file without train_cap and word_code")
        if suffix == ".pkl":
            raise UserError(
                f"{path}: point --data at the DataLab Cup root (the folder holding dataset/ and dictionary/), "
                f"not at a pickle inside it"
            )
        raise _unknown(path, "unknown dataset file type")
    if (path / "manifest.jsonl").is_file():
        return "manifest"
    pkl = path / "dataset" / "text2ImgData.pkl"
    if pkl.exists() or pkl.is_symlink():
        return "datalab"
    if path.name == "text_c10" or (path / "text_c10").is_dir():
        return "text_c10"
    if imagefolder.metadata_files(path) or imagefolder.has_caption_files(path):
        return "imagefolder"
    if any(shards.is_shard_file(n) for n in os.listdir(path)):
        return "webdataset"
    raise _unknown(path, "unknown dataset layout")


def _loader(layout: str, caption_column: str | None = None):
    from tools.datasets import datalab, eee443, imagefolder, manifest, text_c10, webdataset

    if caption_column is not None and layout not in CAPTION_COLUMN_LAYOUTS:
        raise UserError(f"--caption-column applies to the {' and '.join(CAPTION_COLUMN_LAYOUTS)} layouts, "
                        f"not to {layout}; leave it out")
    return {
        "manifest": manifest.load_jsonl,
        "csv": manifest.load_csv,
        "datalab": datalab.load,
        "text_c10": text_c10.load,
        "eee443": eee443.load,
        "imagefolder": functools.partial(imagefolder.load, caption_column=caption_column),
        "webdataset": functools.partial(webdataset.load, caption_column=caption_column),
    }[layout]


def load_dataset(
    path: str | Path,
    layout: str | None = None,
    *,
    strict: bool = False,
    images_dir: str | Path | None = None,
    name: str | None = None,
    caption_column: str | None = None,
    labels: str | None = None,
) -> CaptionDataset:
    """Import the dataset at `path` (layout detected unless given); skips are counted in `.skips`.

    strict=True turns every skip (missing/corrupt image, empty or truncated caption, ...) into a UserError.
    images_dir overrides where images are looked for. name defaults to a slug of the dataset folder's name.
    caption_column names the text column of an imagefolder metadata file or a webdataset's .json.
    labels: --labels (auto | none | attribute names; tools/datasets/labels.py).
    """
    from tools.datasets.labels import apply_labels, parse_labels_option

    parse_labels_option(labels)  # a bad --labels fails before the import
    path = Path(path).expanduser()
    if layout in (None, "auto"):
        layout = detect_layout(path)
    elif layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; choose one of auto, {', '.join(LAYOUTS)} ({LAYOUT_FLAG})")
    elif not path.exists() and not (layout == "webdataset" and "{" in str(path)):
        raise UserError(f"--data {path}: no such file or folder")
    if images_dir is not None:
        images_dir = Path(images_dir).expanduser()
        if not images_dir.is_dir():
            raise UserError(f"--images-dir {images_dir}: no such folder")
    builder = _loader(layout, caption_column)(path, images_dir, SkipReport(strict=strict))
    return apply_labels(builder.build(name or slugify(builder.root.resolve().name, fallback=layout)), labels)


def add_dataset_args(parser: argparse.ArgumentParser, *, default: str | None = None) -> argparse._ArgumentGroup:
    """Add the shared dataset flags (--data, --layout, --images-dir, --caption-column, --strict) as a group."""
    group = parser.add_argument_group("dataset")
    group.add_argument("--data", metavar="PATH", default=default, required=default is None,
                       help=DATA_HELP + (f" (default: {default})" if default else ""))
    group.add_argument("--layout", choices=["auto", *LAYOUTS], default="auto",
                       help="dataset layout (default: auto-detect): "
                            + "; ".join(f"{k} = {v}" for k, v in LAYOUTS.items()))
    group.add_argument("--images-dir", metavar="DIR", default=None,
                       help="folder holding the images, when they are not where the layout expects them")
    group.add_argument("--caption-column", metavar="NAME", default=None,
                       help="imagefolder/webdataset: the metadata or .json column holding the captions, when it "
                            "is not obvious (default: text, caption, captions, ... or the only text column)")
    group.add_argument("--labels", metavar="auto|none|A,B", default="auto",
                       help="class labels stored per image in the cache (for --set aux_class): auto = the layout's "
                            "own (text_c10 class folders, a class/label column), none, or attribute names of an "
                            "attributes.jsonl beside the data, e.g. petal_color,petal_shape (default: auto)")
    group.add_argument("--strict", action="store_true",
                       help="stop at the first bad item (missing/corrupt image, empty or over-long caption) "
                            "instead of skipping and counting it")
    return group


def dataset_from_args(args: argparse.Namespace) -> CaptionDataset:
    """load_dataset with the flags added by add_dataset_args."""
    return load_dataset(args.data, args.layout, strict=args.strict, images_dir=args.images_dir,
                        caption_column=getattr(args, "caption_column", None), labels=getattr(args, "labels", None))


__all__ = ["LAYOUTS", "add_dataset_args", "dataset_from_args", "detect_layout", "load_dataset"]
