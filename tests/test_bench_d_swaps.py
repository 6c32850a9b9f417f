"""bench/d_swaps.py: the swapped captions change exactly one attribute (read back by the caption grammar), the
interaction is the double-centred part (golden), and the study end to end on a tiny trained dfgan run."""
import numpy as np
import pytest

from bench import d_swaps


def test_each_swapped_caption_changes_exactly_its_attribute():
    from tools.evaluation.real_data import ATTRIBUTE_VALUES, ATTRIBUTES, value_index
    from tools.synthetic.captions import parse_caption

    labels = np.array([[0, 1, 2, 0], [6, 3, 3, 1], [3, 0, 0, 1]])
    true, swaps = d_swaps.swapped_captions(labels, np.random.default_rng(0))
    assert true[0] == "this flower has six round red petals and a brown center"
    for i, row in enumerate(labels):
        read = parse_caption(true[i])
        assert [value_index(a, read[a]) for a in ATTRIBUTES] == list(row)
        for k, a in enumerate(ATTRIBUTES):
            got = parse_caption(swaps[a][i])
            values = [value_index(b, got[b]) for b in ATTRIBUTES]
            assert values[k] != row[k] and 0 <= values[k] < len(ATTRIBUTE_VALUES[a])
            assert values[:k] + values[k + 1:] == list(row[:k]) + list(row[k + 1:])


def test_exchanged_captions_swap_the_two_colours_of_yellow_white_flowers_only():
    from bench.d_swaps import exchanged_captions
    from tools.evaluation.real_data import ATTRIBUTE_VALUES

    idx = {a: {v: i for i, v in enumerate(ATTRIBUTE_VALUES[a])} for a in ATTRIBUTE_VALUES}
    rows = [("yellow", "white", 5, "round"), ("white", "yellow", 8, "pointed"), ("red", "white", 4, "round"),
            ("white", "white", 6, "round")]
    labels = np.array([[idx[a][v] for a, v in zip(idx, row)] for row in rows])
    mask, texts = exchanged_captions(labels)
    assert mask.tolist() == [True, True, False, False]
    assert texts[0] == "this flower has five round white petals and a yellow center"
    assert texts[1] == "this flower has eight pointed yellow petals and a white center"
    assert texts[2] == "this flower has four round red petals and a white center"  # unchanged: red cannot be a centre
    mask, texts = exchanged_captions(labels, centre_first=True)
    assert mask.tolist() == [True, True, False, False]
    assert texts[0] == "the yellow center of this flower is surrounded by five round white petals"
    assert texts[3] == "the white center of this flower is surrounded by six round white petals"


def test_interaction_removes_row_and_column_effects():
    inner = np.array([[1.0, -1.0, 0.0], [-2.0, 1.0, 1.0], [1.0, 0.0, -1.0]])  # rows and columns sum to 0
    mean = inner + np.array([[5.0], [-1.0], [2.0]]) + np.array([[0.5, 3.0, -4.0]])  # + image and caption biases
    np.testing.assert_allclose(d_swaps.interaction(mean), inner, atol=1e-12)
    assert d_swaps.win_rate(np.array([2.0, 0.0, 1.0, 3.0]), np.array([1.0, 1.0, 1.0, 0.0])) == \
        {"win": 0.5, "gap": pytest.approx(0.75)}


def test_study_end_to_end_on_a_tiny_run(tmp_path):
    from test_gan_fixtures import tiny_synthetic_run

    data, _, run = tiny_synthetic_run(tmp_path, 24)
    assert d_swaps.main(["--runs", f"tiny={run},again={run}", "--data", str(data), "--images", "24",
                         "--results", str(tmp_path)]) == 0
    text = next(tmp_path.glob("d-swaps-*.md")).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| tiny |") or line.startswith("| again |")]
    assert len(rows) == 2 and rows[0].split("|")[2:] == rows[1].split("|")[2:]  # same checkpoint, same numbers
    cells = rows[0].strip("|").split("|")[2:]  # the four attributes, the exchanged colours (binding), centre first
    wins = [float(c.split()[0]) for c in cells[:4]]
    assert len(cells) == 6 and all(0.0 <= w <= 1.0 for w in wins)
    for cell in cells[4:]:
        binding = cell.split()[0]  # nan where none of the 24 flowers is yellow/white
        assert binding == "nan" or 0.0 <= float(binding) <= 1.0
    matrix = [[float(v) for v in line.strip("|").split("|")[1:]] for line in text.splitlines()
              if line[:4] in ("| 4 ", "| 5 ", "| 6 ", "| 8 ")][:4]
    np.testing.assert_allclose(np.sum(matrix, axis=1), 0.0, atol=0.03)  # printed with 2 decimals


def test_bad_runs_are_one_line_errors(tmp_path):
    from tools.errors import UserError

    with pytest.raises(UserError, match="expected NAME=RUN_DIR"):
        d_swaps.parse_runs("runs/00001")
    with pytest.raises(UserError, match="no config.json there"):
        d_swaps.parse_runs(f"a={tmp_path}")
