"""WebDataset tar shards as img2dataset writes them: `{key}.jpg` + `{key}.txt` and/or `{key}.json` per sample.

    --data shards/00000.tar                 one shard
    --data 'shards/{00000..00041}.tar'      a brace pattern (quote it, or the shell expands it first)
    --data shards/                          every .tar/.tar.gz/.tgz in the folder, sorted by name

Shards are streamed, never extracted (tools/datasets/shards.py). Each sample becomes one image with id = its
key, addressed as `SHARD#key.jpg`; the image cache reads those references shard by shard in one pass.
Captions come from `{key}.txt` (one caption per line, blank lines ignored), else from the `{key}.json`
column picked like imagefolder's (`caption` for img2dataset; --caption-column names another, and then the
.json is read even where a .txt exists). Counted skips: a missing shard of a pattern ("missing shard"), a
shard that breaks off ("truncated shard", members before the damage kept), a sample without an image
("caption without image"), one without captions ("image without captions"); a sample's second image and
members of other kinds (.cls, .npy, ...) are noted. Keys must be unique across all shards (UserError naming
both). Order: shard order, then archive order.
"""
from __future__ import annotations

import json
from pathlib import Path

from tools.dataset import SkipReport
from tools.datasets.common import IMAGE_SUFFIXES, DatasetBuilder
from tools.datasets.imagefolder import caption_list, pick_caption_column
from tools.datasets.shards import expand_shards, member_ref, shard_root, split_key, stream_members
from tools.errors import UserError

IMAGE_EXTS = tuple(s.lstrip(".") for s in IMAGE_SUFFIXES)
TEXT_EXTS = ("txt", "json")


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{where}: not UTF-8 (byte {data[e.start:e.start + 1].hex()} at offset {e.start}); "
                        f"re-write the shard with UTF-8 captions") from None


class _Columns:
    """The .json caption column: the one given, else picked from the first .json seen (then fixed)."""

    def __init__(self, given: str | None) -> None:
        self.name = given
        self.given = given is not None

    def captions(self, data: bytes, where: str) -> list[str]:
        try:
            obj = json.loads(_text(data, where))
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not valid JSON ({e.msg}); expected an object like {{\"caption\": ...}}") from None
        if not isinstance(obj, dict):
            raise UserError(f"{where}: expected a JSON object, found {type(obj).__name__}")
        if self.name is None:
            text = [k for k, v in obj.items() if isinstance(v, (str, list))]
            self.name = pick_caption_column(list(obj), None, where, text)
        value = obj.get(self.name)
        return [] if value is None else caption_list(value, f"{where} {self.name}")


def _add_samples(shard: str, builder: DatasetBuilder, columns: _Columns) -> None:
    """Stream one shard; add its samples in archive order."""
    skips = builder.skips
    samples: dict[str, dict[str, tuple[str, bytes | None]]] = {}  # key -> ext -> (member, text bytes)

    def truncated(reason: str) -> None:
        skips.add("truncated shard", where=f"{shard} ({reason})", fix="re-download or re-create the shard")

    for member, data in stream_members(shard, lambda n: split_key(n)[1] in TEXT_EXTS, on_truncated=truncated):
        key, ext = split_key(member)
        sample = samples.setdefault(key, {})
        if ext in sample:
            raise UserError(f"{shard}: member {member} appears twice; each key's files must be unique in a shard")
        sample[ext] = (member, data)
    for key, sample in samples.items():
        images = [sample[e][0] for e in sample if e in IMAGE_EXTS]
        for ext in sample:
            if ext not in IMAGE_EXTS and ext not in TEXT_EXTS:
                skips.note(f"shard members of other kinds ignored (.{ext})", f"{shard}#{sample[ext][0]}")
        for extra in images[1:]:
            skips.note("second image of a sample ignored", f"{shard}#{extra}")
        if not images:
            skips.add("caption without image", where=f"{shard}#{key}", fix=f"add {key}.jpg to the shard or drop its text")
            continue
        where = f"{shard}#{images[0]}"
        row = builder.add_image(key, member_ref(shard, images[0]), where)
        if "txt" in sample and not columns.given:
            member, data = sample["txt"]
            for lineno, line in enumerate(_text(data, f"{shard}#{member}").splitlines(), start=1):
                if line.strip():
                    builder.add_caption(row, line, f"{shard}#{member}:{lineno}")
        elif "json" in sample:
            member, data = sample["json"]
            for k, caption in enumerate(columns.captions(data, f"{shard}#{member}")):
                builder.add_caption(row, caption, f"{shard}#{member} {columns.name}" + (f"[{k}]" if k else ""))


def load(path: Path, images_dir: Path | None, skips: SkipReport, caption_column: str | None = None) -> DatasetBuilder:
    if images_dir is not None:
        raise UserError(f"--images-dir {images_dir}: does not apply to --layout webdataset (the images are "
                        f"inside the shards); leave it out")
    shards, missing = expand_shards(path)
    for shard in missing:
        skips.add("missing shard", where=shard, fix="restore the shard or narrow the brace range")
    builder = DatasetBuilder(shard_root(shards), "webdataset", skips)
    columns = _Columns(caption_column)
    for shard in shards:
        _add_samples(shard, builder, columns)
    return builder
