"""Evaluate generated images against their captions: attribute accuracy, FID, IS, R-precision, diversity.

    python tools/evaluate.py --run runs/00001-synthetic-flowers-minilm
    python tools/evaluate.py --images out/test --dataset data/synthetic-flowers --cache cache/sf-minilm.h5
    python tools/evaluate.py --run runs/demo/00001-demo-flowers-minilm --pixel --n-per-caption 1   # seconds

--run generates --n-per-caption images for each held-out test caption of the run's dataset (with the run's
own encoder and latest checkpoint) into RUN_DIR/eval/step_XXXXXX/, evaluates them, and writes
RUN_DIR/metrics.json (for a run trained with --set aux_class also its class head's accuracy on real held-out and on
the generated images: tools/evaluation/aux_accuracy.py). --images evaluates a folder you generated yourself. On a
synthetic-flowers dataset --run also draws the attribute-swap caption pairs (bench/data/swap_pairs.jsonl;
--swap-pairs) into .../swap_pairs/ and reports binding accuracy: both colours on the part the caption names
(tools/evaluation/binding.py).

Reads `inference_{ID}.png|jpg` (one image per caption) or `inference_{ID}_{k}.png|jpg` (k-th noise sample),
matches ID to the captions file (JSONL rows {id, caption, + the attributes the caption names}, like the
synthetic set's test_captions.jsonl; rows without attributes are parsed from their text), writes
metrics.json and prints a table. The attribute classifier, and with --cache (or --dataset) the R-precision
matchers, train on first use (~2-5 min each on 2 cores) and are cached under cache/. --pixel reads only the
petal and centre colour from the pixels of synthetic flowers (tools/evaluation/pixel_check.py: nothing to train)
and writes pixel_check.json.

Real reference: a synthetic-flowers dataset's labelled images; for any other dataset its own images (the
cache's images/path, read through the shared image cache), with the attribute rows left out. R-precision is
given by the dataset's shared judge (comparable across encoders) and by the cache's own matcher.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from gan.config import GENERATOR_WEIGHTS
from tools.errors import UserError, run_cli


EXAMPLES = """examples:
  # images made by generate.py for the synthetic set's 819 test captions, R-precision included
  python tools/evaluate.py --images out/test --dataset data/synthetic-flowers --cache cache/sf-minilm.h5

  # another captions file, metrics written elsewhere, InceptionV3 IS/FID from weights you downloaded
  python tools/evaluate.py --images out/k4 --captions my_captions.jsonl --out k4.json \\
      --inception-weights inception_v3_weights_tf_dim_ordering_tf_kernels.h5
"""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SAMPLE = re.compile(r"^(.+)_(\d+)$")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to evaluate")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, metavar="RUN_DIR", help="a train_gan.py run: generate for the dataset's test "
                     "captions and evaluate (metrics.json in the run folder)")
    src.add_argument("--images", type=Path, help="folder of inference_{ID}[_{k}].png|jpg files")
    g.add_argument("--checkpoint", type=int, help="with --run: checkpoint step (default: the latest)")
    g.add_argument("--weights", choices=GENERATOR_WEIGHTS, default="auto",
                   help="with --run: the EMA generator when the run kept one (auto, the default), or the raw "
                        "trained G (raw: the EMA ablation of the same run)")
    g.add_argument("--ca-noise", type=float, default=None, metavar="S", help="with --run: CA noise scale of "
                   "sampling, c = mu + S*sigma*eps(z) (default: the run's ca_noise; generate.py --help)")
    g.add_argument("--n-per-caption", type=int, default=2, help="with --run: noise samples per caption (default 2; "
                   "diversity needs >= 2)")
    g.add_argument("--captions", type=Path, help="JSONL {id, caption, named attributes} (default: DATASET/test_captions.jsonl)")
    g.add_argument("--dataset", type=Path, help="dataset folder: its images are the real reference (labelled when "
                   "it is a synthetic-flowers folder, whose test_captions.jsonl is then the default captions); "
                   "default: the cache's dataset, else the classifier's own held-out flowers")
    g.add_argument("--cache", type=Path, help="embedding cache (.h5) the GAN trained on: enables R-precision, and its "
                   "images are the real reference of a dataset without attribute labels")
    g.add_argument("--out", type=Path, help="metrics JSON to write (default: IMAGES/metrics.json)")
    o = p.add_argument_group("options")
    o.add_argument("--inception-weights", type=Path, help="InceptionV3 .h5 weights: adds IS/FID in InceptionV3 space")
    o.add_argument("--classifier-dir", type=Path, help="where the attribute classifier is cached (default cache/attribute_classifier)")
    o.add_argument("--matcher-dir", type=Path, help="where R-precision matchers are cached (default cache/matcher)")
    o.add_argument("--real-limit", type=int, default=2000, help="least real reference images drawn from the dataset; 2x the generated count when that is more (default 2000)")
    o.add_argument("--seed", type=int, default=0, help="seed of the real subset and R-precision candidates (default 0)")
    o.add_argument("--pixel", action="store_true",
                   help="synthetic flowers only: petal and centre colour read from the pixels (palette and geometry of "
                        "the set), no classifier or matcher to train: seconds; what make demo prints")
    o.add_argument("--swap-pairs", type=Path, metavar="FILE", help="attribute-swap caption pairs scored for binding "
                   "(default with --run on a synthetic-flowers dataset: bench/data/swap_pairs.jsonl; with --images "
                   "only when given, images read from IMAGES/swap_pairs/)")
    o.add_argument("--swap-samples", type=int, default=4, metavar="K", help="noise samples per swap-pair caption, "
                   "shared by both members of a pair (default 4)")
    o.add_argument("--no-binding", action="store_true", help="leave out the swap pairs and the binding rows")
    o.add_argument("--quick", action="store_true", help="leave out both R-precisions (their matchers train on first "
                                                        "use, minutes on a CPU): attributes, FID, IS, diversity only")
    return p.parse_args(argv)


def load_captions(path: Path) -> dict[str, dict]:
    """id (as str) -> row of a captions JSONL file."""
    from tools.datasets.common import jsonl_rows

    if not path.is_file():
        raise UserError(f"--captions {path}: file not found")
    rows = {}
    for n, row in jsonl_rows(path):
        if "id" not in row or "caption" not in row:
            raise UserError(f"{path}:{n}: a row needs \"id\" and \"caption\" keys, got {str(row)[:80]}")
        rows[str(row["id"])] = row
    return rows


def _canonical(caption_id: str) -> str:
    return str(int(caption_id)) if caption_id.isdigit() else caption_id


def load_generated(folder: Path, captions: dict[str, dict]) -> tuple[dict, list[str]]:
    """({id: uint8 [K, S, S, 3]}, names of files that match no caption id) from inference_* files: S is the files'
    own side when they are square and a multiple of 64 (a 128 or 256 px run), else 64 (Lanczos)."""
    import numpy as np

    from tools.images import load_rgb

    def load(path):
        rgb = load_rgb(path, None)
        square = rgb.shape[0] == rgb.shape[1] and rgb.shape[0] % 64 == 0
        return rgb if square else load_rgb(path, 64)

    if not folder.is_dir():
        raise UserError(f"--images {folder}: not a folder")
    found: dict[str, list[tuple[int, Path]]] = {}
    unmatched = []
    # generate.py writes integer ids zero-padded (inference_0001): match ids by their canonical form
    by_canon = {_canonical(cid): cid for cid in captions}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.stem.startswith("inference_"):
            continue
        key, k = path.stem[len("inference_"):], 0
        if _canonical(key) not in by_canon and (m := _SAMPLE.match(key)) and _canonical(m.group(1)) in by_canon:
            key, k = m.group(1), int(m.group(2))
        if _canonical(key) in by_canon:
            found.setdefault(by_canon[_canonical(key)], []).append((k, path))
        else:
            unmatched.append(path.name)
    if not found:
        raise UserError(f"--images {folder}: no inference_{{ID}}.png|jpg file whose ID is in the captions file "
                        f"({len(unmatched)} inference files with unknown ids)")
    images = {key: np.stack([load(p) for _, p in sorted(files)]) for key, files in found.items()}
    sizes = {im.shape[1] for im in images.values()}
    if len(sizes) > 1:
        raise UserError(f"--images {folder}: images of several sizes ({', '.join(map(str, sorted(sizes)))} px); "
                        "evaluate one run's images at a time")
    return images, unmatched


def generate_for_run(args) -> None:
    """--run: fill args.images/.dataset/.cache/.captions/.out from the run, generating the images first."""
    from cache.reader import EmbeddingCache
    from gan.run_dir import load_config
    from tools.generation import GenerationRequest, generate

    cfg = load_config(args.run)
    with EmbeddingCache.open(cfg.cache.path) as cache:
        root = Path(cache.dataset_root)
        test_ids, test_texts = cache.test_ids(), cache.test_texts()
    if args.captions is None and (root / "test_captions.jsonl").is_file():
        args.captions = root / "test_captions.jsonl"
    if args.captions is None:
        if not test_ids:
            raise UserError(f"--run {args.run}: its dataset {root} has no held-out test captions; "
                            "generate images yourself and use --images with --captions")
        args.captions = args.run / "eval" / "test_captions.jsonl"
        args.captions.parent.mkdir(parents=True, exist_ok=True)
        args.captions.write_text("".join(json.dumps({"id": i, "caption": t}) + "\n" for i, t in zip(test_ids, test_texts)))
    captions = load_captions(args.captions)
    if args.dataset is None and (root / "attributes.jsonl").is_file():
        args.dataset = root
    args.cache = args.cache or Path(cfg.cache.path)
    from gan.run_dir import find_checkpoint

    step = int(find_checkpoint(args.run, args.checkpoint).rsplit("-", 1)[-1])
    args.checkpoint = step  # the test captions and the swap pairs from one checkpoint, while training goes on
    noise = "" if args.ca_noise is None or args.ca_noise == cfg.ca_noise else f"_ca{args.ca_noise:g}"
    args.images = args.run / "eval" / (f"step_{step:06d}" + ("" if args.weights == "auto" else f"_{args.weights}")
                                       + noise)
    report = generate(GenerationRequest(
        run_dir=args.run, out_dir=args.images, ids=list(captions), texts=[r["caption"] for r in captions.values()],
        checkpoint=args.checkpoint, weights=args.weights, n_per_caption=args.n_per_caption, seed=args.seed,
        ca_noise=args.ca_noise, fmt="png"))
    print(report.summary())
    draw_swap_pairs(args)
    args.sampling = {"ca_noise": report.ca_noise, "weights": args.weights}
    args.out = args.out or args.run / ("pixel_check.json" if args.pixel else "metrics.json")


def draw_swap_pairs(args) -> None:
    """--run: the swap pairs' images into IMAGES/swap_pairs/ (default pairs on a synthetic-flowers dataset)."""
    from tools.evaluation.binding import DEFAULT_PAIRS, SUBFOLDER, generate_swap_images, load_swap_pairs

    synthetic = args.dataset is not None and (Path(args.dataset) / "attributes.jsonl").is_file()
    if args.swap_pairs is None and synthetic and DEFAULT_PAIRS.is_file():
        args.swap_pairs = DEFAULT_PAIRS
    if args.swap_pairs is None or args.no_binding:
        return
    for r in generate_swap_images(args.run, args.images / SUBFOLDER, load_swap_pairs(args.swap_pairs),
                                  args.swap_samples, args.seed, checkpoint=args.checkpoint, weights=args.weights,
                                  ca_noise=args.ca_noise):
        print(r.summary())


def pixel_report(images: dict, captions: dict, captions_path: Path, args) -> int:
    """--pixel: petal/centre colour accuracy from the pixels (tools/evaluation/pixel_check.py), table + JSON."""
    import numpy as np

    from tools.evaluation.pixel_check import ATTRIBUTES, pixel_accuracy
    from tools.evaluation.binding import table_rows as binding_rows
    from tools.evaluation.report import METRICS_VERSION, format_confusions, named_attributes

    from tools.evaluation.sizes import to_judge_size

    ids = [i for i in images if len(images[i])]
    stack = to_judge_size(np.concatenate([images[i] for i in ids]))  # 128 / 256 px: area-downsampled to 64
    named = [named_attributes(captions[i]) for i in ids for _ in range(len(images[i]))]
    if not any(n.get(a) is not None for n in named for a in ATTRIBUTES):
        raise UserError(f"--pixel: no caption in {captions_path} names a petal or centre colour; it reads synthetic "
                        "flowers only (their palette and geometry)")
    acc = pixel_accuracy(stack, named)
    metrics = {"metrics_version": METRICS_VERSION, "pixel_check": acc, "n_captions": len(ids), "n_images": len(stack),
               "images": str(args.images), "captions": str(captions_path)}
    chance = {"petal_color": 1 / 7, "center_color": 1 / 4}
    print("metric (pixel check)                   generated  chance")
    print("-" * 64)
    for a in ATTRIBUTES:
        v = acc[a]["accuracy"]
        print(f"{a + ' accuracy (n=' + str(acc[a]['count']) + ')':<38} {'-' if v is None else f'{v:9.3f}'}  {chance[a]:.2f}")
    for line in format_confusions(acc):
        print(line)
    if (binding := _binding(args)) is not None:
        metrics["binding"] = binding
        for label, value, real in binding_rows(binding):
            print(f"{label:<38} {'-' if value is None else f'{value:9.3f}'}  {real:.2f} real")
    print(f"{len(ids)} captions x {len(stack) / len(ids):g} samples; real flowers score 1.000 on this check")
    out = args.out or args.images / "pixel_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _binding(args) -> dict | None:
    """The binding scores of IMAGES/swap_pairs/ (tools/evaluation/binding.py), or None when not asked for."""
    if args.swap_pairs is None or args.no_binding:
        return None
    from tools.evaluation.binding import SUBFOLDER, binding_report

    clf = None
    if not args.pixel:
        from tools.evaluation.attribute_classifier import load_or_train

        clf = load_or_train(args.classifier_dir)
    return binding_report(args.images / SUBFOLDER, args.swap_pairs, args.swap_samples, clf, pixel=args.pixel)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.swap_samples < 1:
        raise UserError(f"--swap-samples {args.swap_samples}: must be >= 1 (noise samples per swap-pair caption)")
    if args.run is not None:
        generate_for_run(args)
    captions_path = args.captions or (args.dataset / "test_captions.jsonl" if args.dataset else None)
    if captions_path is None:
        raise UserError("give --captions FILE (JSONL with id, caption, named attributes) or --dataset DIR")
    captions = load_captions(captions_path)
    images, unmatched = load_generated(args.images, captions)
    if unmatched:
        print(f"skipped {len(unmatched)} files whose id is not in {captions_path} (e.g. {unmatched[0]})")
    if args.pixel:
        return pixel_report(images, captions, captions_path, args)
    from tools.evaluation.report import evaluate_images, format_table

    metrics = evaluate_images(
        images, captions, args.dataset, args.cache, classifier_dir=args.classifier_dir, matcher_dir=args.matcher_dir,
        inception_weights=args.inception_weights, real_limit=args.real_limit, seed=args.seed,
        r_precision=not args.quick,
    )
    metrics["images"], metrics["captions"] = str(args.images), str(captions_path)
    if args.run is not None:
        metrics["sampling"] = args.sampling  # how generate_for_run drew the images
        from tools.evaluation.aux_accuracy import head_accuracy

        aux = head_accuracy(args.run, args.checkpoint, images, captions)  # None: the run has no class head
        if aux is not None:
            metrics["aux_classifier"] = aux
    if (binding := _binding(args)) is not None:
        metrics["binding"] = binding
    out = args.out or args.images / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(format_table(metrics))
    if "aux_classifier" in metrics:
        from tools.evaluation.aux_accuracy import format_lines

        print("\n".join(format_lines(metrics["aux_classifier"])))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
