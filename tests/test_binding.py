"""The binding metric (tools/evaluation/binding.py): golden scores, real renders, a sentence-blind generator, and
tools/evaluate.py drawing both members of a pair with the same noise."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tools.errors import UserError
from tools.evaluation.binding import (DEFAULT_PAIRS, binding_scores, judge_colours, load_swap_pairs, real_images,
                                      table_rows)

Y, W = "yellow", "white"
# petal palette indices: yellow 2, white 3; centre palette indices: yellow 0, white 3
ROWS = [{"id": "p1a", "pair": "p1", "member": "a", "caption": "yellow petals, a white center", "petal_color": Y,
         "center_color": W},
        {"id": "p1b", "pair": "p1", "member": "b", "caption": "white petals, a yellow center", "petal_color": W,
         "center_color": Y},
        {"id": "p2a", "pair": "p2", "member": "a", "caption": "the White center is ringed by yellow petals",
         "petal_color": Y, "center_color": W},
        {"id": "p2b", "pair": "p2", "member": "b", "caption": "the yellow center is ringed by white petals",
         "petal_color": W, "center_color": Y, "in_training": True}]


def test_binding_scores_golden():
    # (petal, centre) per image, K = 2 samples per caption; member a and b of a pair share sample k
    shown = [(2, 3), (2, 0),   # p1a: right | centre wrong
             (3, 0), (2, 3),   # p1b: right | the partner's colours (swapped)
             (2, 3), (2, 3),   # p2a: right | right
             (2, 3), (3, 0)]   # p2b: swapped | right
    pred = {"petal_color": np.array([p for p, _ in shown]), "center_color": np.array([c for _, c in shown])}
    s = binding_scores(pred, ROWS, samples=2)
    assert s == {"accuracy": 5 / 8, "pair_accuracy": 2 / 4, "petal_color": 6 / 8, "center_color": 5 / 8,
                 "swapped": 2 / 8, "alike": 1 / 4, "held_out": 2 / 4, "petal_first": 2 / 4, "centre_first": 3 / 4,
                 "n_pairs": 2, "n_held_out": 1, "n_centre_first": 2, "samples": 2}
    with pytest.raises(ValueError, match="want 4 captions x 3 samples"):
        binding_scores(pred, ROWS, samples=3)


@pytest.fixture(scope="module")
def pairs():
    rows = load_swap_pairs(DEFAULT_PAIRS)
    return rows, real_images(rows)


def test_real_flowers_bind_and_a_sentence_blind_generator_does_not(pairs):
    rows, real = pairs
    perfect = binding_scores(judge_colours(real, pixel=True), rows, 1)
    assert (perfect["accuracy"], perfect["pair_accuracy"], perfect["swapped"], perfect["alike"], perfect["held_out"]) == \
        (1.0, 1.0, 0.0, 0.0, 1.0)
    assert (perfect["n_pairs"], perfect["n_held_out"]) == (118, 92)
    # a generator that cannot tell the members apart draws member a's flower for both: one of two right, no pair
    blind = real.copy()
    blind[1::2] = real[0::2]
    s = binding_scores(judge_colours(blind, pixel=True), rows, 1)
    assert (s["accuracy"], s["pair_accuracy"], s["swapped"], s["alike"], s["petal_color"], s["center_color"]) == \
        (0.5, 0.0, 0.5, 1.0, 0.5, 0.5)
    labels = [label for label, _, _ in table_rows({**s, "real": perfect})]
    assert labels[0] == "binding accuracy (swap pairs)" and len(labels) == 9
    assert (perfect["n_centre_first"], perfect["petal_first"], perfect["centre_first"]) == (40, 1.0, 1.0)


def _write(tmp_path, rows) -> str:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_a_bad_pairs_file_is_refused_in_one_line_naming_the_line(tmp_path):
    with pytest.raises(UserError, match=r"pairs.jsonl:2: pair 'p1' does not swap"):
        load_swap_pairs(_write(tmp_path, [ROWS[0], {**ROWS[1], "center_color": "brown"}]))
    with pytest.raises(UserError, match=r"pairs.jsonl:2: member 'a' of pair 'p2'.*expected 'b'"):
        load_swap_pairs(_write(tmp_path, [ROWS[0], ROWS[2]]))
    with pytest.raises(UserError, match=r"pairs.jsonl:1: field 'petal_color'.*allowed: red"):
        load_swap_pairs(_write(tmp_path, [{**ROWS[0], "petal_color": "green"}, ROWS[1]]))
    with pytest.raises(UserError, match=r"pairs.jsonl:1: missing field 'caption'"):
        load_swap_pairs(_write(tmp_path, [{k: v for k, v in ROWS[0].items() if k != "caption"}, ROWS[1]]))
    with pytest.raises(UserError, match="3 lines; want a positive even number"):
        load_swap_pairs(_write(tmp_path, ROWS[:3]))


def test_evaluate_run_draws_both_members_with_the_same_noise(tmp_path):
    """Through tools/evaluate.py --run (the generation path every arch uses): a pair file whose members share one
    text must give pixel-identical images for a and b, so no (pair, sample) can be right for both."""
    import train_gan
    from cache.writer import build_cache
    from embeddings.registry import get_encoder
    from tools.datasets import load_dataset
    from tools.evaluate import main
    from tools.images import load_rgb
    from tools.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "sf", n=16, seed=5, n_test=4, progress=False)
    cache = build_cache(load_dataset(data), get_encoder("tfidf"), tmp_path / "sf-tfidf.h5", log=lambda *_: None)
    train_gan.main(["--embeddings", str(cache), "--run-dir", str(tmp_path / "runs"), "--ngf", "8", "--ndf", "8",
                    "--batch-size", "4", "--z-dim", "8", "--c-dim", "8", "--preset", "cpu", "--steps", "2",
                    "--ckpt-every", "2", "--sample-every", "2"])
    (run,) = (tmp_path / "runs").iterdir()
    text = "this flower has five round yellow petals and a white center"
    same = [{**r, "caption": text} for r in ROWS]
    assert main(["--run", str(run), "--pixel", "--swap-pairs", _write(tmp_path, same), "--swap-samples", "3"]) == 0
    b = json.loads((run / "pixel_check.json").read_text())["binding"]
    folder = run / "eval" / "step_000002" / "swap_pairs"
    for pair in ("p1", "p2"):
        for k in range(3):
            np.testing.assert_array_equal(load_rgb(folder / f"inference_{pair}a_{k}.png", 64),
                                          load_rgb(folder / f"inference_{pair}b_{k}.png", 64))
    assert (b["pair_accuracy"], b["alike"], b["n_pairs"], b["samples"]) == (0.0, 1.0, 2, 3)
    assert b["real"]["accuracy"] == 1.0 and b["judge"] == "pixel check"
    assert b["accuracy"] <= 0.5  # identical images: at most one member of each (pair, sample) right
    with pytest.raises(UserError, match="--swap-samples 0: must be >= 1"):
        main(["--run", str(run), "--pixel", "--swap-samples", "0"])
