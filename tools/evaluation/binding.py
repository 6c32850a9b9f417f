"""The binding metric: on attribute-swap caption pairs, does each image put each colour on the part its caption names?

    rows = load_swap_pairs(DEFAULT_PAIRS)                     # bench/data/swap_pairs.jsonl (tools/synthetic/swap_pairs.py)
    generate_swap_images(run_dir, out_dir, rows, samples=4)   # both members of a pair drawn with the same noise
    images = read_swap_images(out_dir, rows, samples=4)       # uint8 [M*K, 64, 64, 3], member m's k-th at m*K + k
    scores = binding_scores(judge_colours(images, clf), rows, samples=4)

A pair is two captions that exchange the petal and the centre colour ("yellow petals and a white center" / "white
petals and a yellow center"). A sentence vector that cannot say which colour belongs to which part gives both
nearly the same input, so a generator reading it can at best draw one of them right. Scores, each over images:
  accuracy       both colours right (the binding accuracy); chance 1/28 for a judge guessing uniformly, at most
                 0.5 for a generator that draws the same flower for both members of every pair
  pair_accuracy  both images of a (pair, noise sample) right: the pair told apart; 0 for such a generator
  petal_color, center_color   each colour alone right
  swapped        the image shows the partner's colours (petals and centre exchanged)
  alike          member a's and member b's image of a (pair, noise sample) show the same two colours
  held_out       accuracy over the pairs neither of whose captions is a training caption
The judge is the shared attribute classifier (or, with tools/evaluate.py --pixel, the pixel check).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from tools.errors import UserError
from tools.evaluation.real_data import ATTRIBUTE_VALUES, value_index

DEFAULT_PAIRS = Path(__file__).resolve().parents[2] / "bench" / "data" / "swap_pairs.jsonl"
SWAP = ("petal_color", "center_color")
DEFAULT_SAMPLES = 4  # noise samples per caption; member a and b of a pair share each one
SUBFOLDER = "swap_pairs"  # beside the test-caption images of tools/evaluate.py --run


def load_swap_pairs(path: str | Path) -> list[dict]:
    """Rows of a swap-pair JSONL file, checked: members a then b of each pair, colours exchanged between them."""
    from tools.datasets.common import jsonl_rows

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--swap-pairs {path}: file not found (make it with python -m tools.synthetic.swap_pairs)")
    rows = []
    for n, row in jsonl_rows(path):
        for key in ("id", "pair", "member", "caption", *SWAP):
            if key not in row:
                raise UserError(f"{path}:{n}: missing field {key!r}; each line needs id, pair, member, caption, "
                                "petal_color, center_color")
        for a in SWAP:
            try:
                value_index(a, row[a])
            except UserError as e:
                raise UserError(f"{path}:{n}: field {a!r}: {e}") from None
        want = "a" if len(rows) % 2 == 0 else "b"
        if row["member"] != want or (want == "b" and row["pair"] != rows[-1]["pair"]):
            raise UserError(f"{path}:{n}: member {row['member']!r} of pair {row['pair']!r}; each pair is two "
                            f"consecutive lines, member \"a\" then \"b\" of the same pair (expected {want!r} here)")
        if want == "b" and (row["petal_color"], row["center_color"]) != (rows[-1]["center_color"], rows[-1]["petal_color"]):
            raise UserError(f"{path}:{n}: pair {row['pair']!r} does not swap: member b must name member a's centre "
                            "colour for its petals and a's petal colour for its centre")
        rows.append(row)
    if not rows or len(rows) % 2:
        raise UserError(f"{path}: {len(rows)} lines; want a positive even number (two per pair)")
    return rows


def pairs_key(path: str | Path) -> str:
    """sha256 of the pair file's bytes: what a stored binding score was measured on."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def centre_named_first(row: dict) -> bool:
    """Whether the caption names the centre colour before the petal colour ("the white center of this flower is
    surrounded by yellow petals"), as whole words; False when either is not found."""
    at = {a: re.search(rf"\b{re.escape(row[a])}\b", row["caption"], re.IGNORECASE) for a in SWAP}
    return bool(at["petal_color"] and at["center_color"] and at["center_color"].start() < at["petal_color"].start())


def binding_scores(predicted: dict[str, np.ndarray], rows: list[dict], samples: int) -> dict:
    """Pure: the binding scores from predicted colours.

    predicted: {"petal_color": int [M*K], "center_color": int [M*K]} class indices (ATTRIBUTE_VALUES order; -1: the
    judge read no colour); image r belongs to rows[r // K], noise sample r % K; rows alternate members a, b of a pair.
    """
    m, k = len(rows), samples
    if any(np.size(predicted[a]) != m * k for a in SWAP):
        raise ValueError(f"want {m} captions x {k} samples of predictions, got {[np.size(predicted[a]) for a in SWAP]}")
    want = {a: np.array([value_index(a, r[a]) for r in rows]) for a in SWAP}  # [M]
    got = {a: np.asarray(predicted[a]).reshape(m, k) for a in SWAP}  # [M, K]
    right = {a: got[a] == want[a][:, None] for a in SWAP}  # [M, K]
    both = right["petal_color"] & right["center_color"]  # [M, K]
    # the partner's binding: this caption's centre colour on the petals and its petal colour in the centre
    partner = {"petal_color": np.array([value_index("petal_color", r["center_color"]) for r in rows]),
               "center_color": np.array([value_index("center_color", r["petal_color"]) for r in rows])}  # [M]
    swapped = (got["petal_color"] == partner["petal_color"][:, None]) & (got["center_color"] == partner["center_color"][:, None])
    pair_both = both[0::2] & both[1::2]  # [P, K]: member a and b of (pair, k), same noise
    alike = (got["petal_color"][0::2] == got["petal_color"][1::2]) & (got["center_color"][0::2] == got["center_color"][1::2])
    held = np.array([not (a.get("in_training") or b.get("in_training")) for a, b in zip(rows[0::2], rows[1::2])])
    # by word order: a generator that binds by position ("the first colour is the petals'") fails the centre-first ones
    first = np.array([centre_named_first(r) for r in rows])  # [M]
    return {
        "accuracy": float(both.mean()), "pair_accuracy": float(pair_both.mean()),
        "petal_color": float(right["petal_color"].mean()), "center_color": float(right["center_color"].mean()),
        "swapped": float(swapped.mean()), "alike": float(alike.mean()),
        "held_out": float(both.reshape(-1, 2 * k)[held].mean()) if held.any() else None,  # [P, 2K] rows of pairs
        "petal_first": float(both[~first].mean()) if (~first).any() else None,
        "centre_first": float(both[first].mean()) if first.any() else None,
        "n_pairs": m // 2, "n_held_out": int(held.sum()), "n_centre_first": int(first.sum()), "samples": k,
    }


def judge_colours(images: np.ndarray, classifier=None, pixel: bool = False) -> dict[str, np.ndarray]:
    """{attribute: int [N]} petal and centre colour of uint8 [N, 64, 64, 3] images, read by the attribute
    classifier (default: the shared one) or, with pixel=True, by the pixel check."""
    if pixel:
        from tools.evaluation.pixel_check import pixel_colours

        return pixel_colours(images)
    from tools.evaluation.attribute_classifier import ATTRIBUTES, load_or_train

    pred = (classifier or load_or_train()).predict(images)  # [N, 4]
    return {a: pred[:, ATTRIBUTES.index(a)] for a in SWAP}


def real_images(rows: list[dict], seed: int = 0) -> np.ndarray:
    """uint8 [M, 64, 64, 3]: one real rendered flower per caption (the reference a perfect generator reaches);
    the attributes a caption leaves out are drawn at random. Kept per process (a comparison evaluates many runs)."""
    key = (json.dumps(rows, sort_keys=True), seed)
    if key not in _REAL:
        _REAL.clear()
        _REAL[key] = _render(rows, seed)
    return _REAL[key]


_REAL: dict = {}


def _render(rows: list[dict], seed: int) -> np.ndarray:
    from tools.synthetic.render import render_flower, sample_attributes

    out = np.zeros((len(rows), 64, 64, 3), np.uint8)
    for i, row in enumerate(rows):
        rng = np.random.default_rng([seed, 3, i])
        attrs = {**sample_attributes(rng), **{a: row[a] for a in ATTRIBUTE_VALUES if a in row}}
        out[i] = render_flower(attrs, rng)
    return out


def generate_swap_images(run_dir, out_dir: Path, rows: list[dict], samples: int = DEFAULT_SAMPLES, seed: int = 0,
                         **options):
    """Draw `samples` images per caption with the run (tools.generation.generate: the run's own encoder and arch).
    Members a and b are two calls with one seed, so the k-th image of a and of b share their noise.
    options: GenerationRequest fields (checkpoint, weights, ca_noise). Returns the GenerationReports."""
    from tools.generation import GenerationRequest, generate

    reports = []
    for member in "ab":
        part = [r for r in rows if r["member"] == member]
        reports.append(generate(GenerationRequest(
            run_dir=Path(run_dir), out_dir=Path(out_dir), ids=[r["id"] for r in part],
            texts=[r["caption"] for r in part], n_per_caption=samples, seed=seed, fmt="png", progress=False,
            **options)))
    return reports


def read_swap_images(folder: Path, rows: list[dict], samples: int) -> np.ndarray:
    """uint8 [M*K, 64, 64, 3] from folder/inference_{id}[_{k}].png, in binding_scores' order."""
    from tools.generation import image_name
    from tools.images import load_rgb

    paths = [Path(folder) / image_name(r["id"], k if samples > 1 else None, "png")
             for r in rows for k in range(samples)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{folder}: {len(missing)} swap-pair images missing (e.g. {missing[0].name}); draw them with "
                        "tools/evaluate.py --run RUN, or leave out --swap-pairs")
    return np.stack([load_rgb(p, 64) for p in paths])


def binding_report(folder: Path, pairs_path: Path, samples: int, classifier=None, pixel: bool = False) -> dict:
    """The scores of the images in `folder`, the same scores of real renders (one per caption), and what was read."""
    rows = load_swap_pairs(pairs_path)
    scores = binding_scores(judge_colours(read_swap_images(folder, rows, samples), classifier, pixel), rows, samples)
    real = binding_scores(judge_colours(real_images(rows), classifier, pixel), rows, 1)
    return {**scores, "real": real, "judge": "pixel check" if pixel else "attribute classifier",
            "pairs": str(pairs_path), "pairs_sha256": pairs_key(pairs_path), "images": str(folder)}


def table_rows(b: dict) -> list[tuple[str, float | None, float | None]]:
    """(label, value, real reference) rows of a binding report, for the evaluation's tables."""
    real = b.get("real") or {}
    return [("binding accuracy (swap pairs)", b["accuracy"], real.get("accuracy")),
            ("binding, both members of a pair", b["pair_accuracy"], real.get("pair_accuracy")),
            ("binding, petal colour", b["petal_color"], real.get("petal_color")),
            ("binding, centre colour", b["center_color"], real.get("center_color")),
            ("binding, partner's colours shown", b.get("swapped"), real.get("swapped")),
            ("binding, both members alike", b.get("alike"), real.get("alike")),
            ("binding, held-out pairs only", b["held_out"], real.get("held_out")),
            ("binding, petal colour named first", b.get("petal_first"), real.get("petal_first")),
            ("binding, centre colour named first", b.get("centre_first"), real.get("centre_first"))]
