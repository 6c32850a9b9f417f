"""Class labels through every importer that has them, into the cache and back (tools/datasets/labels.py, cache/)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cache.fingerprint import cache_fingerprint
from cache.reader import EmbeddingCache
from cache.writer import build_cache
from tests.fixtures_datasets import make_csv, make_manifest, make_text_c10, write_image
from test_gan_fixtures import HashEncoder
from tools.datasets import load_dataset
from tools.errors import UserError

# the fingerprint of the unlabelled manifest below, computed by the code before labels existed (commit a03e286)
UNLABELLED_FINGERPRINT = "bb96adbe3897c37893d9e244c1b4e44474e78d25023545c9e2c21fc04b6edacc"


def manifest_rows(classes=None):
    rows = [{"image_id": f"im{i}", "image_path": f"images/im{i}.png", "captions": [f"a flower {i}", f"petals {i}"]}
            for i in range(3)]
    for row, c in zip(rows, classes or []):
        if c is not None:
            row["class"] = c
    return rows


def round_trip(ds, tmp_path, name="c.h5"):
    """Build a cache of ds and read its labels back: (ids, names, label source, fingerprint)."""
    out = build_cache(ds, HashEncoder(16), tmp_path / name, log=None)
    with EmbeddingCache.open(out) as cache:
        got = cache.labels()
        return (None, None) if got is None else got, cache.label_source, cache.fingerprint


def test_unlabelled_dataset_is_unchanged(tmp_path):
    make_manifest(tmp_path / "m", manifest_rows())
    ds = load_dataset(tmp_path / "m")
    assert ds.labels is None and ds.label_names is None
    (ids, names), source, fingerprint = round_trip(ds, tmp_path)
    assert ids is None and source == "" and fingerprint == UNLABELLED_FINGERPRINT


def test_manifest_class_field_round_trips_and_is_fingerprinted(tmp_path):
    make_manifest(tmp_path / "m", manifest_rows(["rose", "daisy", "rose"]))
    ds = load_dataset(tmp_path / "m")
    (ids, names), source, fingerprint = round_trip(ds, tmp_path)
    assert names == ["daisy", "rose"] and ids.tolist() == [1, 0, 1] and source == "class"
    assert fingerprint != UNLABELLED_FINGERPRINT
    none = load_dataset(tmp_path / "m", labels="none")  # --labels none: the unlabelled cache, fingerprint and all
    assert none.labels is None and round_trip(none, tmp_path, "n.h5")[2] == UNLABELLED_FINGERPRINT


def test_manifest_label_errors_are_one_line(tmp_path):
    make_manifest(tmp_path / "a", manifest_rows(["rose", None, "rose"]))
    with pytest.raises(UserError, match=r"manifest.jsonl:2: no class, but other images have one \(1 of 3"):
        load_dataset(tmp_path / "a")
    rows = manifest_rows(["rose", "daisy", "rose"])
    rows[1]["label"] = "daisy"
    make_manifest(tmp_path / "b", rows)
    with pytest.raises(UserError, match=r"manifest.jsonl:2: both 'class' and 'label'"):
        load_dataset(tmp_path / "b")


def test_text_c10_class_folders_are_labels(tmp_path):
    root = make_text_c10(tmp_path / "flowers", {"class_00002": {"image_00001": "red", "image_00002": "white"},
                                                "class_00001": {"image_00003": "yellow"}})
    ds = load_dataset(root)
    (ids, names), source, _ = round_trip(ds, tmp_path)
    assert ds.image_ids == ["image_00003", "image_00001", "image_00002"]
    assert names == ["class_00001", "class_00002"] and ids.tolist() == [0, 1, 1] and source == "class"


def test_csv_class_column(tmp_path):
    import pandas as pd

    path = make_csv(tmp_path / "d.csv", [("a", "a.png", "x"), ("b", "b.png", "y"), ("a", "a.png", "z")])
    table = pd.read_csv(path)
    table["label"] = ["cat", "dog", "cat"]
    table.to_csv(path, index=False)
    (ids, names), source, _ = round_trip(load_dataset(path), tmp_path)
    assert names == ["cat", "dog"] and ids.tolist() == [0, 1] and source == "class"
    table["label"] = ["cat", "dog", "dog"]
    table.to_csv(path, index=False)
    with pytest.raises(UserError, match=r"d.csv:4: image 'a' has class 'dog' here but another class at .*d.csv:2"):
        load_dataset(path)


def test_imagefolder_label_column_is_a_label_not_a_caption(tmp_path):
    root = tmp_path / "folder"
    for k, name in enumerate(["0.jpg", "1.jpg"]):
        write_image(root / name, color=(k, 0, 0))
    rows = [{"file_name": "0.jpg", "description": "a red rose", "label": "rose"},
            {"file_name": "1.jpg", "description": "a daisy", "label": 3},
            {"file_name": "0.jpg", "description": "a rose again", "label": "rose"}]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_dataset(root)
    assert ds.captions == ["a red rose", "a daisy", "a rose again"] and ds.caption_image.tolist() == [0, 1, 0]
    (ids, names), _, _ = round_trip(ds, tmp_path)
    assert names == ["3", "rose"] and ids.tolist() == [1, 0]


def test_attribute_grouping_of_the_synthetic_flowers(tmp_path):
    from tools.synthetic import generate_dataset

    data = tmp_path / "flowers"
    generate_dataset(data, n=12, seed=0, n_test=2, progress=False)
    attrs = [json.loads(line) for line in (data / "attributes.jsonl").read_text().splitlines()]
    ds = load_dataset(data, labels="petal_color,petal_shape")
    by_id = {a["image_id"]: f"{a['petal_color']}|{a['petal_shape']}" for a in attrs}
    assert [ds.label_names[i] for i in ds.labels] == [by_id[i] for i in ds.image_ids]
    (ids, names), source, fp14 = round_trip(ds, tmp_path, "a.h5")
    assert ids.tolist() == ds.labels.tolist() and names == ds.label_names and source == "petal_color,petal_shape"
    all4 = load_dataset(data, labels="petal_color,center_color,petal_count,petal_shape")
    assert all4.label_names[all4.labels[0]] == "|".join(str(attrs[0][a]) for a in
                                                        ("petal_color", "center_color", "petal_count", "petal_shape"))
    enc = HashEncoder(16).config()
    assert len({cache_fingerprint(d, enc, "float32") for d in (ds, all4, load_dataset(data))}) == 3
    with pytest.raises(UserError, match=r"attributes.jsonl:1: no attribute 'petal_size'; this file has petal_color"):
        load_dataset(data, labels="petal_color,petal_size")
    with pytest.raises(UserError, match=r"--labels 'a,,b': expected auto, none or distinct attribute names"):
        load_dataset(data, labels="a,,b")


def test_precompute_cli_stores_the_grouping(tmp_path):
    import precompute_embeddings
    from tools.synthetic import generate_dataset

    data = tmp_path / "flowers"
    generate_dataset(data, n=8, seed=1, n_test=2, progress=False)
    out = tmp_path / "l.h5"
    precompute_embeddings.main(["--data", str(data), "--encoder", "tfidf", "--out", str(out), "--no-progress",
                                "--labels", "petal_shape"])
    with EmbeddingCache.open(out) as cache:
        ids, names = cache.labels()
        shapes = {json.loads(r)["image_id"]: json.loads(r)["petal_shape"]
                  for r in (data / "attributes.jsonl").read_text().splitlines()}
        assert [names[i] for i in ids] == [shapes[i] for i in cache.image_ids()]
        assert set(names) <= {"round", "pointed"} and cache.label_source == "petal_shape"
    with pytest.raises(UserError, match="built from other inputs"):  # another grouping is another cache
        precompute_embeddings.main(["--data", str(data), "--encoder", "tfidf", "--out", str(out), "--no-progress"])
    assert np.asarray(ids).dtype == np.int64
