"""bench/quality.py: the word arm's own token cache beside the sentence arms, and the binding rows of its table
(the training and evaluation it drives are tools.evaluation.compare's and tools/evaluate.py's, tested elsewhere)."""
from pathlib import Path

import pytest

from bench import quality
from tools.errors import UserError
from tools.evaluation.compare import Arm, cache_path


def _entry(petal, binding):
    m = {"attribute_accuracy": {"petal_color": {"accuracy": petal}, "mean": petal},
         "attribute_ceiling": {"petal_color": 1.0, "center_color": 1.0, "petal_count": 0.999, "petal_shape": 1.0},
         "fid": 100.0, "fid_floor": 2.01}
    if binding is not None:
        m["binding"] = {"accuracy": binding, "pair_accuracy": binding / 2, "petal_color": 0.9, "center_color": 0.8,
                        "swapped": 0.1, "alike": 0.2, "held_out": binding, "n_pairs": 118, "n_held_out": 92,
                        "real": {"accuracy": 1.0, "pair_accuracy": 1.0, "petal_color": 1.0, "center_color": 1.0,
                                 "swapped": 0.0, "alike": 0.0, "held_out": 1.0}}
    return {"metrics": m, "steps": 5000}


def test_the_table_has_the_binding_rows_and_the_word_arm_as_e():
    state = {"arms": {"dfgan-minilm": _entry(0.97, 0.52), "dfgan-words": _entry(0.96, 0.88),
                      "stackgan": _entry(0.9, None)}}  # measured before the binding rows: "-"
    text, records = quality.table(state, ["stackgan", "dfgan-minilm", "dfgan-words"])
    lines = text.splitlines()
    assert lines[0] == "| metric | (a) stackgan | (b) dfgan-minilm | (e) dfgan-words | real reference |"
    assert "| binding accuracy (swap pairs) | - | 0.520 | 0.880 | 1.000 |" in lines
    assert "| binding, both members of a pair | - | 0.260 | 0.440 | 1.000 |" in lines
    row = next(r for r in records if r["metric"] == "binding, centre colour")
    assert (row["dfgan-words"], row["stackgan"], row["real"]) == (0.8, None, 1.0)


def test_only_the_word_arm_builds_a_token_cache_and_in_a_file_of_its_own(tmp_path):
    arms = {name: Arm(name, *quality.ARM_SPECS[name], probe=False, cache_options=quality.ARM_CACHE.get(name, {}))
            for name in quality.ARMS}
    assert {n: a.cache_options for n, a in arms.items() if a.cache_options} == {"dfgan-words": {"tokens": "auto"}}
    assert arms["dfgan-words"].overrides == {"arch": "dfgan-words"} and arms["dfgan-words"].spec == "minilm"
    assert cache_path(arms["dfgan-minilm"], "synthetic-flowers", tmp_path) == tmp_path / "synthetic-flowers-minilm.h5"
    assert cache_path(arms["dfgan-words"], "synthetic-flowers", tmp_path) == \
        tmp_path / "synthetic-flowers-minilm-tokens.h5"
    for spec, options in quality.ARM_SPECS.values():  # bench/ablation.py unpacks every arm this way
        assert isinstance(spec, str) and isinstance(options, dict)


def test_runs_of_the_word_arm_are_accepted_and_unknown_arms_refused(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert quality.parse_runs(f"dfgan-words={run}") == {"dfgan-words": Path(run)}
    with pytest.raises(UserError, match="ARM one of stackgan, dfgan-minilm, dfgan-tfidf, ta80, dfgan-words"):
        quality.parse_runs(f"words={run}")
