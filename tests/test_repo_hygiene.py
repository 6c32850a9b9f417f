"""The repository cites only itself: no paths into a developer's machine, no documents it does not carry.

Every tracked text file (`git ls-files`, binary files skipped) is searched line by line for
- absolute paths into the machine a file was written on: `/work/...`, `/root/...`, `/home/<user>/...`,
  `/Users/<user>/...`, and temporary folders that only ever exist there (`/tmp/pytest-of-<user>`, `/tmp/tmpXXXXXXXX`
  from tempfile, `/tmp/bash_jobs...`);
- documents outside the repository: `DESIGN.md`, `SYNTHETIC_FLOWERS.md` (the specification is
  docs/synthetic_flowers.md) and `../shared/` — unless the repository itself tracks a file of that name.
Allowed, because a reader can run or read them anywhere: example paths in commands (`--data /tmp/toy-flowers`,
`--data /shared/coco` on a cluster's shared filesystem), URLs (`https://host/blog/work/...`), repository paths.
This file, which has to name what it looks for, is the one tracked file not searched.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve().relative_to(REPO).as_posix()
NOT_A_PATH_BEFORE = r"(?<![\w.:/~-])"  # a path starts here, not inside a URL, a word or a relative path

MACHINE_PATHS = [  # (what it is, pattern)
    ("an absolute path into the dev machine", re.compile(NOT_A_PATH_BEFORE + r"/(?:work|root)/")),
    ("a home folder", re.compile(NOT_A_PATH_BEFORE + r"/(?:home|Users)/[A-Za-z_][\w.-]*/")),
    ("a temporary folder of the dev machine",
     re.compile(NOT_A_PATH_BEFORE + r"/tmp/(?:pytest-of-|tmp[a-z0-9_]{8}\b|bash_jobs)")),
]
OUTSIDE_DOCS = [  # (file name, pattern): documents that lived beside the repository, never in it
    ("DESIGN.md", re.compile(r"\bDESIGN\.md\b")),
    ("SYNTHETIC_FLOWERS.md", re.compile(r"\bSYNTHETIC_FLOWERS\.md\b")),
    ("shared/", re.compile(r"\.\./shared/")),
]


def tracked_text_files() -> dict[str, str]:
    """path -> text of every tracked file that is UTF-8 text (binary files, e.g. PNGs and .npz, skipped)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    files = {}
    for name in names.decode().split("\0"):
        path = REPO / name
        if not name or name == SELF or not path.is_file():  # this file; or listed but deleted
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            files[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return files


def offences(text: str, tracked: set[str]) -> list[tuple[int, str, str]]:
    """[(line number, what, the line)] for every reference outside the repository in `text`."""
    rules = list(MACHINE_PATHS) + [(f"a reference to {name}, which the repository does not hold", pattern)
                                   for name, pattern in OUTSIDE_DOCS
                                   if not any(Path(t).name == name.rstrip("/") for t in tracked)]
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for what, pattern in rules:
            if pattern.search(line):
                found.append((lineno, what, line.strip()))
    return found


def test_tracked_files_cite_only_the_repository():
    files = tracked_text_files()
    assert len(files) > 50  # the walk really read the repository
    bad = [f"{name}:{lineno}: {what}: {line[:120]}"
           for name, text in sorted(files.items()) for lineno, what, line in offences(text, set(files))]
    assert not bad, ("references outside the repository (point them at docs/ or the bench/results file that holds "
                     "the measurement):\n" + "\n".join(bad))


@pytest.mark.parametrize("line", [
    "Spec: /" + "work/shared/SYNTHETIC_FLOWERS.md.",
    "data lives in /" + "work/main/data/synthetic-flowers",
    "see /" + "root/notes.txt",
    "cache in /" + "home/alice/t2i/cache",
    "a run left in /" + "tmp/pytest-of-alice/pytest-3/x",
    "written to /" + "tmp/tmpk2j8x_q1/out.h5",
    "the rules (../" + "shared/STYLE.md)",
    "oneDNN off gives bit-identical results (" + "DESIGN.md)",
    "7 petal colours, per `" + "SYNTHETIC_FLOWERS.md`",
])
def test_a_planted_reference_is_caught(line):
    text = "first line\n" + line + "\nlast line\n"
    found = offences(text, tracked={"README.md", "docs/synthetic_flowers.md"})
    assert {lineno for lineno, _, _ in found} == {2}, found


@pytest.mark.parametrize("line", [
    "python precompute_embeddings.py --data /shared/coco --ray-address 10.0.0.5:6379",
    "make demo DATA=/tmp/fd/data CACHE=/tmp/fd/minilm.h5",
    'root=Path("/tmp/toy-flowers")',
    "See http://matthewrocklin.com/blog/" + "work/2012/11/01/Unification/",
    "path+file:///" + "home/runner/work/safetensors",
    "the specification: docs/synthetic_flowers.md; results in bench/results/readme-history-2026-12.md",
    "cd work/shared_code && ls",
])
def test_legitimate_text_passes(line):
    assert offences(line, tracked={"README.md"}) == []


def test_a_document_the_repository_holds_may_be_cited():
    line = "the design card (" + "DESIGN.md)"
    assert offences(line, tracked={"DESIGN.md"}) == []
    assert len(offences(line, tracked={"README.md"})) == 1
