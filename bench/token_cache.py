"""The token-level cache (--tokens) against the sentence-only cache: build time, file size, per-step read cost.

    python bench/token_cache.py                        # synthetic flowers (8 000 images), minilm: two builds + reads
    python bench/token_cache.py --images 1000          # a quicker look
    python bench/token_cache.py --reads-only FILE.h5   # only the read cost, on an existing --tokens cache
    python bench/token_cache.py --ab 1024              # encode vs encode_tokens on one chunk, interleaved

builds: cache.writer.build_cache_report on the same captions, one process, one encoder (both of its graphs traced
        before the clock starts): sentence vectors only, then with token states (auto L). Seconds, distinct
        captions/s, MB and the ratios; then the extrapolation to COCO (616 767 captions) from the measured bytes per
        distinct caption and seconds per distinct caption (assumptions printed with it).
ab:     where a tokens build spends its extra time, free of load drift between two builds: encode() and
        encode_tokens() on the same N distinct captions, alternated ROUNDS times (median s each), and the HDF5 write
        of that chunk's token rows (cache.tokens.write_chunk into a fresh file).
reads:  STEPS "training steps" of BATCH random caption rows (the same rows for every reader), median and p90 ms:
        TokenStates.rows (what training calls), the same inside tf.data through tf.numpy_function,
        h5py fancy indexing of the sorted unique rows (the obvious alternative), EmbeddingCache.embeddings (the
        sentence vectors training reads today), and numpy take from all states held in memory (the floor; a
        COCO-sized [U, L, D] array does not fit). The file is warm in the page cache after the build.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "synthetic-flowers"  # make demo / precompute_embeddings.py generate it
COCO_CAPTIONS = 616_767  # MS-COCO 2014 train + val captions (414 113 + 202 654)
STEPS, BATCH = 200, 128


def dataset(images: int, data: Path):
    from tools.dataset import CaptionDataset
    from tools.datasets import load_dataset

    full = load_dataset(data)
    if images >= full.num_images:
        return full
    keep = full.caption_image < images
    return CaptionDataset("bench-tokens", data, "manifest", full.image_ids[:images], full.image_paths[:images],
                          [c for c, k in zip(full.captions, keep) if k], full.caption_image[keep])


def builds(images: int, data: Path, folder: Path) -> dict:
    from cache.writer import UniquePlan, build_cache_report
    from embeddings.registry import get_encoder

    ds = dataset(images, data)
    encoder = get_encoder("minilm")
    encoder.encode(["warm up the sentence graph"])
    encoder.encode_tokens(["warm up the token graph"], 8)
    out = {}
    for name, tokens in (("sentence", None), ("tokens", "auto")):
        report = build_cache_report(ds, encoder, folder / f"{name}.h5", tokens=tokens, log=None)
        out[name] = report
        print(f"{name:9s} {report.seconds:7.1f} s  {report.num_unique / report.seconds:6.0f} distinct captions/s  "
              f"{report.file_bytes / 1e6:8.1f} MB", flush=True)
    s, t = out["sentence"], out["tokens"]
    print(f"\n| cache | build s | distinct captions/s | file MB |\n|---|---:|---:|---:|")
    for name, r in out.items():
        print(f"| {name} | {r.seconds:.1f} | {r.num_unique / r.seconds:.0f} | {r.file_bytes / 1e6:.1f} |")
    print(f"| ratio tokens / sentence | {t.seconds / s.seconds:.2f} | | {t.file_bytes / s.file_bytes:.2f} |")
    counts = encoder.token_lengths(UniquePlan.from_captions(ds.captions).texts)
    length = t.tokens["length"]
    padding = 100 * (1 - counts.clip(max=length).mean() / length)
    print(f"token counts of the distinct captions (incl. [CLS]/[SEP]): mean {counts.mean():.1f}, p50 "
          f"{np.percentile(counts, 50):.0f}, p99 {np.percentile(counts, 99):.0f}, max {counts.max()}; L = "
          f"{length}, padding {padding:.0f} % of the stored states; {t.tokens['truncated']} truncated")
    coco(s, t, float(counts.mean()))
    return out


def coco(s, t, mean_tokens: float) -> None:
    """Extrapolate to COCO: vectors scale with captions, token rows with distinct captions."""
    length = t.tokens["length"]
    per_caption = s.file_bytes / s.num_captions  # texts, indices, float32 vectors
    per_unique = (t.file_bytes - s.file_bytes) / t.num_unique  # states + ids + lengths
    unique = COCO_CAPTIONS  # COCO captions are nearly all distinct: assume all are (an upper bound)
    size_s, size_t = per_caption * COCO_CAPTIONS, per_caption * COCO_CAPTIONS + per_unique * unique
    secs_s, secs_t = s.seconds / s.num_unique * unique, t.seconds / t.num_unique * unique
    print(f"\nCOCO ({COCO_CAPTIONS} captions, assumed all distinct, L = {length} as here: COCO captions average "
          f"~10.5 words, so ~14 tokens incl. [CLS]/[SEP] against {mean_tokens:.1f} here, and "
          "p99 fits in 32; time per distinct caption as measured here, so an upper bound for shorter captions)")
    print(f"| cache | size GB | build h (this machine) |\n|---|---:|---:|")
    print(f"| sentence | {size_s / 1e9:.2f} | {secs_s / 3600:.2f} |")
    print(f"| tokens | {size_t / 1e9:.2f} | {secs_t / 3600:.2f} |")
    print(f"token rows: {per_unique / 1e3:.1f} kB per distinct caption ({length} x {t.dim} x 2 bytes of states = "
          f"{length * t.dim * 2 / 1e3:.1f} kB, ids {length * 4} B, length 4 B)")


def ab(n: int, data: Path, rounds: int = 3) -> None:
    import h5py

    from cache import tokens as T
    from cache.writer import UniquePlan
    from embeddings.registry import get_encoder

    texts = UniquePlan.from_captions(dataset(8000, data).captions).texts
    texts = texts[:: max(1, len(texts) // n)][:n]  # spread over the length order, like a whole build
    encoder = get_encoder("minilm")
    encoder.encode(texts[:8])
    encoder.encode_tokens(texts[:8], 32)
    times: dict[str, list[float]] = {"encode": [], "encode_tokens": [], "write_chunk": []}
    with tempfile.TemporaryDirectory(prefix="token-ab-") as tmp:
        for r in range(rounds):
            for name in ("encode", "encode_tokens") if r % 2 == 0 else ("encode_tokens", "encode"):
                t0 = time.perf_counter()
                if name == "encode":
                    encoder.encode(texts)
                else:
                    out = encoder.encode_tokens(texts, 32)
                times[name].append(time.perf_counter() - t0)
            rows = T.check_chunk("minilm", texts, 0, 32, encoder.dim, *out[1:])  # this round's token output
            with h5py.File(Path(tmp) / f"w{r}.h5", "w") as f:
                T.create_datasets(f, len(texts), {"length": 32}, encoder.dim)
                t0 = time.perf_counter()
                T.write_chunk(f, 0, *rows)
                f.flush()
                times["write_chunk"].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"\n{n} distinct captions, {rounds} rounds alternated (median s)\n| step | s | x encode |\n|---|---:|---:|")
    for name, sec in med.items():
        print(f"| {name} | {sec:.2f} | {sec / med['encode']:.2f} |")


def timed(fn, rows) -> tuple[float, float]:
    for r in rows[:10]:  # warm-up
        fn(r)
    times = []
    for r in rows:
        t0 = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times)), 1e3 * float(np.percentile(times, 90))


def reads(path: Path) -> None:
    import h5py

    from cache import layout as LA
    from cache.reader import EmbeddingCache

    with EmbeddingCache.open(path) as cache, cache.tokens() as tokens, h5py.File(path, "r") as f:
        n = cache.num_captions
        rows = np.random.default_rng(0).integers(0, n, (STEPS, BATCH))
        states = f[LA.TOKENS_STATES]

        def fancy(r):  # h5py point selection of the sorted distinct rows, then scatter back
            want, inverse = np.unique(tokens.unique_rows(r), return_inverse=True)
            return states[want][inverse]

        print(f"\nreads: {STEPS} steps of {BATCH} random caption rows from {path.name} "
              f"({tokens.num_unique} distinct captions, L {tokens.length}, D {tokens.dim})")
        out = {"TokenStates.rows": timed(tokens.rows, rows),
               "h5py fancy index (sorted unique rows)": timed(fancy, rows),
               "EmbeddingCache.embeddings (sentence vectors)": timed(cache.embeddings, rows)}
        out["TokenStates.rows in tf.data (tf.numpy_function)"] = pipeline(tokens, rows)
        every = states[()]  # [U, L, D] float16 in memory: the floor
        out["numpy take from memory (floor)"] = timed(lambda r: every[tokens.unique_rows(r)], rows)
    mb = BATCH * tokens.length * tokens.dim * 2 / 1e6
    print(f"| reader ({BATCH} rows = {mb:.2f} MB of states) | median ms | p90 ms | x TokenStates.rows |")
    print("|---|---:|---:|---:|")
    base = out["TokenStates.rows"][0]
    for name, (med, p90) in out.items():
        print(f"| {name} | {med:.2f} | {p90:.2f} | {med / base:.2f} |")


def pipeline(tokens, rows) -> tuple[float, float]:
    """ms per batch pulled from a tf.data pipeline that reads the token rows through tf.numpy_function."""
    import tensorflow as tf

    def read(r):
        states, lengths = tf.numpy_function(tokens.rows, [r], [tf.float16, tf.int32])
        return tf.ensure_shape(states, [BATCH, tokens.length, tokens.dim]), tf.ensure_shape(lengths, [BATCH])

    batches = iter(tf.data.Dataset.from_tensor_slices(rows).concatenate(
        tf.data.Dataset.from_tensor_slices(rows[:10])).map(read))
    for _ in range(10):
        next(batches)
    times = []
    for _ in range(STEPS):
        t0 = time.perf_counter()
        next(batches)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times)), 1e3 * float(np.percentile(times, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8000, help="synthetic images (10 captions each)")
    parser.add_argument("--data", type=Path, default=DATA, help=f"synthetic flowers folder (default {DATA})")
    parser.add_argument("--reads-only", metavar="FILE.h5", help="only time reads from this --tokens cache")
    parser.add_argument("--ab", type=int, metavar="N", help="only encode vs encode_tokens on N distinct captions")
    args = parser.parse_args()
    from bench.machine import machine

    print(machine())
    if args.ab:
        ab(args.ab, args.data)
        return
    if args.reads_only:
        reads(Path(args.reads_only))
        return
    with tempfile.TemporaryDirectory(prefix="token-cache-bench-") as tmp:
        builds(args.images, args.data, Path(tmp))
        reads(Path(tmp) / "tokens.h5")


if __name__ == "__main__":
    main()
