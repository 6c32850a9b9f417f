"""The swap-pair grid (tools/grids.swap_pair_grid, bench/binding_grid.py): where every tile lands, which pairs."""
import numpy as np
import pytest

from bench import binding_grid
from tools.errors import UserError
from tools.evaluation.binding import DEFAULT_PAIRS, load_swap_pairs
from tools.grids import swap_pair_grid, swap_tile_location


def test_every_tile_lands_where_the_layout_says_a_beside_b_runs_side_by_side():
    p, k, h, w = 2, 3, 8, 8
    images = {}
    for r, label in enumerate(("sentence", "words")):
        arr = np.zeros((p, 2, k, h, w, 3), np.uint8)
        for i in range(p):
            for m in range(2):
                for j in range(k):
                    arr[i, m, j] = (10 + 100 * r + 40 * m, 10 + 50 * i, 10 + 60 * j)  # a colour per tile
        images[label] = arr
    caps = [("yellow petals and a white center", "white petals and a yellow center")] * p
    fig = np.asarray(swap_pair_grid(images, caps, scale=2))
    loc, _, size = swap_tile_location(p, k, 2, h, w, 2)
    assert fig.shape[0] == size[1] and fig.shape[1] >= size[0]
    for r, arr in enumerate(images.values()):
        for i in range(p):
            for m in range(2):
                for j in range(k):
                    x, y = loc[i, r, m, j]
                    np.testing.assert_array_equal(fig[y:y + 2 * h, x:x + 2 * w], np.broadcast_to(arr[i, m, j, 0, 0], (16, 16, 3)))
    assert loc[0, 0, 1, 0, 0] > loc[0, 0, 0, 0, 0] and loc[0, 1, 0, 0, 0] > loc[0, 0, 1, 0, 0]  # a | b, run 1 | run 2
    assert loc[0, 0, 0, 1, 1] > loc[0, 0, 0, 0, 1] and loc[1, 0, 0, 0, 1] > loc[0, 0, 0, k - 1, 1]  # noise rows, pairs
    with pytest.raises(ValueError, match=r"wants uint8 \[P, 2, K, H, W, 3\]"):
        swap_pair_grid({"a": images["words"][:, :1]}, caps)


def test_the_grid_picks_held_out_pairs_of_distinct_templates_first_or_the_ones_asked_for():
    rows = load_swap_pairs(DEFAULT_PAIRS)
    chosen = binding_grid.choose_pairs(rows, 13, "")
    heads = chosen[0::2]
    assert len(chosen) == 26 and [r["member"] for r in chosen[:2]] == ["a", "b"]
    assert len({r["template"] for r in heads}) == 13 and not any(r["in_training"] for r in chosen)
    assert [r["id"] for r in binding_grid.choose_pairs(rows, 1, "p117,p002")] == ["p117a", "p117b", "p002a", "p002b"]
    with pytest.raises(UserError, match="--pick 'p999': no such pair id"):
        binding_grid.choose_pairs(rows, 1, "p999")


def test_runs_one_to_max_runs_each_a_run_folder(tmp_path):
    from bench.binding_grid import MAX_RUNS, parse_runs

    (tmp_path / "config.json").write_text("{}")
    text = ",".join(f"arm{i}={tmp_path}" for i in range(MAX_RUNS))
    assert list(parse_runs(text)) == [f"arm{i}" for i in range(MAX_RUNS)]
    with pytest.raises(UserError, match=f"give one to {MAX_RUNS} runs"):
        parse_runs(text + f",arm9={tmp_path}")
    with pytest.raises(UserError, match="expected LABEL=RUN_DIR"):
        parse_runs(f"a={tmp_path / 'missing'}")
