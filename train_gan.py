"""Train the text-to-image GAN from a cached-embedding file.

    python train_gan.py --embeddings cache/synthetic-flowers-minilm.h5 --minutes 30
    python train_gan.py --embeddings cache/synthetic-flowers-minilm.h5 --steps 5000 --loss hinge --augment
    python train_gan.py --resume runs/00003-synthetic-flowers-minilm --steps 8000
    python train_gan.py --embeddings cache/synthetic-flowers-minilm.h5 --arch ta80 --steps 2000   # course baseline
    python train_gan.py --embeddings cache/sf128-minilm.h5 --image-size 128 --steps 5000   # 128x128 images
    python train_gan.py --embeddings cache/flowers-minilm.h5 --preset gpu --strategy mirrored      # all GPUs here

Each run gets runs/NNNNN-<dataset>-<encoder>/ with config.json, train.log, checkpoints/, samples/ and tb/
(see gan/run_dir.py). generate.py rebuilds the generator from there: gan.inference.load_generator(run_dir).
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tools.errors import run_cli  # noqa: E402


EXAMPLES = __doc__.split("\n\n")[1]

# CLI flag -> config field (all default None: only options the user gave count as overrides)
FLAGS = [
    ("data", [
        ("--embeddings", str, "FILE.h5", "embedding cache from precompute_embeddings.py (images come from its "
                                         "images/path; required unless --resume)"),
        ("--caption-mean-k", int, "K", "condition on the mean of K captions of each image (default 1)"),
        ("--augment", "flag", None, "light augmentation of real images: horizontal flip + shifts up to 4 px"),
    ]),
    ("model", [
        ("--arch", str, "{dfgan,stackgan,ta80,dfgan-words}",
         "dfgan (default): text fused into every G block, D reads the text at 8x8 and 4x4 (per position at 4x4), "
         "with its recipe (magp loss, Adam 0/0.9, lr 1e-4/4e-4, EMA G, DiffAugment, hard negatives, KL 0.5); "
         "stackgan: StackGAN-I G/D; ta80: the course baseline (dense G/D, GRU trained in the loop on raw captions); "
         "dfgan-words: dfgan + word attention in G at 16x16 and a word-region term in D (a cache built with "
         "precompute_embeddings.py --tokens)"),
        ("--loss", str, "{bce,hinge,magp}", "loss family: bce (stackgan default), hinge, magp (hinge + DF-GAN MA-GP; "
                                            "dfgan default)"),
        ("--image-size", int, "{64,128,256}", "image side in px (default 64): dfgan adds one G up-block and one D "
                                              "down-block per doubling; the image cache is built at this size"),
        ("--ngf", int, "N", "generator width (preset cpu 32, gpu 64)"),
        ("--ndf", int, "N", "discriminator width (preset cpu 32, gpu 64)"),
        ("--z-dim", int, "N", "noise dimension (default 100)"),
        ("--c-dim", int, "N", "conditioning-augmentation dimension (default 128)"),
        ("--kl-weight", float, "W", "weight of the CA KL term in the generator loss (dfgan 0.5, stackgan 2)"),
    ]),
    ("optimiser", [
        ("--lr-g", float, "LR", "generator Adam learning rate (dfgan 1e-4, others 2e-4)"),
        ("--lr-d", float, "LR", "discriminator Adam learning rate (dfgan 4e-4, others 2e-4)"),
        ("--beta1", float, "B", "Adam beta1 (dfgan 0.0, others 0.5)"),
    ]),
    ("schedule", [
        ("--preset", str, "{auto,cpu,gpu}", "sizes: cpu (ngf=ndf=32, batch 64) or gpu (ngf=ndf=64, batch 128); "
                                            "auto = gpu if a GPU is visible (default)"),
        ("--batch-size", int, "B", "images per step (preset cpu 64, gpu 128)"),
        ("--steps", int, "N", "total training steps (default: the preset's, cpu 5000, gpu 20000)"),
        ("--epochs", float, "E", "total epochs over the usable images instead of --steps"),
        ("--minutes", float, "M", "stop after M minutes of this invocation (with --steps: whichever comes first)"),
        ("--log-every", int, "N", "steps between progress lines (preset cpu 50, gpu 100)"),
        ("--sample-every", int, "N", "steps between sample grids (preset cpu 500, gpu 1000)"),
        ("--ckpt-every", int, "N", "steps between checkpoints (preset cpu 500, gpu 1000)"),
        ("--keep-checkpoints", int, "N", "checkpoints to keep (default 3)"),
    ]),
    ("run", [
        ("--run-dir", str, "DIR", "parent folder of the numbered run folders (default runs/)"),
        ("--seed", int, "S", "seed for weights, data order and noise (default 0)"),
        ("--deterministic", "flag", None, "bit-identical reruns (TF op determinism; slower)"),
        ("--strategy", str, "{auto,none,mirrored,multiworker}", "tf.distribute: mirrored = every GPU of this host; "
                                                              "multiworker = the hosts in TF_CONFIG; auto (default) = "
                                                              "multiworker if TF_CONFIG is set, mirrored on 2+ GPUs, "
                                                              "else none. Same training as one device at --batch-size"),
        ("--mixed-precision", str, "{auto,on,bf16,off}", "on: mixed_float16; bf16: mixed_bfloat16; auto (default): "
                                                        "float16 on a GPU, bf16 on a CPU with AVX512-BF16/AMX, else off"),
    ]),
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_gan.py", description=__doc__.split("\n\n")[0], epilog="examples:\n" +
                                EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    for group_name, flags in FLAGS:
        group = p.add_argument_group(group_name)
        for flag, typ, metavar, help_text in flags:
            if typ == "flag":
                group.add_argument(flag, action="store_true", default=None, help=help_text)
            else:
                group.add_argument(flag, type=typ, metavar=metavar, default=None, help=help_text)
    g = p.add_argument_group("control")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue a run at its last checkpoint (same options, cache, "
                                                       "optimizer and RNG state); only schedule options and --lr-g/--lr-d may change")
    g.add_argument("--dry-run", action="store_true", help="print the resolved config as JSON and exit")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="any other config field, e.g. --set magp_weight=1 --set shift_px=2 (unknown keys are errors)")
    return p


def overrides_from_args(args) -> dict:
    from gan.config import parse_set

    skip = {"resume", "dry_run", "set"}
    given = {k: v for k, v in vars(args).items() if v is not None and k not in skip}
    return {**given, **parse_set(args.set)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = overrides_from_args(args)

    import dataclasses

    import tensorflow as tf

    from gan.archs import get_arch
    from gan.config import resolve, resume_config
    from gan.data import read_cache
    from gan.run_dir import load_config

    if args.resume:
        saved = load_config(args.resume)
        data = read_cache(overrides.get("embeddings") or saved.embeddings,
                          need_vectors=not args.dry_run and get_arch(saved.arch).reads == "vectors")
        cfg = resume_config(saved, overrides, data.info, args.resume)
    else:
        cfg = resolve(overrides, gpu_available=bool(tf.config.list_physical_devices("GPU")))
        data = read_cache(cfg.embeddings, need_vectors=not args.dry_run and get_arch(cfg.arch).reads == "vectors")
        cfg = dataclasses.replace(cfg, cache=data.info)
    if args.dry_run:
        print(cfg.to_json())
        return 0
    from gan.loop import train

    try:
        train(cfg, data, resume_dir=args.resume)
    except KeyboardInterrupt:  # the loop saved a checkpoint and printed how to resume
        return 130
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
