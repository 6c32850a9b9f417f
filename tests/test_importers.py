"""Each importer on tiny fixtures: exact caption texts, image paths, ids, test captions, auto-detection."""
from __future__ import annotations

import argparse
import os

import numpy as np
import pytest

from tests.fixtures_datasets import make_csv, make_datalab, make_eee443, make_manifest, make_text_c10, write_image
from tools.datasets import LAYOUTS, add_dataset_args, dataset_from_args, detect_layout, load_dataset
from tools.errors import UserError


def captions_of(ds, image_id):
    row = ds.image_ids.index(image_id)
    return [c for c, r in zip(ds.captions, ds.caption_image) if r == row]


def test_manifest_jsonl(tmp_path):
    root = tmp_path / "Synthetic Flowers"
    make_manifest(
        root,
        [
            {"image_id": "00001", "image_path": "images/00001.png", "captions": ["a red flower", "  five   petals "]},
            {"image_id": "00002", "image_path": "images/00002.png", "captions": ["a blue flower"]},
        ],
        test_rows=[{"id": 7, "caption": "a pink flower", "petal_color": "pink"}, {"id": 9, "caption": "white"}],
    )
    ds = load_dataset(root)
    assert (ds.layout, ds.name) == ("manifest", "synthetic-flowers")
    assert ds.image_ids == ["00001", "00002"]
    assert ds.image_paths == [str(root / "images/00001.png"), str(root / "images/00002.png")]
    assert ds.captions == ["a red flower", "five petals", "a blue flower"]
    assert ds.caption_image.tolist() == [0, 0, 1]
    assert ds.test_ids == ["7", "9"] and ds.test_captions == ["a pink flower", "white"]
    assert ds.skips.total == 0
    # the manifest file itself works too, and with --images-dir relative paths are looked up there
    assert load_dataset(root / "manifest.jsonl").captions == ds.captions
    other = tmp_path / "moved"
    write_image(other / "00001.png"), write_image(other / "00002.png")
    moved = load_dataset(root, images_dir=other)
    assert moved.image_paths == [str(other / "00001.png"), str(other / "00002.png")]


def test_csv_groups_rows_by_image(tmp_path):
    path = make_csv(
        tmp_path / "birds" / "captions.csv",
        [
            ("b1", "img/b1.jpg", "a small bird"),
            ("b2", "img/b2.jpg", "a red bird, with wings"),
            ("b1", "img/b1.jpg", "NA"),  # must stay the text "NA", not become missing
        ],
    )
    ds = load_dataset(path)
    assert (ds.layout, ds.name) == ("csv", "birds")
    assert ds.image_ids == ["b1", "b2"]
    assert captions_of(ds, "b1") == ["a small bird", "NA"]
    assert captions_of(ds, "b2") == ["a red bird, with wings"]
    assert ds.image_paths[1] == str(tmp_path / "birds" / "img" / "b2.jpg")


@pytest.mark.parametrize("as_str", [False, True])
def test_datalab_decodes_ids_pad_and_rare(tmp_path, as_str):
    root = make_datalab(
        tmp_path / "oxford",
        {
            "image_00001": [["this", "flower", "has", "red", "petals"], ["a", "<RARE>", "yellow", "center"]],
            "image_00002": [["a", "white", "flower"]],
        },
        as_str=as_str,
        test={1234: ["a", "red", "flower"], 99: ["<RARE>", "petals"]},
        id2word_order=("id", "word") if as_str else ("word", "id"),
    )
    ds = load_dataset(root)
    assert (ds.layout, ds.name) == ("datalab", "oxford")
    assert ds.image_ids == ["image_00001", "image_00002"]
    assert ds.image_paths == [str(root / "102flowers" / f"{i}.jpg") for i in ds.image_ids]
    assert ds.captions == ["this flower has red petals", "a yellow center", "a white flower"]
    assert ds.caption_image.tolist() == [0, 0, 1]
    assert ds.test_ids == ["1234", "99"] and ds.test_captions == ["a red flower", "petals"]
    assert ds.skips.counts["captions with <RARE> dropped"] == 2
    # RARE is a note, not a skip: --strict accepts it
    assert load_dataset(root, strict=True).captions == ds.captions


def test_datalab_word2id_only(tmp_path):
    root = make_datalab(tmp_path / "d", {"im1": [["red", "petals"]]}, as_str=True)
    (root / "dictionary" / "id2Word.npy").unlink()
    assert load_dataset(root, "datalab").captions == ["red petals"]


def test_text_c10_oxford(tmp_path):
    root = make_text_c10(
        tmp_path / "flowers",
        {
            "class_00001": {"image_00001": "this flower is red\n\nthe petals are round\n",
                            "image_00002": "a white flower"},
            "class_00002": {"image_00003": "  yellow center  \n"},
        },
    )
    ds = load_dataset(root)
    assert (ds.layout, ds.name) == ("text_c10", "flowers")
    assert ds.image_ids == ["image_00001", "image_00002", "image_00003"]
    assert ds.image_paths[2] == str(root / "jpg" / "image_00003.jpg")
    assert ds.captions == ["this flower is red", "the petals are round", "a white flower", "yellow center"]
    assert ds.caption_image.tolist() == [0, 0, 1, 2]
    assert load_dataset(root / "text_c10").captions == ds.captions  # --data may name text_c10 itself


def test_text_c10_cub_images_by_class_folder(tmp_path):
    root = make_text_c10(
        tmp_path / "CUB",
        {"001.Black_footed_Albatross": {"Black_Footed_Albatross_0001_796111": "a large seabird"},
         "002.Laysan_Albatross": {"Laysan_Albatross_0002_1027": "a white bird\nwith grey wings"}},
        image_dir="images", cub=True,
    )
    ds = load_dataset(root)
    assert ds.image_paths == [
        str(root / "images" / "001.Black_footed_Albatross" / "Black_Footed_Albatross_0001_796111.jpg"),
        str(root / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0002_1027.jpg"),
    ]
    assert ds.captions == ["a large seabird", "a white bird", "with grey wings"]


def test_eee443_decodes_and_skips_missing_image(tmp_path):
    urls = [f"http://images.cocodataset.org/train2014/COCO_train2014_{i:012d}.jpg" for i in (123, 456, 789)]
    path = make_eee443(
        tmp_path / "coco" / "eee443_project_dataset_train.h5",
        [["a", "man", "riding", "horse"], ["a", "dog", "on", "beach"], ["a", "x_UNK_", "on", "beach"], ["a", "dog"]],
        imid=[1, 3, 3, 2],
        urls=urls,
        present=[0, 2],  # COCO_..._456.jpg is missing
    )
    ds = load_dataset(path)
    assert (ds.layout, ds.name) == ("eee443", "coco")
    assert ds.image_ids == ["COCO_train2014_000000000123", "COCO_train2014_000000000789"]
    assert ds.image_paths[1] == str(tmp_path / "coco" / "train_images" / "COCO_train2014_000000000789.jpg")
    assert ds.captions == ["a man riding horse", "a dog on beach", "a on beach"]
    assert ds.caption_image.tolist() == [0, 1, 1]
    assert ds.skips.counts["missing image"] == 1
    assert ds.skips.counts["caption of a missing image"] == 1
    assert ds.skips.counts["captions with x_UNK_ dropped"] == 1
    assert "COCO_train2014_000000000456.jpg" in ds.skips.summary()


def test_auto_detection_of_every_layout(tmp_path):
    make_manifest(tmp_path / "m", [{"image_id": "1", "image_path": "1.png", "captions": ["x"]}])
    make_csv(tmp_path / "c" / "caps.csv", [("1", "1.png", "x")])
    make_datalab(tmp_path / "d", {"i": [["red"]]}, as_str=False)
    make_text_c10(tmp_path / "t", {"class_00001": {"image_00001": "x"}})
    make_eee443(tmp_path / "e" / "x.hdf5", [["dog"]], [1], ["http://x/a.jpg"], [0])
    assert detect_layout(tmp_path / "m") == "manifest"
    assert detect_layout(tmp_path / "m" / "manifest.jsonl") == "manifest"
    assert detect_layout(tmp_path / "c" / "caps.csv") == "csv"
    assert detect_layout(tmp_path / "d") == "datalab"
    assert detect_layout(tmp_path / "t") == "text_c10"
    assert detect_layout(tmp_path / "t" / "text_c10") == "text_c10"
    assert detect_layout(tmp_path / "e" / "x.hdf5") == "eee443"
    assert set(LAYOUTS) == {"manifest", "csv", "datalab", "text_c10", "eee443", "imagefolder", "webdataset"}


def test_cli_flags_and_help(tmp_path):
    make_manifest(tmp_path / "my set", [{"image_id": "1", "image_path": "1.png", "captions": ["x"]}])
    parser = argparse.ArgumentParser()
    add_dataset_args(parser)
    args = parser.parse_args(["--data", str(tmp_path / "my set"), "--layout", "manifest", "--strict"])
    ds = dataset_from_args(args)
    assert (ds.name, ds.layout, ds.skips.strict) == ("my-set", "manifest", True)
    text = " ".join(parser.format_help().split())
    assert "loading a pickle can execute code" in text and "only point --data at datasets you trust" in text
    assert "only read from inside the dataset root" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "x", "--layout", "coco"])


def test_name_override_and_absolute_paths(tmp_path):
    image = write_image(tmp_path / "elsewhere" / "a.png")
    make_manifest(tmp_path / "m", [{"image_id": "a", "image_path": str(image), "captions": ["x"]}], images=False)
    ds = load_dataset(tmp_path / "m", name="custom")
    assert ds.name == "custom" and ds.image_paths == [str(image)]
    assert os.path.isabs(ds.image_paths[0]) and isinstance(ds.caption_image, np.ndarray)


def test_forced_layout_mismatch_is_one_line_error(tmp_path):
    make_manifest(tmp_path / "m", [{"image_id": "1", "image_path": "1.png", "captions": ["x"]}])
    with pytest.raises(UserError) as e:
        load_dataset(tmp_path / "m", "datalab")
    assert "text2ImgData.pkl" in str(e.value) and "not found" in str(e.value) and "\n" not in str(e.value)
