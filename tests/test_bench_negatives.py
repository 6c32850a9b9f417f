"""bench/negatives_band.py: the kind of every mined pair (golden), and the study end to end on a small synthetic
set with an offline encoder (shares add up, the centroid margin keeps fewer pairs and fewer false negatives)."""
import numpy as np
import pytest

from bench import negatives_band


def test_kinds_name_what_the_wrong_caption_contradicts():
    truth = np.array([[2, 1, 0, 1]] * 5)  # petal colour 2, centre 1, count 0, shape 1 (spec.ATTRIBUTES order)
    named = np.array([[2, -1, -1, -1],  # names only the shared petal colour: a false negative
                      [-1, -1, 3, -1],  # another count
                      [2, 0, -1, 1],  # another centre
                      [5, -1, -1, 0],  # petal colour and shape
                      [-1, -1, -1, -1]])  # names nothing: fits every image
    kinds = negatives_band.kinds(named, truth)
    assert [negatives_band.KINDS[k] for k in kinds] == ["false negative", "count only", "centre only",
                                                         "2+ attributes", "false negative"]


def _rows(text, header):
    table = text.split(header, 1)[1].split("\n\n", 2)[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_study_end_to_end_on_a_small_synthetic_set(tmp_path):
    import precompute_embeddings
    from tools.synthetic import generate_dataset

    data = tmp_path / "flowers"
    generate_dataset(data, n=60, seed=0, n_test=5, progress=False)
    cache = tmp_path / "tfidf.h5"
    assert precompute_embeddings.main(["--data", str(data), "--encoder", "tfidf", "--out", str(cache)]) in (0, None)
    negatives_band.main(["--cache", str(cache), "--data", str(data), "--real", "200", "--pool", "400",
                         "--band", "0.3,0.9", "--margins", "0,0.05", "--results", str(tmp_path)])
    text = next(tmp_path.glob("negatives-band-*.md")).read_text()
    by_cosine = _rows(text, "## By cosine")
    assert len(by_cosine) == 10 and sum(int(r[1]) for r in by_cosine) > 0
    for r in by_cosine:
        if int(r[1]):
            assert sum(map(float, r[2:])) == pytest.approx(1.0, abs=0.004)  # six shares, rounded to 3 places
    off, on = _rows(text, "## Inside the band")
    assert off[0] == "0.00 (off)" and off[1] == "1.00" and float(on[1]) < 1.0
    assert sum(map(float, on[2:])) == pytest.approx(1.0, abs=0.004)
    assert float(on[2]) < float(off[2])  # fewer false negatives among the pairs the margin keeps


def test_a_dataset_that_is_not_the_cache_s_is_one_line_error(tmp_path):
    from tools.errors import UserError
    from tools.synthetic import generate_dataset
    import precompute_embeddings

    b = tmp_path / "b"
    generate_dataset(tmp_path / "a", n=6, seed=0, n_test=2, progress=False)
    generate_dataset(b, n=3, seed=1, n_test=2, progress=False)
    (b / "attributes.jsonl").write_text("")  # a folder whose labels do not cover the cache's images
    precompute_embeddings.main(["--data", str(tmp_path / "a"), "--encoder", "tfidf", "--out", str(tmp_path / "c.h5")])
    with pytest.raises(UserError, match=r"attributes.jsonl: no row for image 'image_00001'.*pass the synthetic-flowers"):
        negatives_band.main(["--cache", str(tmp_path / "c.h5"), "--data", str(b), "--results", str(tmp_path)])
