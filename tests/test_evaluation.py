"""Evaluation library: golden FID/IS numbers, R-precision bounds, diversity, the attribute classifier's ceiling,
InceptionV3 loading, and the evaluate CLI end to end.

The attribute classifier is trained once per checkout into cache/attribute_classifier/ (~2 min on 2 busy
cores) and reused afterwards; the test re-measures it on flowers it has never seen.
"""
import json
import math

import numpy as np
import pytest

from tools.evaluation.diversity import diversity, mean_pairwise_distance, pixel_distance
from tools.evaluation.fid import (
    frechet_distance_from_activations,
    frechet_distance_from_stats,
    inception_score_from_logits,
    inception_score_from_probs,
    trace_sqrt_product,
)
from tools.evaluation.matching import r_precision
from tools.evaluation.real_data import ATTRIBUTE_VALUES, ATTRIBUTES, generate_labelled_images, value_index


# --- FID -------------------------------------------------------------------------------------------------
def test_fid_golden_stats_2d():
    # non-commuting case: sqrt(diag-free [[2,1],[1,2]]) has eigenvalues sqrt(3), 1
    s1, s2 = np.array([[2.0, 1.0], [1.0, 2.0]]), np.eye(2)
    assert trace_sqrt_product(s1, s2) == pytest.approx(1 + math.sqrt(3), abs=1e-12)
    # ||(3,4)||² + Tr(Σ1 + Σ2) − 2 Tr((Σ1Σ2)^½) = 25 + 4 + 2 − 2(1 + √3) = 29 − 2√3
    assert frechet_distance_from_stats([0, 0], s1, [3, 4], s2) == pytest.approx(29 - 2 * math.sqrt(3), abs=1e-10)
    # diagonal: Tr(diag(1,4) + diag(4,9)) − 2(√4 + √36) = 18 − 16 = 2
    assert frechet_distance_from_stats([1, 1], np.diag([1.0, 4.0]), [1, 1], np.diag([4.0, 9.0])) == pytest.approx(2.0)


def test_fid_golden_activations_1d():
    # a: mean 0, unbiased var 2; b: mean 4, var 8 -> 16 + (√2 − √8)² = 18
    assert frechet_distance_from_activations([[-1.0], [1.0]], [[2.0], [6.0]]) == pytest.approx(18.0, abs=1e-12)


def test_fid_self_zero_and_monotone_in_mean_shift():
    a = np.random.default_rng(0).normal(size=(500, 16))
    assert frechet_distance_from_activations(a, a) < 1e-6
    direction = np.ones(16) / 4.0  # |direction| = 1
    values = [frechet_distance_from_activations(a, a + d * direction) for d in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert values == pytest.approx([0.0, 0.25, 1.0, 4.0, 16.0], abs=1e-6)  # same covariance: FID = |shift|²
    assert all(x < y for x, y in zip(values, values[1:]))


def test_fid_scaled_covariance():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 4))
    a = (a - a.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(a, rowvar=False))).T  # exactly whitened
    # Σ1 = I, Σ2 = 4I: Tr(I + 4I − 2·2I) = 4 (one per dimension)
    assert frechet_distance_from_activations(a, 2 * a) == pytest.approx(4.0, abs=1e-9)


# --- Inception Score ---------------------------------------------------------------------------------------
def test_inception_score_golden():
    onehot = np.eye(10)[np.arange(200) % 10]
    assert inception_score_from_probs(onehot)[0] == pytest.approx(10.0)
    assert inception_score_from_probs(np.full((50, 10), 0.1))[0] == pytest.approx(1.0)
    assert inception_score_from_probs(np.eye(10)[np.zeros(30, int)])[0] == pytest.approx(1.0)  # collapsed
    mean, std = inception_score_from_probs(onehot, splits=4)  # 50 images per split, all 10 classes in each
    assert (mean, std) == (pytest.approx(10.0), pytest.approx(0.0))
    logits = np.random.default_rng(0).normal(size=(64, 5)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert inception_score_from_logits(logits)[0] == pytest.approx(inception_score_from_probs(probs)[0], rel=1e-12)


# --- R-precision ---------------------------------------------------------------------------------------------
def test_r_precision_perfect_constant_and_random():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 32))
    assert r_precision(emb, emb) == 1.0
    assert r_precision(np.ones((300, 8)), np.ones((300, 8))) == pytest.approx(1 / 100)  # all tied: exactly 1/100
    chance = r_precision(rng.normal(size=(3000, 32)), rng.normal(size=(3000, 32)))
    assert abs(chance - 0.01) < 0.005  # 3000 draws of Bernoulli(0.01): sd 0.0018
    assert r_precision(emb, emb, n_candidates=10) == 1.0


def test_r_precision_several_images_per_caption():
    rng = np.random.default_rng(1)
    texts = rng.normal(size=(120, 16))
    owner = np.repeat(np.arange(120), 3)  # 3 samples per caption
    images = texts[owner] + 0.01 * rng.normal(size=(360, 16))
    assert r_precision(images, texts, owner) == 1.0
    assert r_precision(images, texts, np.roll(owner, 3)) < 0.05  # every image paired with another caption
    with pytest.raises(ValueError):
        r_precision(images, texts, owner, n_candidates=121)


def test_r_precision_scores_per_image_and_ties():
    from tools.evaluation.matching import r_precision_scores

    texts = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # image 0 points at caption 0 (wins), image 1 at caption 0 instead of its own caption 1 (beaten),
    # image 2 is [1, 0]: its caption 2 scores 0.707 against caption 0's 1.0 (beaten)
    images = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert r_precision_scores(images, texts, n_candidates=3).tolist() == [1.0, 0.0, 0.0]
    tied = r_precision_scores(np.ones((4, 2)), np.ones((4, 2)), n_candidates=4)  # every caption alike: 1/4 each
    assert tied.tolist() == [0.25] * 4
    assert r_precision(images, texts, n_candidates=3) == pytest.approx(1 / 3)


def test_paired_difference_golden_and_pairing():
    from tools.evaluation.matching import paired_difference

    a = np.array([1.0, 0.0, 1.0, 0.0])
    b = np.array([1.0, 1.0, 1.0, 0.0])  # differences 0, 1, 0, 0: mean 0.25, sd 0.5, se 0.25
    d = paired_difference(b, a)
    assert d == {"difference": pytest.approx(0.25), "half_width": pytest.approx(1.96 * 0.25), "n": 4}
    # pairing removes what both arms share: b = a + small shift has a tight interval, however spread a is
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 2000).astype(float)
    b = a.copy()
    b[:100] = 1.0
    d = paired_difference(b, a)
    assert 0 < d["difference"] - d["half_width"] and d["half_width"] < 0.01
    with pytest.raises(ValueError):
        paired_difference(a, a[:-1])


def _bag_of_attribute_captions(labels: np.ndarray, per_image: int, seed: int):
    """Stand-in text vectors: each caption names a random non-empty subset of its image's attributes,
    encoded as a multi-hot vector over the 17 attribute values. Returns (vectors [N, 17], caption_image [N])."""
    rng = np.random.default_rng(seed)
    offsets = np.cumsum([0] + [len(v) for v in ATTRIBUTE_VALUES.values()])[:-1]
    vectors, owner = [], []
    for i, lab in enumerate(labels):
        for _ in range(per_image):
            v = np.zeros(17, np.float32)
            named = rng.random(4) < 0.6
            named[rng.integers(4)] = True
            v[(offsets + lab)[named]] = 1.0
            vectors.append(v)
            owner.append(i)
    return np.stack(vectors), np.array(owner)


def test_matcher_learns_real_pairs_and_round_trips(tmp_path, fresh_flowers):
    from tools.evaluation.matching import load_matcher, real_r_precision, save_matcher, train_matcher

    images, labels = generate_labelled_images(1024, seed=77)
    vectors, owner = _bag_of_attribute_captions(labels, 4, seed=0)
    matcher = train_matcher(images, vectors, owner, epochs=3, seed=0, log=lambda *_: None)
    test_vectors, test_owner = _bag_of_attribute_captions(fresh_flowers[1][:300], 1, seed=1)
    rp = real_r_precision(matcher, fresh_flowers[0][:300], test_vectors, test_owner)
    assert rp > 0.1, rp  # 10x chance (0.01) after 24 steps; a caption naming one attribute also fits others
    save_matcher(matcher, tmp_path)
    again = load_matcher(tmp_path)
    assert again.meta == matcher.meta
    assert np.array_equal(again.embed_images(images[:8]), matcher.embed_images(images[:8]))
    assert np.array_equal(again.embed_texts(vectors[:8]), matcher.embed_texts(vectors[:8]))


# --- diversity -------------------------------------------------------------------------------------------------
def test_diversity_collapse_is_zero_and_pixel_golden():
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    same = np.stack([img] * 4)
    out = diversity([same, same], feature_fn=lambda x: x.reshape(len(x), -1).astype(np.float32))
    assert out["pixel"] == 0.0 and out["feature"] == 0.0 and out["captions"] == 2
    black_white = np.stack([np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)])
    assert pixel_distance(black_white) == pytest.approx(1.0)
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])) == pytest.approx(10 / 3)
    assert diversity([img[None]])["pixel"] is None  # K = 1: nothing to measure


# --- attribute classifier --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier():
    from tools.evaluation.attribute_classifier import load_or_train

    return load_or_train()  # cache/attribute_classifier/: trained on the first run only


@pytest.fixture(scope="module")
def fresh_flowers():
    return generate_labelled_images(400, seed=2024)  # never seen by the classifier (its data seed is 90210)


def test_value_index_accepts_caption_words():
    assert value_index("petal_count", "five") == value_index("petal_count", 5) == value_index("petal_count", "5") == 1
    assert value_index("petal_shape", "rounded") == 0 and value_index("petal_shape", "sharp") == 1
    from tools.errors import UserError

    with pytest.raises(UserError, match="allowed: red, orange"):
        value_index("petal_color", "green")


def test_attribute_classifier_reaches_ceiling(classifier, fresh_flowers):
    from tools.evaluation.attribute_classifier import CEILING

    assert all(classifier.meta["heldout_accuracy"][a] >= CEILING for a in ATTRIBUTES)
    images, labels = fresh_flowers
    acc = classifier.accuracy(images, labels)
    assert all(acc[a] >= CEILING for a in ATTRIBUTES), acc


def test_attribute_accuracy_counts_only_named(classifier, fresh_flowers):
    from tools.evaluation.attribute_classifier import attribute_accuracy

    images, labels = fresh_flowers
    images, labels = images[:100], labels[:100]
    # captions name petal colour (true) and count (wrong: the next value), never the centre or shape
    named = [{"petal_color": ATTRIBUTE_VALUES["petal_color"][p],
              "petal_count": ATTRIBUTE_VALUES["petal_count"][(c + 1) % 4]} for p, _, c, _ in labels]
    acc = attribute_accuracy(images, named, classifier)
    assert (acc["petal_color"]["accuracy"], acc["petal_color"]["count"]) == (1.0, 100)
    # confusion rows: the value named, columns: the value shown; all on the diagonal for the true colour
    np.testing.assert_array_equal(acc["petal_color"]["confusion"], np.diag(np.bincount(labels[:, 0], minlength=7)))
    assert acc["petal_count"]["accuracy"] <= 0.05 and acc["petal_count"]["count"] == 100
    # the count named is the next value: each image lands in row (shown + 1) % 4, column shown
    shifted = np.zeros((4, 4), np.int64)
    np.add.at(shifted, ((labels[:, 2] + 1) % 4, labels[:, 2]), 1)
    assert np.abs(np.array(acc["petal_count"]["confusion"]) - shifted).sum() <= 10  # <= 5 images misread
    assert acc["center_color"] == {"accuracy": None, "count": 0, "confusion": np.zeros((4, 4), int).tolist(),
                                   "unread": 0}


def test_classifier_fid_floor_and_is(classifier, fresh_flowers):
    images = fresh_flowers[0]
    a, b = classifier.features(images[:200]), classifier.features(images[200:])
    floor = frechet_distance_from_activations(a, b)
    washed = (images[200:].astype(np.float32) * 0.5 + 64).astype(np.uint8)  # low-contrast copies
    assert floor < 0.25 * frechet_distance_from_activations(a, classifier.features(washed))
    joint = classifier.joint_probs(images)
    assert joint.shape == (400, 224) and np.allclose(joint.sum(1), 1.0, atol=1e-5)
    # 400 confident predictions over 224 equally likely classes: IS well above 100 (at most 224)
    assert inception_score_from_probs(joint)[0] > 100
    assert inception_score_from_probs(classifier.joint_probs(np.stack([images[0]] * 50)))[0] < 1.01


# --- InceptionV3 -----------------------------------------------------------------------------------------------
def test_inception_loads_user_weights(tmp_path):
    import keras

    from tools.evaluation.inception import load_inception

    keras.utils.set_random_seed(0)
    model = keras.applications.InceptionV3(weights=None, input_shape=(75, 75, 3))  # smallest input it accepts
    path = tmp_path / "inception_random.h5"
    keras.saving.save_model(model, path)  # legacy HDF5, read by load_weights as Keras' own weight files are
    net = load_inception(path, input_size=75)
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    feats, probs = net.features(images), net.probs(images)
    assert feats.shape == (4, 2048) and probs.shape == (4, 1000) and np.allclose(probs.sum(1), 1, atol=1e-4)
    x = keras.ops.image.resize(images.astype(np.float32), (75, 75)) / 127.5 - 1.0
    assert np.allclose(probs, np.asarray(model(x, training=False)), atol=1e-5)  # the loaded weights are the saved ones
    from tools.errors import UserError

    with pytest.raises(UserError, match="not found"):
        load_inception(tmp_path / "missing.h5")


# --- the CLI end to end ----------------------------------------------------------------------------------------
def test_evaluate_cli_on_real_flowers(tmp_path, classifier, fresh_flowers, capsys):
    from PIL import Image

    from tools.evaluate import main

    images, labels = fresh_flowers
    rows = []
    for i in range(40):  # 40 captions x 2 "samples": two real flowers with the attributes the caption names
        p, c, n, s = labels[i]
        rows.append({"id": i + 1, "caption": "a flower", "petal_color": ATTRIBUTE_VALUES["petal_color"][p],
                     "petal_count": int(ATTRIBUTE_VALUES["petal_count"][n])})
        Image.fromarray(images[i]).save(tmp_path / f"inference_{i + 1}_0.png")
        Image.fromarray(images[i]).save(tmp_path / f"inference_{i + 1}_1.png")
    Image.fromarray(images[0]).save(tmp_path / "inference_999.png")  # no such caption: skipped and reported
    (tmp_path / "caps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--images", str(tmp_path), "--captions", str(tmp_path / "caps.jsonl")]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["n_captions"] == 40 and m["n_images"] == 80
    assert (m["attribute_accuracy"]["petal_color"]["accuracy"], m["attribute_accuracy"]["petal_color"]["count"]) == (1.0, 80)
    assert np.sum(m["attribute_accuracy"]["petal_count"]["confusion"]) == 80
    assert m["attribute_accuracy"]["petal_count"]["accuracy"] >= 0.95
    # two identical samples per caption: pixel distance is exactly 0 (uint8 differences); the feature distance is 0
    # up to float32 rounding, which differs by instruction set (3.5e-8 on an AVX2 machine, 0.0 on AVX-512) because
    # the two copies sit in different rows of one batch. Real differences are > 1.0 (the next line).
    assert m["diversity"]["pixel"] == 0.0 and m["diversity"]["feature"] < 1e-5 * m["diversity"]["feature_real"]
    assert m["diversity"]["feature_real"] > 1.0  # different real flowers fitting the same caption do differ
    assert m["r_precision"]["value"] is None
    out = capsys.readouterr().out
    assert "skipped 1 files" in out and "petal_color accuracy (n=80)" in out


def test_pixel_check_reads_every_real_flower_and_wrong_colours_fail():
    from tools.evaluation.pixel_check import pixel_accuracy, pixel_colours

    images, labels = generate_labelled_images(300, seed=7)  # its own seed: not the fixture's, not the classifier's
    colours = pixel_colours(images)
    np.testing.assert_array_equal(colours["petal_color"], labels[:, 0])
    np.testing.assert_array_equal(colours["center_color"], labels[:, 1])
    named = [{"petal_color": ATTRIBUTE_VALUES["petal_color"][p], "center_color": ATTRIBUTE_VALUES["center_color"][c]}
             for p, c in labels[:, :2]]
    named[0] = {"petal_count": 5}  # a caption that names neither colour is not counted
    acc = pixel_accuracy(images, named)
    assert {a: (v["accuracy"], v["count"]) for a, v in acc.items()} == {"petal_color": (1.0, 299), "center_color": (1.0, 299)}
    np.testing.assert_array_equal(acc["center_color"]["confusion"], np.diag(np.bincount(labels[1:, 1], minlength=4)))
    # the same images judged against the next colour of the palette: every one wrong
    shifted = [{"petal_color": ATTRIBUTE_VALUES["petal_color"][(p + 1) % 7],
                "center_color": ATTRIBUTE_VALUES["center_color"][(c + 1) % 4]} for p, c in labels[:, :2]]
    assert pixel_accuracy(images, shifted)["petal_color"]["accuracy"] == 0.0
    assert pixel_accuracy(images, shifted)["center_color"]["accuracy"] == 0.0
    # a dark blob (all background brightness) shows no petal colour at all
    blob = np.full((1, 64, 64, 3), 90, np.uint8)
    assert pixel_colours(blob)["petal_color"][0] == -1
    unread = pixel_accuracy(blob, [{"petal_color": "red"}])["petal_color"]  # counted as wrong, in no column
    assert (unread["accuracy"], unread["unread"], np.sum(unread["confusion"])) == (0.0, 1, 0)
    with pytest.raises(ValueError, match=r"expected uint8 \[N, 64, 64, 3\]"):
        pixel_colours(np.zeros((2, 32, 32, 3), np.uint8))


def test_evaluate_pixel_cli_trains_nothing_and_writes_pixel_check_json(tmp_path, fresh_flowers, capsys, monkeypatch):
    from PIL import Image

    import tools.evaluation.attribute_classifier as clf
    from tools.errors import UserError
    from tools.evaluate import main

    monkeypatch.setattr(clf, "load_or_train", lambda *a, **k: pytest.fail("--pixel must not load a classifier"))
    images, labels = fresh_flowers
    rows = []
    for i in range(20):
        p, c, _, _ = labels[i]
        wrong = i < 5  # the first 5 captions name another centre colour than their image shows
        rows.append({"id": i + 1, "caption": "a flower", "petal_color": ATTRIBUTE_VALUES["petal_color"][p],
                     "center_color": ATTRIBUTE_VALUES["center_color"][(c + 1) % 4 if wrong else c]})
        Image.fromarray(images[i]).save(tmp_path / f"inference_{i + 1}.png")
    (tmp_path / "caps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--images", str(tmp_path), "--captions", str(tmp_path / "caps.jsonl"), "--pixel"]) == 0
    m = json.loads((tmp_path / "pixel_check.json").read_text())
    assert {a: (v["accuracy"], v["count"]) for a, v in m["pixel_check"].items()} == {
        "petal_color": (1.0, 20), "center_color": (0.75, 20)}
    assert np.trace(m["pixel_check"]["center_color"]["confusion"]) == 15  # the 5 wrong captions sit off the diagonal
    import re

    assert re.search(r"center_color accuracy \(n=20\) +0\.750 +0\.25\n", capsys.readouterr().out)
    (tmp_path / "caps.jsonl").write_text("".join(json.dumps({"id": i + 1, "caption": "a flower", "petal_count": 5})
                                                 + "\n" for i in range(20)))
    with pytest.raises(UserError, match="--pixel: no caption in .* names a petal or centre colour"):
        main(["--images", str(tmp_path), "--captions", str(tmp_path / "caps.jsonl"), "--pixel"])


def test_report_prints_the_confusion_of_weak_attributes_only():
    from tools.evaluation.report import format_confusions

    count = {"accuracy": 0.5, "count": 8, "confusion": [[2, 0, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 2, 0]],
             "unread": 1}
    colour = {"accuracy": 0.99, "count": 100, "confusion": np.diag([15] * 7).tolist(), "unread": 0}
    lines = format_confusions({"petal_count": count, "petal_color": colour, "center_color": {"accuracy": None}})
    assert lines == ["petal_count: rows the value named, columns the value shown",
                     "           4     5     6     8",
                     "     4     2     0     0     0",
                     "     5     0     1     1     0",
                     "     6     0     0     1     0",
                     "     8     0     0     2     0",
                     "      1 images show no petal count at all"]
