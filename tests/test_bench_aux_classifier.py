"""bench/aux_classifier.py's own logic: the --runs list, ms/step up to the evaluated step, the table (no training)."""
from __future__ import annotations

import pytest

from bench.aux_classifier import ms_per_step, parse_runs, table
from tools.errors import UserError


def test_parse_runs_needs_run_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{}")
    assert parse_runs(f"none={tmp_path / 'a'}") == {"none": tmp_path / "a"}
    with pytest.raises(UserError, match=r"--runs 'x=.*nope': expected NAME=RUN_DIR with RUN_DIR/config.json"):
        parse_runs(f"x={tmp_path / 'nope'}")


def test_ms_per_step_reads_only_up_to_the_step(tmp_path):
    lines = ["run folder: x"] + [f"step {s}/5000 | d 1.00 | g 0.50 | kl 0.40 | {ms} ms/step | ETA 1m"
                                 for s, ms in ((50, 9000), (100, 300), (150, 500), (200, 400), (250, 9999))]
    (tmp_path / "train.log").write_text("\n".join(lines) + "\n")
    assert ms_per_step(tmp_path, 200) == 400.0  # median of 300, 500, 400 (the first, tracing, left out)
    assert ms_per_step(tmp_path / "missing", 200) is None


def test_table_golden():
    base = {"petal_color": 0.9, "center_color": 0.8, "petal_count": 0.5, "petal_shape": 0.7, "fid": 40.0,
            "diversity": 0.3, "head_classes": None, "head_real": None, "head_generated": None, "chance": None,
            "ms_per_step": 1200.0, "aux_class": 0.0, "arm": "none"}
    head = {**base, "arm": "pcs14", "aux_class": 1.0, "fid": 30.0, "head_classes": 14, "head_real": 0.95,
            "head_generated": 0.8, "chance": 1 / 14}
    real = {"petal_color": 1.0, "center_color": 1.0, "petal_count": 0.999, "petal_shape": 1.0, "fid_floor": 0.5,
            "diversity": 0.4}
    lines = table([base, head], real).splitlines()
    assert lines[2] == "| none | none | 0.900 | 0.800 | 0.500 | 0.700 | 40.00 | 1.00 | 0.300 | - | - | 1200 |"
    assert lines[3] == ("| pcs14 | aux_class=1, 14 classes | 0.900 | 0.800 | 0.500 | 0.700 | 30.00 | 0.75 | 0.300 | "
                        "0.950 (0.071) | 0.800 | 1200 |")
    assert lines[4] == "| real images | - | 1.000 | 1.000 | 0.999 | 1.000 | 0.50 | - | 0.400 | - | - | - |"
