"""Runs of different image sizes side by side on the same captions and noise: one PNG, each run's images shown at
the largest run's size (nearest-neighbour enlargement, so a 64 px image shows its own pixels).

    python bench/size_grid.py --runs 64=runs/00001-sf-minilm@1000,128=runs/00002-sf128-minilm@1000 \\
        --out bench/results/image-size-2026-12-06.png

Rows: --captions held-out captions of the first run's dataset (evenly spaced over its test captions); for each
caption, --noise columns per run, run after run. Column j of every run uses the same z (the runs share z_dim), and
both runs read the caption's vector from their own cache (the same encoder: the same vector). Each run samples as
its config says (EMA generator, its ca_noise).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_runs(text: str) -> list[tuple[str, Path, int | None]]:
    """'64=DIR@1000,128=DIR' -> [(label, run dir, checkpoint step or None)]."""
    from tools.errors import UserError

    runs = []
    for item in text.split(","):
        label, sep, rest = item.partition("=")
        if not sep:
            raise UserError(f"--runs {item!r}: expected LABEL=RUN_DIR[@STEP]")
        path, _, step = rest.partition("@")
        runs.append((label, Path(path), int(step) if step else None))
    return runs


def test_captions(run: Path, n: int) -> list[str]:
    from cache.reader import EmbeddingCache
    from gan.run_dir import load_config

    with EmbeddingCache.open(load_config(run).cache.path) as cache:
        texts = cache.test_texts() or cache.texts()
    picks = np.unique(np.linspace(0, len(texts) - 1, n).astype(int))
    return [texts[i] for i in picks]


def run_images(run: Path, step, texts: list[str], z: np.ndarray) -> np.ndarray:
    """uint8 [C, K, S, S, 3]: caption c with noise column k."""
    from gan.inference import load_generator
    from tools.generation import encode_texts, open_run_cache

    gen, cfg = load_generator(run, step)
    cache = open_run_cache(cfg, run)
    try:
        vectors = encode_texts(cfg, cache, texts).vectors  # [C, D]
    finally:
        if cache is not None:
            cache.close()
    c, k = len(texts), len(z)
    images = gen(np.repeat(vectors, k, axis=0), np.tile(z, (c, 1)))  # [C·K, S, S, 3]
    print(f"{run.name} step {gen.step}: {images.shape[1]} px")
    return images.reshape(c, k, *images.shape[1:])


def grid(blocks: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """[C, K, S_r, S_r, 3] per run -> one uint8 image: rows = captions, columns = K per run, runs apart by 3·gap."""
    size = max(b.shape[2] for b in blocks)
    up = [b.repeat(size // b.shape[2], axis=2).repeat(size // b.shape[2], axis=3) for b in blocks]
    c = up[0].shape[0]
    cols = sum(b.shape[1] for b in up)
    width = cols * (size + gap) + gap + 2 * gap * (len(up) - 1)
    out = np.full((c * (size + gap) + gap, width, 3), 16, np.uint8)
    x = gap
    for b in up:
        for k in range(b.shape[1]):
            for r in range(c):
                out[gap + r * (size + gap): gap + r * (size + gap) + size, x: x + size] = b[r, k]
            x += size + gap
        x += 2 * gap
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="LABEL=RUN_DIR[@STEP],... (left to right)")
    p.add_argument("--out", required=True, type=Path, help="PNG to write")
    p.add_argument("--captions", type=int, default=5, help="held-out captions, one per row (default 5)")
    p.add_argument("--noise", type=int, default=4, help="noise columns per run (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shared noise (default 0)")
    args = p.parse_args(argv)
    from PIL import Image

    from gan.run_dir import load_config

    runs = parse_runs(args.runs)
    texts = test_captions(runs[0][1], args.captions)
    z_dims = {load_config(r).z_dim for _, r, _ in runs}
    if len(z_dims) != 1:
        raise SystemExit(f"the runs differ in z_dim ({sorted(z_dims)}): no shared noise")
    z = np.random.default_rng(args.seed).standard_normal((args.noise, z_dims.pop())).astype(np.float32)
    blocks = [run_images(r, step, texts, z) for _, r, step in runs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(blocks)).save(args.out)
    print(f"wrote {args.out}: rows (top to bottom):")
    for i, t in enumerate(texts):
        print(f"  {i + 1}. {t}")
    print("columns: " + " | ".join(f"{label}: {args.noise} noise draws" for label, _, _ in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
