"""bench/ablation.py: which run stands for a row, the table it prints, and its one-line errors (the training and
evaluation it drives are tools.evaluation.compare's and tools/evaluate.py's, tested elsewhere)."""
import json

import pytest

from bench import ablation
from tools.errors import UserError


def _metrics(petal, centre, fid):
    return {"attribute_accuracy": {"petal_color": {"accuracy": petal}, "center_color": {"accuracy": centre},
                                   "petal_count": {"accuracy": 0.5}, "petal_shape": {"accuracy": 0.99}},
            "attribute_ceiling": {"petal_color": 1.0, "center_color": 1.0, "petal_count": 0.999, "petal_shape": 1.0},
            "fid": fid, "fid_floor": 2.01, "r_precision_shared": {"value": 0.3, "real": 0.36},
            "diversity": {"feature": 10.0, "feature_real": 22.26}}


def test_table_has_one_row_per_ablation_and_the_real_reference():
    state = {"rows": {"full": {"metrics": _metrics(0.97, 0.77, 118.27), "ms_per_step": 412.0},
                      "no-hard-negatives": {"metrics": _metrics(0.96, 0.51, 130.5), "ms_per_step": 405.5}}}
    text, records = ablation.table(state, ["full", "no-hard-negatives"])
    lines = text.splitlines()
    assert lines[2] == "| dfgan + MiniLM, full preset | 0.970 | 0.770 | 0.500 | 0.990 | 118.27 | 0.300 | 10.000 | 412.0 |"
    assert lines[3].startswith("| − hard negatives | 0.960 | 0.510 |")
    assert lines[4] == "| real images | 1.000 | 1.000 | 0.999 | 1.000 | 2.01 | 0.360 | 22.260 | - |"
    assert [r["row"] for r in records] == ["full", "no-hard-negatives"]
    assert records[1]["center_color"] == 0.51 and records[0]["weights"] == "auto"


def test_a_row_without_changes_reads_the_quality_run_only_when_it_kept_that_checkpoint(tmp_path):
    run = tmp_path / "runs" / "00002-synthetic-flowers-minilm"
    (run / "checkpoints").mkdir(parents=True)
    from gan.config import GanConfig

    (run / "config.json").write_text(GanConfig(seed=0).to_json())
    (tmp_path / "comparison.json").write_text(json.dumps({"arms": {"dfgan-minilm": {"run_dir": str(run)}}}))
    assert ablation.quality_run(tmp_path, "dfgan-minilm", 2000, 0) is None  # checkpoint 2000 not kept
    (run / "checkpoints" / "ckpt-2000.index").write_bytes(b"")
    assert ablation.quality_run(tmp_path, "dfgan-minilm", 2000, 0) == run
    assert ablation.quality_run(tmp_path, "dfgan-minilm", 2000, 1) is None  # another seed
    assert ablation.quality_run(tmp_path, "stackgan", 2000, 0) is None  # arm not run
    assert ablation.quality_run(tmp_path / "nowhere", "dfgan-minilm", 2000, 0) is None


def test_unknown_rows_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="--rows 'full,no-gp': choose from full, no-ema"):
        ablation.main(["--rows", "full,no-gp", "--data", str(tmp_path)])
    with pytest.raises(UserError, match="not a synthetic-flowers folder"):
        ablation.main(["--rows", "full", "--data", str(tmp_path)])


def test_every_row_changes_only_known_options():
    from gan.config import GanConfig

    names = set(GanConfig().option_names())
    for name, (base, changes, weights, _) in ablation.ROWS.items():
        assert base in ("dfgan-minilm", "stackgan") and weights in ("auto", "raw")
        assert set(changes) <= names, name
