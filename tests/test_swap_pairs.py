"""The swap-pair caption set (bench/data/swap_pairs.jsonl, tools/synthetic/swap_pairs.py): each pair really swaps."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tools.synthetic import captions as C
from tools.synthetic import spec
from tools.synthetic import swap_pairs as S

PAIRS_FILE = Path(__file__).resolve().parents[1] / "bench" / "data" / "swap_pairs.jsonl"


@pytest.fixture(scope="module")
def rows():
    return [json.loads(line) for line in PAIRS_FILE.read_text(encoding="utf-8").splitlines()]


def _named(row: dict) -> dict:
    return {a: row[a] for a in spec.ATTRIBUTES if a in row}


def test_every_caption_names_exactly_the_attributes_its_row_records(rows):
    assert len(rows) == 236 and len({r["id"] for r in rows}) == 236
    for r in rows:
        assert C.parse_caption(r["caption"]) == _named(r), r["id"]
        assert tuple(_named(r)) == C.template_attributes(C.TEMPLATES[r["template"]])


def test_both_members_of_each_pair_swap_petal_and_centre_colour_and_nothing_else(rows):
    for a, b in zip(rows[::2], rows[1::2]):
        assert (a["pair"], a["member"], b["pair"], b["member"]) == (a["pair"], "a", a["pair"], "b")
        pa, pb = C.parse_caption(a["caption"]), C.parse_caption(b["caption"])  # re-derived from the text
        assert pa["petal_color"] == pb["center_color"] != pa["center_color"] == pb["petal_color"]
        assert {k: v for k, v in pa.items() if k not in S.SWAP} == {k: v for k, v in pb.items() if k not in S.SWAP}
        ta, tb = a["caption"].split(), b["caption"].split()
        diff = [(x, y) for x, y in zip(ta, tb) if x != y]
        assert len(ta) == len(tb) and sorted(diff) == sorted({(pa["petal_color"], pb["petal_color"]),
                                                              (pb["petal_color"], pa["petal_color"])}), a["pair"]


def test_only_yellow_and_white_can_swap_and_every_template_naming_both_colours_is_covered(rows):
    assert S.swappable_colours() == ("yellow", "white")
    # a count or a shape belongs to the petals alone: colour is the only attribute two parts share
    assert [a for a in S.PART_ATTRIBUTES["petals"] if a in S.PART_ATTRIBUTES["centre"]] == []
    templates = S.swap_templates()
    assert len(templates) == 22
    want = set()
    for k in templates:
        named = C.template_attributes(C.TEMPLATES[k])
        counts = spec.PETAL_COUNTS if "petal_count" in named else (None,)
        shapes = spec.PETAL_SHAPES if "petal_shape" in named else (None,)
        want |= {(k, n, s) for n, s in itertools.product(counts, shapes)}
    have = {(r["template"], r.get("petal_count"), r.get("petal_shape")) for r in rows[::2]}
    assert have == want and len(rows) == 2 * len(want) == 236


def test_the_set_is_held_out_where_a_wording_allows_and_deterministic():
    first = S.build_pairs(set(), seed=0)
    assert first == S.build_pairs(set(), seed=0) and not any(r["in_training"] for r in first)
    assert first[0]["caption"] == "this flower has four oval yellow petals and a white stamen"  # golden, seed 0
    # pretend every text of the first draw is a training caption: every pair moves to another wording
    training = {r["caption"] for r in first}
    second = S.build_pairs(training, seed=0)
    assert len(second) == len(first) and not any(r["in_training"] for r in second)
    assert all(r["caption"] not in training for r in second)
    # and when every wording is a training caption, the pair stays, its members flagged
    everything = {t for r in first for t in _all_wordings(r)}
    flagged = S.build_pairs(everything, seed=0)
    assert [r["caption"] for r in flagged] == [r["caption"] for r in first] and all(r["in_training"] for r in flagged)


def _all_wordings(row: dict) -> list[str]:
    t = C.TEMPLATES[row["template"]]
    count = row.get("petal_count", spec.PETAL_COUNTS[0])
    words = S._wordings(t, row.get("petal_shape", spec.PETAL_SHAPES[0]))
    return [S.render(t, {**w, "n": spec.COUNT_WORDS[count], "pc": row["petal_color"], "cc": row["center_color"]})
            for w in words]


def test_the_committed_file_records_which_members_are_training_captions(rows):
    held = [a for a, b in zip(rows[::2], rows[1::2]) if not (a["in_training"] or b["in_training"])]
    assert len(held) == 92  # the synthetic-flowers set of seed 0 (8 000 images): 26 pairs have no unused wording
    assert {r["template"] for r in held} == {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14}


def test_the_committed_file_is_what_the_script_makes_from_the_benchmark_data(rows):
    data = PAIRS_FILE.parents[2] / "data" / "synthetic-flowers"  # bench/quality.py's default --data
    if not (data / "manifest.jsonl").is_file():
        pytest.skip(f"{data} not made here (python tools/make_synthetic_flowers.py --out {data} --n 8000 --seed 0)")
    assert S.build_pairs(S.training_captions(data), seed=0) == rows
