"""WebDataset tar shards: expand shard patterns, stream members in order, and name one member as an image reference.

    from tools.datasets.shards import expand_shards, stream_members, member_ref, split_ref
    shards = expand_shards("data/laion/{00000..00041}.tar")    # existing shard paths, in order
    ref = member_ref(shards[0], "000000017.jpg")                 # "/abs/data/laion/00000.tar#000000017.jpg"
    split_ref(ref)                                               # ("/abs/data/laion/00000.tar", "000000017.jpg")

A shard is read as a stream (`tarfile` mode "r|*": plain, gzip, bz2 or xz), front to back, once: nothing is
extracted to disk, and a shard on a slow or sequential medium costs one pass. That is also why an image
inside a shard is addressed as `SHARD#MEMBER`: the image cache (gan/image_cache.py via tools/images.py)
groups the references by shard and decodes each shard's images in one pass, in the order they lie in it.

Keys follow the WebDataset convention: a member `dir/abc.seg.png` has key `dir/abc` and extension `seg.png`
(everything after the first dot of the file name), so `{key}.jpg`, `{key}.txt` and `{key}.json` belong to
one sample, as img2dataset writes them.

Library choice: `braceexpand` (the expansion the `webdataset` package itself uses) for patterns; shards are
read with the standard library's `tarfile`. The `webdataset` package (1.0.2) installs beside our pins without
torch (needs braceexpand, numpy, pyyaml) and imports in 0.2 s, but what we need is member-level control it
hides in its pipeline: each member's name for `file:member` errors and references, a truncated shard counted
as a skip with the members before the damage kept, and the single-pass reader of references in tools/images.py.
"""
from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path
from typing import Callable, Iterator

from tools.errors import UserError

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_REF = re.compile(r"^(?P<shard>.+?\.(?:tar|tar\.gz|tgz|tar\.bz2|tar\.xz))#(?P<member>[^#].*)$")
_BRACE = re.compile(r"\{[^{}]*(?:\.\.|,)[^{}]*\}")


def is_shard_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(SHARD_SUFFIXES)


def is_pattern(text: str) -> bool:
    """True for a brace pattern like `shards/{00000..00041}.tar` or `{a,b}.tar`."""
    return bool(_BRACE.search(text))


def member_ref(shard: str | os.PathLike, member: str) -> str:
    """The image reference of `member` inside `shard`: absolute shard path, '#', member name."""
    return f"{os.path.abspath(shard)}#{member}"


def split_ref(ref: str | os.PathLike) -> tuple[str, str] | None:
    """(shard path, member name) when `ref` names a member of a shard, else None (an ordinary path).

    A string that is an existing file is always an ordinary path, so a file name holding '#' still works.
    """
    text = os.fspath(ref)
    if "#" not in text or os.path.isfile(text):
        return None
    m = _REF.match(text)
    return (m["shard"], m["member"]) if m else None


def split_key(member: str) -> tuple[str, str]:
    """WebDataset key and lower-case extension: 'a/b/000017.seg.PNG' -> ('a/b/000017', 'seg.png')."""
    folder, _, name = member.rpartition("/")
    stem, dot, ext = name.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def expand_shards(spec: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(existing shard paths, missing shard paths) for a shard file, a brace pattern or a folder of shards.

    A folder stands for its shard files sorted by name. UserError when nothing at all can be read.
    """
    from braceexpand import braceexpand

    text = os.path.expanduser(os.fspath(spec))
    if os.path.isdir(text):
        names = sorted(n for n in os.listdir(text) if is_shard_file(n))
        if not names:
            raise UserError(f"{text}: folder holds no .tar shards; --layout webdataset needs .tar files "
                            f"or a pattern like shards/{{00000..00041}}.tar")
        return [os.path.join(text, n) for n in names], []
    paths = list(braceexpand(text)) if is_pattern(text) else [text]
    found = [p for p in paths if os.path.isfile(p)]
    missing = [p for p in paths if not os.path.isfile(p)]
    if not found:
        what = f"none of the {len(paths)} shards of the pattern exist (first: {paths[0]})" if len(paths) > 1 \
            else "no such shard file"
        raise UserError(f"--data {text}: {what}; check the path and the brace range")
    bad = [p for p in found if not is_shard_file(p)]
    if bad:
        raise UserError(f"{bad[0]}: not a shard name (expected one of {', '.join(SHARD_SUFFIXES)})")
    return found, missing


def stream_members(shard: str, wanted: Callable[[str], bool] = lambda name: True,
                   on_truncated: Callable[[str], None] | None = None) -> Iterator[tuple[str, bytes | None]]:
    """(member name, bytes if wanted(name) else None) for each regular file in `shard`, in archive order.

    The shard is read once, as a stream (members not wanted are skipped over, not kept). A shard that is not
    a tar archive at all is a UserError; one that breaks off part-way (an interrupted download) yields the
    members before the damage, then calls on_truncated(reason) (or raises UserError when none is given).
    """
    try:
        tar = tarfile.open(shard, mode="r|*")
    except FileNotFoundError:
        raise UserError(f"{shard}: shard not found; restore it or leave it out of the pattern") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UserError(f"{shard}: not a readable tar archive ({e}); re-create the shard or leave it out") from None
    with tar:
        try:
            for info in tar:
                if not info.isfile():
                    continue
                if not wanted(info.name):
                    yield info.name, None
                    continue
                f = tar.extractfile(info)
                yield info.name, f.read() if f is not None else b""
            # tarfile ends quietly at a header cut short; a whole archive ends with a zero block it has read
            if tar.fileobj.tell() < tar.offset + tarfile.BLOCKSIZE:
                raise tarfile.ReadError(f"no end-of-archive block after byte {tar.offset}")
        except (tarfile.TarError, OSError, EOFError) as e:
            reason = f"{type(e).__name__}: {e}"
            if on_truncated is None:
                raise UserError(f"{shard}: shard is damaged or truncated ({reason}); re-create or re-download it") from None
            on_truncated(reason)


def image_exists(ref: str | os.PathLike) -> bool:
    """An ordinary path is a file; a shard reference's shard is a file (its member is checked when decoded)."""
    parts = split_ref(ref)
    return os.path.isfile(parts[0] if parts else ref)


def shard_root(shards: list[str]) -> Path:
    """The folder the dataset is named after: the common folder of its shards."""
    return Path(os.path.commonpath([os.path.abspath(os.path.dirname(s)) for s in shards]))
