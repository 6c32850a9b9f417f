"""What a trained discriminator reads in the text: on real synthetic flowers, does D score the true caption above
the same caption with one word swapped (the petal count, the centre colour, the petal colour or the shape), and
with the petal and centre colours exchanged (binding: only flowers whose two colours are yellow and white, the
colours both palettes have)?

    python bench/d_swaps.py --runs kl05=runs/00001-synthetic-flowers-minilm
    python bench/d_swaps.py --runs a=RUN_A,b=RUN_B --checkpoint 5000 --images 800

Every image gets one template caption that names all four attributes with its true values, and four captions
each with one attribute swapped for another value (drawn at random); a yellow/white flower also the caption with
its two colours exchanged, once in that template and once in one that names the centre colour first ("the white
center of this flower is surrounded by five round yellow petals"): a D that binds by word order wins only the
first. For an arch that reads words (dfgan-words) D gets each caption's token states too. Per attribute: how often D(image, true) >
D(image, swapped) ("win": 0.5 is a D blind to that word) and the mean logit gap. For the petal count, also the
mean logit of images with count a (rows) under captions naming count b (columns), double-centred (the row and
column means removed): what is left is the image-text interaction, the part of D that a generator's gradient
sees; a caption word that raises every image's score alike (a bias) drops out there.
The run's own cache encodes the captions (its encoder for the ones it does not hold). Labels are used here only,
to write the captions. Output: the tables on stdout and in bench/results/d-swaps-<date>[-NAME].md; the numbers depend on
the checkpoint only, not on the machine (up to float rounding).
"""
from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from tools.errors import UserError, run_cli  # noqa: E402
from tools.evaluation.real_data import ATTRIBUTE_VALUES, ATTRIBUTES  # noqa: E402
from tools.synthetic import spec  # noqa: E402

BATCH = 200  # images per D forward pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench/d_swaps.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="NAME=RUN_DIR,... trained runs (dfgan or stackgan) to compare")
    p.add_argument("--checkpoint", type=int, default=None, help="step of every run (default: each run's latest)")
    p.add_argument("--data", type=Path, default=REPO / "data" / "synthetic-flowers",
                   help="the synthetic-flowers folder with attributes.jsonl (default: %(default)s)")
    p.add_argument("--images", type=int, default=800, help="real images judged (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--name", default="", help="suffix of the results file, d-swaps-<date>-NAME.md (default: none), so "
                                              "a second measurement on one day does not overwrite the first")
    return p.parse_args(argv)


def parse_runs(text: str) -> list[tuple[str, Path]]:
    runs = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--runs {item!r}: expected NAME=RUN_DIR, e.g. kl05=runs/00001-synthetic-flowers-minilm")
        if not (Path(path) / "config.json").is_file():
            raise UserError(f"--runs {name}={path}: no config.json there; pass a run folder made by train_gan.py")
        runs.append((name, Path(path)))
    if not runs:
        raise UserError("--runs: give at least one NAME=RUN_DIR")
    return runs


def caption(values, centre_first: bool = False) -> str:
    """One template naming all four attributes; values in ATTRIBUTES order (petal colour, centre, count, shape).
    centre_first: a template that names the centre colour first (the synthetic captions' template 6)."""
    petal, centre, count, shape = values
    if centre_first:
        return f"the {centre} center of this flower is surrounded by {spec.COUNT_WORDS[count]} {shape} {petal} petals"
    return f"this flower has {spec.COUNT_WORDS[count]} {shape} {petal} petals and a {centre} center"


def label_caption(row, centre_first: bool = False) -> str:
    """The template caption of one label row (ATTRIBUTE_VALUES indices in ATTRIBUTES order)."""
    return caption([ATTRIBUTE_VALUES[a][v] for a, v in zip(ATTRIBUTES, row)], centre_first)


def swapped_captions(labels: np.ndarray, rng: np.random.Generator) -> tuple[list[str], dict[str, list[str]]]:
    """labels int [N, 4] (ATTRIBUTE_VALUES indices) -> the true captions and, per attribute, the captions with that
    attribute's value replaced by another one drawn uniformly."""
    true, swaps = [], {a: [] for a in ATTRIBUTES}
    for row in labels:
        values = [ATTRIBUTE_VALUES[a][v] for a, v in zip(ATTRIBUTES, row)]
        true.append(caption(values))
        for k, a in enumerate(ATTRIBUTES):
            others = [v for v in ATTRIBUTE_VALUES[a] if v != values[k]]
            swaps[a].append(caption([*values[:k], others[rng.integers(len(others))], *values[k + 1:]]))
    return true, swaps


def exchanged_captions(labels: np.ndarray, centre_first: bool = False) -> tuple[np.ndarray, list[str]]:
    """labels int [N, 4] -> (mask [N]: the flower's petal and centre colours differ and each could be the other's,
    i.e. yellow and white; the captions with the two colours exchanged, the true caption where mask is False)."""
    both = set(spec.PETAL_COLORS) & set(spec.CENTER_COLORS)  # colours either part may have: yellow, white
    values = [[ATTRIBUTE_VALUES[a][v] for a, v in zip(ATTRIBUTES, row)] for row in labels]
    mask = np.array([v[0] in both and v[1] in both and v[0] != v[1] for v in values], bool)
    return mask, [caption([v[1], v[0], *v[2:]] if m else v, centre_first) for v, m in zip(values, mask)]


def win_rate(true_logits: np.ndarray, swapped_logits: np.ndarray) -> dict:
    """How often D prefers the true caption, and by how much on average."""
    gap = np.asarray(true_logits, np.float64) - np.asarray(swapped_logits, np.float64)
    if gap.size == 0:  # no image to judge (e.g. no yellow/white flower among a few images)
        return {"win": float("nan"), "gap": float("nan")}
    return {"win": float(np.mean(gap > 0)), "gap": float(np.mean(gap))}


def interaction(mean_logits: np.ndarray) -> np.ndarray:
    """[V, V] mean logit (rows: the value the images show, columns: the value the caption names) with its row and
    column means removed: the image-text interaction (every row and column of the result sums to 0)."""
    m = np.asarray(mean_logits, np.float64)
    return m - m.mean(0, keepdims=True) - m.mean(1, keepdims=True) + m.mean()


class Judge:
    """A run's trained D (encoder + head) and its cache, restored from one checkpoint, in float32."""

    def __init__(self, run_dir: Path, checkpoint: int | None):
        import tensorflow as tf

        from cache.reader import EmbeddingCache
        from gan.run_dir import find_checkpoint, load_config
        from gan.archs import get_arch
        from gan.inference import float32_policy
        from gan.trainer import build_trainer

        self.cfg = load_config(run_dir)
        if get_arch(self.cfg.arch).reads != "vectors":
            raise UserError(f"{run_dir}: a ta80 run reads raw captions through its own GRU; this bench reads cached "
                            "vectors (dfgan, stackgan)")
        with float32_policy():
            self.trainer = build_trainer(self.cfg)
        self.path = find_checkpoint(run_dir, checkpoint)
        step = tf.Variable(0, dtype=tf.int64)
        tf.train.Checkpoint(d_encoder=self.trainer.d_encoder, d_head=self.trainer.d_head, step=step) \
            .read(self.path).expect_partial()
        self.step = int(step.numpy())
        self.cache = EmbeddingCache.open(self.cfg.cache.path)
        self.words = get_arch(self.cfg.arch).words

    def logits(self, features: list, texts: list[str]) -> np.ndarray:
        """D's logit [N] of the images behind `features` (batches of BATCH, from features()) with texts[i] as image
        i's caption."""
        import tensorflow as tf

        if self.words:  # sentence vectors and token states of the cache's own encoder
            vectors, *words = self.cache.encode_tokens(texts)
        else:
            vectors, words = self.cache.encode(texts)[0], []
        vectors = vectors * self.trainer.d_text_scale  # what D reads in training
        part = lambda x, k: tf.constant(x[k * BATCH:(k + 1) * BATCH])  # noqa: E731
        return np.concatenate([self.trainer.discriminate(f, part(vectors, k), training=False,
                                                         words=tuple(part(w, k) for w in words)).numpy()
                               for k, f in enumerate(features)])

    def features(self, images: np.ndarray) -> list:
        import tensorflow as tf

        return [self.trainer.d_encoder(tf.constant(images[i:i + BATCH].astype(np.float32) / 127.5 - 1.0),
                                       training=False) for i in range(0, len(images), BATCH)]


def judge_run(judge: Judge, images: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    true, swaps = swapped_captions(labels, np.random.default_rng(seed))
    feats = judge.features(images)
    true_logits = judge.logits(feats, true)
    out = {a: win_rate(true_logits, judge.logits(feats, swaps[a])) for a in ATTRIBUTES}
    counts = ATTRIBUTE_VALUES["petal_count"]
    k = ATTRIBUTES.index("petal_count")
    by_caption = {}  # count named -> [N] logits of every image under "... {count} ..." (the rest true)
    for j, n in enumerate(counts):
        named = labels.copy()
        named[:, k] = j
        by_caption[n] = judge.logits(feats, [label_caption(row) for row in named])
    shown = labels[:, k]
    missing = [counts[i] for i in range(len(counts)) if not np.any(shown == i)]
    if missing:
        raise UserError(f"no image of the {len(labels)} drawn shows petal count {missing[0]}; use more --images")
    mean = np.array([[by_caption[n][shown == i].mean() for n in counts] for i in range(len(counts))])
    out["count_interaction"] = interaction(mean).round(4).tolist()
    mask, exchanged = exchanged_captions(labels)
    out["binding"] = {**win_rate(true_logits[mask], judge.logits(feats, exchanged)[mask]), "images": int(mask.sum())}
    # the same with the centre named first: a D that binds by word order ("the first colour is the petals'") loses here
    _, exchanged = exchanged_captions(labels, centre_first=True)
    true_first = judge.logits(feats, [label_caption(row, centre_first=True) for row in labels])
    out["binding_centre_first"] = win_rate(true_first[mask], judge.logits(feats, exchanged)[mask])
    out["step"], out["checkpoint"] = judge.step, judge.path
    return out


def report(results: dict[str, dict], n_images: int, data: Path) -> str:
    from bench.binding import portable
    from bench.machine import machine

    lines = [f"# What D reads in the text ({datetime.now(timezone.utc):%Y-%m-%d})", "",
             f"{n_images} real images of {portable(str(data))}, each with its true template caption and one caption per attribute "
             "with that word swapped; `python bench/d_swaps.py`. Machine (float rounding only): " + machine(),
             "", "## P(D(true) > D(one word swapped)) and the mean logit gap", "",
             "| run | step | " + " | ".join(ATTRIBUTES) + " | colours exchanged (binding) | binding, centre named first |",
             "|---|---:|" + "---:|" * (len(ATTRIBUTES) + 2)]
    for name, r in results.items():
        cells = [f"{r[a]['win']:.3f} ({r[a]['gap']:+.2f})" for a in ATTRIBUTES]
        cells.append(f"{r['binding']['win']:.3f} ({r['binding']['gap']:+.3f}; {r['binding']['images']} images)")
        first = r["binding_centre_first"]
        cells.append(f"{first['win']:.3f} ({first['gap']:+.3f})")
        lines.append(f"| {name} | {r['step']} | " + " | ".join(cells) + " |")
    counts = ATTRIBUTE_VALUES["petal_count"]
    lines += ["", "## Petal count: image-text interaction (rows: count shown, columns: count named; double-centred)",
              "", "A D that matches counts has its largest value on the diagonal of each row.", ""]
    for name, r in results.items():
        lines += [f"**{name}**", "", "| shown \\ named | " + " | ".join(map(str, counts)) + " |",
                  "|---|" + "---:|" * len(counts)]
        lines += [f"| {c} | " + " | ".join(f"{v:+.2f}" for v in row) + " |"
                  for c, row in zip(counts, r["count_interaction"])]
        diag = np.trace(np.asarray(r["count_interaction"]))
        lines += ["", f"diagonal sum {diag:+.2f} (0 for a D blind to the count word)", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    from tools.evaluation.real_data import load_labelled_images

    args = parse_args(argv)
    runs = parse_runs(args.runs)
    if args.images < 8:
        raise UserError(f"--images {args.images}: use at least 8 (every count needs images)")
    images, labels = load_labelled_images(args.data, limit=args.images, seed=args.seed)
    results = {}
    for name, run in runs:
        results[name] = judge_run(Judge(run, args.checkpoint), images, labels, args.seed)
        print(f"{name}: " + "  ".join(f"{a} {results[name][a]['win']:.3f}" for a in ATTRIBUTES))
    text = report(results, len(images), args.data)
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"d-swaps-{datetime.now(timezone.utc):%Y-%m-%d}" + (f"-{args.name}" if args.name else "")
    out = args.results / f"{stem}.md"
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
