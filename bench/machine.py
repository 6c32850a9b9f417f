"""The one line every benchmark prints about the machine it ran on: without it, minutes and ms/step mean nothing.

    from bench.machine import machine
    machine()   # 'AMD EPYC (family 25 model 1) | 2 cores, 2 logical CPUs | fma avx2 | auto precision: float32'

Family and model tell CPUs apart that share a model name (Zen 3 and Zen 4 both report "AMD EPYC"); the vector
extensions listed are the ones TF's kernels use (AVX2/FMA, AVX-512 and its BF16/VNNI parts, AMX).
"""
from __future__ import annotations

import re
import subprocess

VECTOR_FLAGS = re.compile(r"avx2|fma|avx512(f|bw|vl|_vnni|_bf16|_fp16)|amx_\w+|avx_vnni")


def describe(lscpu_text: str, policy: str | None = None) -> str:
    """The machine line from `lscpu` output; `policy`: what train_gan.py's auto precision picks here."""
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lscpu_text.splitlines()) if v}
    cores = int(fields.get("Socket(s)") or 1) * int(fields.get("Core(s) per socket") or fields.get("CPU(s)") or 1)
    family = f" (family {fields['CPU family']} model {fields['Model']})" if "CPU family" in fields and "Model" in fields else ""
    vector = [f for f in fields.get("Flags", "").split() if VECTOR_FLAGS.fullmatch(f)]
    line = (f"{fields.get('Model name', '?')}{family} | {cores} cores, {fields.get('CPU(s)', '?')} logical CPUs | "
            f"{' '.join(vector) or 'no AVX2/AVX-512'}")
    return f"{line} | auto precision: {policy}" if policy else line


def machine() -> str:
    """describe() of this machine, with the precision train_gan.py's --mixed-precision auto picks on its CPU."""
    from gan.loop import compute_policy

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return f"unknown machine (no lscpu) | auto precision: {compute_policy('auto', gpu=False)}"
    return describe(lscpu, compute_policy("auto", gpu=False))
