"""bench/binding.py: its table (binding rows first, one column per run) and a rewrite that keeps the notes."""
from bench import binding
from tests.test_bench_quality import _entry


def test_binding_rows_come_first_with_every_other_metric_after_them():
    entries = {"dfgan-minilm": {**_entry(0.97, 0.5), "steps": 5000, "cosine": {"mean": 0.9931}},
               "dfgan-words": {**_entry(0.96, 0.9), "steps": 4500, "cosine": None}}
    text, records = binding.table(entries)
    lines = text.splitlines()
    assert lines[0] == "| metric | dfgan-minilm (step 5000) | dfgan-words (step 4500) | real reference |"
    assert lines[2] == "| binding accuracy (swap pairs) | 0.500 | 0.900 | 1.000 |"
    assert lines[3] == "| binding, both members of a pair | 0.250 | 0.450 | 1.000 |"
    assert lines[9] == "| binding, petal colour named first | - | - | - |"  # _entry predates the word-order rows
    assert lines[11].startswith("| petal_color accuracy | 0.970 | 0.960 |")
    assert "| FID | 100.00 | 100.00 | 2.01 |" in lines and not any("ms/step" in x for x in lines)
    assert lines[-1] == "| text-vector cosine of a pair's two captions (mean) | 0.993 | - | - |"
    assert [r["metric"] for r in records][:9] == [x.split(" | ")[0][2:] for x in lines[2:11]]


def test_a_rewrite_keeps_what_stands_below_the_notes_line(tmp_path):
    md = tmp_path / "binding.md"
    binding.write_results(md, "# old\n\n", "| a |")
    md.write_text(md.read_text() + "the sentence arm cannot bind: half of each pair\n")
    binding.write_results(md, "# new\n\n", "| b |")
    assert md.read_text() == "# new\n\n| b |\n\n<!-- notes -->\nthe sentence arm cannot bind: half of each pair\n"


def test_results_cite_no_machine_folder():
    text = f"--runs a=/srv/me/runs/baseline/00001-x,b={binding.REPO}/runs/bench/00002-y data /opt/w/data/sf/a.jsonl"
    assert binding.portable(text) == "--runs a=runs/baseline/00001-x,b=runs/bench/00002-y data data/sf/a.jsonl"
    assert binding.portable("https://host/x/data/y") == "https://host/x/data/y"  # a URL is no machine path


def test_paired_rows_difference_of_the_shared_judge_image_by_image():
    def with_scores(scores):
        e = _entry(0.97, 0.5)
        e["metrics"]["r_precision_shared"] = {"value": sum(scores) / len(scores), "scores": scores}
        return e

    entries = {"sentence": with_scores([1.0, 0.0, 1.0, 0.0]), "words": with_scores([1.0, 1.0, 1.0, 0.0]),
               "old": _entry(0.96, 0.9)}  # evaluated before per-image scores: left out, not paired
    lines = binding.paired_rows(entries).splitlines()
    assert lines[0].startswith("Shared-judge R-precision minus sentence's, paired over the same 4 images")
    assert lines[2:] == ["| words |", "|---|", "| +0.250 ± 0.490 |"]
    assert binding.paired_rows({"sentence": entries["sentence"]}) == ""


def test_an_evaluation_made_before_the_word_order_rows_gets_them_from_its_stored_images(tmp_path):
    import json

    from PIL import Image

    from bench.binding import with_word_order
    from tools.evaluation.binding import DEFAULT_PAIRS, load_swap_pairs, real_images

    rows = load_swap_pairs(DEFAULT_PAIRS)
    folder = tmp_path / "swap_pairs"
    folder.mkdir()
    for row, image in zip(rows, real_images(rows)):  # one real render per caption: a perfect generator
        Image.fromarray(image).save(folder / f"inference_{row['id']}.png")
    old = {"fid": 1.0, "binding": {"accuracy": 1.0, "images": str(folder), "pairs": str(DEFAULT_PAIRS), "samples": 1}}
    out = tmp_path / "run-step5.json"
    m = with_word_order(old, out)
    assert (m["fid"], m["binding"]["petal_first"], m["binding"]["centre_first"]) == (1.0, 1.0, 1.0)
    assert m["binding"]["n_centre_first"] == 40 and json.loads(out.read_text()) == m
    assert with_word_order(m, tmp_path / "untouched.json") is m and not (tmp_path / "untouched.json").exists()
