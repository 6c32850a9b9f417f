"""Generate a whole synthetic-flowers set on disk (images, manifest, attributes, test captions, contact sheet).

    <out>/images/image_00001.png      64x64 RGB (size x size with size=128 or 256: the same flowers, drawn larger)
    <out>/manifest.jsonl              {"image_id", "image_path" (relative to <out>), "captions": [10 str]}
    <out>/attributes.jsonl            {"image_id", "petal_color", "center_color", "petal_count", "petal_shape"}
    <out>/test_captions.jsonl         {"id": int, "caption", + the attributes that caption names}
    <out>/contact_sheet.png           the first 64 images, 8x8, scaled 2x (1x at 128 and 256 px)
    <out>/datalab/                    with datalab=True: the DataLab Cup layout (see tools/synthetic/datalab.py)
    <out>/.complete.json              the arguments, written last; a re-run with the same ones does nothing

Image i (0-based) draws everything from numpy.random.default_rng([seed, 0, i]) and test caption j from
default_rng([seed, 1, j]), so the bytes depend only on (seed, n, n_test, size), never on the number of workers; the
attributes and captions depend only on (seed, n, n_test): a set drawn at 128 or 256 px has the 64 px set's manifest,
attributes and test captions, and each image is the 64 px image's flower at more pixels (tools/synthetic/render.py).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tools.errors import UserError
from tools.synthetic import captions as cap
from tools.synthetic import datalab as dl
from tools.synthetic.render import render_flower, sample_attributes

FORMAT_VERSION = 1  # bump when the same arguments would produce different bytes
IMAGE_SIZE = 64  # the default; SIZES are the ones --size accepts
SIZES = (64, 128, 256)
CHUNK = 100  # images per worker task, at most
TRAIN_STREAM, TEST_STREAM = 0, 1  # second word of the rng key: training images vs held-out captions
OUTPUTS = ("images", "datalab", "manifest.jsonl", "attributes.jsonl", "test_captions.jsonl", "contact_sheet.png",
           ".complete.json")  # everything generate_dataset writes (and --force removes)


def image_name(i: int, n: int) -> str:
    """Stem of image i (0-based) in a set of n: image_00001 ... (at least 5 digits, like Oxford-102)."""
    return f"image_{i + 1:0{max(5, len(str(n)))}d}"


def generate_dataset(out_dir, n: int = 8000, seed: int = 0, datalab: bool = False, n_test: int = 819,
                     workers: int = 1, force: bool = False, progress: bool = True, size: int = IMAGE_SIZE) -> Path:
    """Write the set to `out_dir` and return its path; a no-op if it is already there with the same arguments.
    size: image side in px (SIZES); the attributes and captions are the same at every size."""
    _check_args(n, seed, n_test, workers, size)
    out = Path(out_dir)
    args = {"n": n, "seed": seed, "n_test": n_test, "datalab": bool(datalab), "size": size,
            "format_version": FORMAT_VERSION}
    if _already_there(out, args, force):
        print(f"{out} already holds this synthetic set (n={n}, seed={seed}); nothing to do")
        return out
    t0 = time.time()
    (out / "images").mkdir(parents=True, exist_ok=True)
    if datalab:
        (out / "datalab" / dl.IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    rows = _render_all(out, n, seed, datalab, workers, progress, size)  # [(attrs, captions)] in image order
    names = [image_name(i, n) for i in range(n)]
    _write_jsonl(out / "manifest.jsonl", (
        {"image_id": nm, "image_path": f"images/{nm}.png", "captions": caps} for nm, (_, caps) in zip(names, rows)))
    _write_jsonl(out / "attributes.jsonl", ({"image_id": nm, **attrs} for nm, (attrs, _) in zip(names, rows)))
    tests = [_heldout(seed, j) for j in range(n_test)]  # [(id, text, named attrs)]
    _write_jsonl(out / "test_captions.jsonl", ({"id": i, "caption": t, **named} for i, t, named in tests))
    if datalab:
        dl.write_datalab(out / "datalab", list(range(1, n + 1)), [nm + ".jpg" for nm in names],
                         [caps for _, caps in rows], [i for i, _, _ in tests], [t for _, t, _ in tests])
    contact_sheet([out / "images" / f"{nm}.png" for nm in names[:64]], out / "contact_sheet.png",
                  scale=2 if size <= 64 else 1)
    (out / ".complete.json").write_text(json.dumps(args, indent=1) + "\n")
    print(f"wrote {n} images ({size} px), {n * len(rows[0][1])} captions and {n_test} test captions to {out} "
          f"in {time.time() - t0:.1f} s" + (" (+ DataLab Cup layout in datalab/)" if datalab else ""))
    return out


def _check_args(n: int, seed: int, n_test: int, workers: int, size: int = IMAGE_SIZE) -> None:
    """All option checks in one place; each failure names the value and the allowed range."""
    if not isinstance(n, int) or n < 1:
        raise UserError(f"--n must be a positive number of images, got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise UserError(f"--seed must be an integer >= 0, got {seed!r}")
    if not isinstance(n_test, int) or n_test < 0:
        raise UserError(f"--n-test must be an integer >= 0, got {n_test!r}")
    if not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers!r}")
    if size not in SIZES:
        raise UserError(f"--size {size!r}: choose one of {', '.join(map(str, SIZES))}")


def _already_there(out: Path, args: dict, force: bool) -> bool:
    """True if `out` is complete with these args; refuse other args unless force (which clears our outputs)."""
    marker = out / ".complete.json"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; pick a folder path")
    if not marker.exists():
        return False
    try:
        old = json.loads(marker.read_text())
    except (OSError, ValueError):
        old = None
    if old == args and not force:
        return True
    if not force:
        diff = ", ".join(f"{k}={old.get(k)!r}" for k in args if old.get(k) != args[k]) if isinstance(old, dict) else "?"
        raise UserError(f"{out} already holds a different synthetic set ({diff}); pass --force to replace it "
                        f"or choose another --out")
    for name in OUTPUTS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    return False


def _render_all(out: Path, n: int, seed: int, datalab: bool, workers: int, progress: bool, size: int) -> list:
    from tqdm import tqdm

    chunk = max(1, min(CHUNK, n // (4 * workers)))  # >= 4 tasks per worker; the chunking never changes the output
    tasks = [(str(out), seed, start, min(start + chunk, n), n, datalab, size) for start in range(0, n, chunk)]
    rows: list = []
    with tqdm(total=n, unit="img", desc="rendering", disable=not progress, smoothing=0.1) as bar:
        if workers == 1:
            results = map(_render_chunk, tasks)
            for chunk in results:
                rows.extend(chunk)
                bar.update(len(chunk))
        else:
            import multiprocessing as mp

            with mp.get_context().Pool(workers) as pool:
                for chunk in pool.imap(_render_chunk, tasks):  # imap keeps image order
                    rows.extend(chunk)
                    bar.update(len(chunk))
    return rows


def _render_chunk(task: tuple) -> list:
    """Render, save and caption images [start, stop); runs in a worker process."""
    out, seed, start, stop, n, datalab, size = task
    rows = []
    for i in range(start, stop):
        rng = np.random.default_rng([seed, TRAIN_STREAM, i])
        attrs = sample_attributes(rng)
        im = Image.fromarray(render_flower(attrs, rng, size=size))
        texts = cap.image_captions(attrs, rng)
        name = image_name(i, n)
        im.save(Path(out) / "images" / f"{name}.png", format="PNG", compress_level=1)  # 4x faster, +10% size
        if datalab:
            im.save(Path(out) / "datalab" / dl.IMAGE_DIR / f"{name}.jpg", format="JPEG", quality=dl.JPEG_QUALITY)
        rows.append((attrs, texts))
    return rows


def _heldout(seed: int, j: int) -> tuple[int, str, dict]:
    """Held-out caption j: a fresh attribute draw (not any training image's), id j + 1."""
    rng = np.random.default_rng([seed, TEST_STREAM, j])
    text, named = cap.heldout_caption(sample_attributes(rng), rng)
    return j + 1, text, named


def _write_jsonl(path: Path, rows) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)


def contact_sheet(paths: list[Path], dest: Path, cols: int = 8, gap: int = 2, scale: int = 2) -> None:
    """Tile up to cols*cols images on a dark grid and scale it up (nearest) so it reads well in a README."""
    tiles = [Image.open(p).convert("RGB") for p in paths[: cols * cols]]
    s = tiles[0].width
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (s + gap) + gap, rows * (s + gap) + gap), (12, 12, 12))
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet.paste(tile, (gap + c * (s + gap), gap + r * (s + gap)))
    sheet.resize((sheet.width * scale, sheet.height * scale), Image.NEAREST).save(dest)
