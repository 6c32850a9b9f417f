"""Bad inputs: every one is a one-line UserError naming the file/row and the fix, or a counted skip."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from tests.fixtures_datasets import make_csv, make_datalab, make_eee443, make_manifest, make_text_c10, write_image
from tools.dataset import SkipReport
from tools.datasets import load_dataset
from tools.datasets.common import LONG_CHARS, LONG_WORDS, inside_root
from tools.errors import UserError
from tools.images import ImageError, decode_images, load_rgb


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as e:
        fn(*args, **kwargs)
    message = str(e.value)
    assert "\n" not in message, "user errors are one line"
    return message


# ---------------------------------------------------------------- images

def _noise_image(path, fmt, size=(64, 48)):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(path, format=fmt)
    return path.read_bytes()


def test_corrupt_and_truncated_images_raise_image_error(tmp_path):
    jpeg = _noise_image(tmp_path / "ok.jpg", "JPEG")
    png = _noise_image(tmp_path / "ok.png", "PNG")
    (tmp_path / "garbage.jpg").write_bytes(jpeg[:20] + bytes(range(256)) * 8)
    (tmp_path / "half.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "half.png").write_bytes(png[: len(png) // 2])
    for name, reason in [("garbage.jpg", "Pillow can identify"), ("half.jpg", "truncated"), ("half.png", "truncated")]:
        message = error_of(load_rgb, tmp_path / name)
        assert str(tmp_path / name) in message and reason in message and "re-save it" in message
    assert load_rgb(tmp_path / "ok.png", 16).shape == (16, 16, 3)


def test_truncation_surfaces_even_if_someone_enabled_load_truncated(tmp_path, monkeypatch):
    png = _noise_image(tmp_path / "ok.png", "PNG")
    (tmp_path / "half.png").write_bytes(png[: len(png) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError):
        load_rgb(tmp_path / "half.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # their setting is restored


def test_modes_decode_to_exact_rgb(tmp_path):
    Image.new("L", (3, 3), 77).save(tmp_path / "gray.png")
    assert (load_rgb(tmp_path / "gray.png", None) == 77).all()

    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 128), (0, 0, 255, 0), (10, 20, 30, 255)])
    rgba.save(tmp_path / "rgba.png")
    # composited on white: 0 * 128/255 + 255 * 127/255 = 127
    assert load_rgb(tmp_path / "rgba.png", None)[0].tolist() == [[255, 127, 127], [255, 255, 255], [10, 20, 30]]

    la = Image.new("LA", (2, 1))
    la.putdata([(100, 0), (100, 255)])
    la.save(tmp_path / "la.png")
    assert load_rgb(tmp_path / "la.png", None)[0].tolist() == [[255, 255, 255], [100, 100, 100]]

    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 200, 0] + [0] * 762)
    pal.putdata([0, 1])
    pal.save(tmp_path / "pal.png", transparency=0)
    assert load_rgb(tmp_path / "pal.png", None)[0].tolist() == [[255, 255, 255], [0, 200, 0]]

    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putdata([(0, 255, 255, 0), (0, 0, 0, 128)])
    cmyk.save(tmp_path / "cmyk.tif")
    assert load_rgb(tmp_path / "cmyk.tif", None)[0].tolist() == [[255, 0, 0], [127, 127, 127]]


def test_16_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 25700, 65535, 32896]], dtype=np.uint16)  # /257 -> 0, 100, 255, 128
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert load_rgb(tmp_path / "g16.png", None)[0, :, 0].tolist() == [0, 100, 255, 128]
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "g32.tif")  # mode I
    assert load_rgb(tmp_path / "g32.tif", None)[0, :, 1].tolist() == [0, 100, 255, 128]


def test_non_square_is_centre_cropped(tmp_path):
    strip = np.zeros((20, 60, 3), dtype=np.uint8)
    strip[:, :20] = (255, 0, 0)
    strip[:, 20:40] = (0, 255, 0)
    strip[:, 40:] = (0, 0, 255)
    Image.fromarray(strip).save(tmp_path / "wide.png")
    out = load_rgb(tmp_path / "wide.png", 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    assert out[5, 5].tolist() == [0, 255, 0]
    assert out[:, :, 1].min() > 200 and out[:, :, [0, 2]].max() < 60  # no red/blue side crept in


def test_decode_images_counts_and_masks(tmp_path):
    good = write_image(tmp_path / "good.png", color=(1, 2, 3))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    skips = SkipReport()
    images, valid = decode_images([good, tmp_path / "gone.png", tmp_path / "bad.jpg"], 8, skips)
    assert images.shape == (3, 8, 8, 3) and valid.tolist() == [True, False, False]
    assert (images[0] == [1, 2, 3]).all() and not images[1:].any()
    assert skips.counts == {"missing image": 1, "corrupt image": 1}
    assert "bad.jpg" in skips.summary()
    with pytest.raises(UserError, match="corrupt image"):
        decode_images([tmp_path / "bad.jpg"], 8, SkipReport(strict=True))


# ---------------------------------------------------------------- captions and files

def test_missing_image_is_counted_and_strict_makes_it_an_error(tmp_path):
    rows = [{"image_id": "a", "image_path": "a.png", "captions": ["x", "y"]},
            {"image_id": "b", "image_path": "b.png", "captions": ["z"]}]
    make_manifest(tmp_path, rows)
    os.remove(tmp_path / "a.png")
    ds = load_dataset(tmp_path)
    assert ds.image_ids == ["b"] and ds.captions == ["z"]
    assert ds.skips.counts["missing image"] == 1 and ds.skips.counts["caption of a missing image"] == 2
    message = error_of(load_dataset, tmp_path, strict=True)
    assert str(tmp_path / "a.png") in message and "missing image" in message and "--strict" in message


def test_empty_captions_and_images_without_captions(tmp_path):
    make_manifest(tmp_path, [{"image_id": "a", "image_path": "a.png", "captions": ["", "  \t", "ok"]},
                             {"image_id": "b", "image_path": "b.png", "captions": []},
                             {"image_id": "c", "image_path": "c.png", "captions": [" "]}])
    ds = load_dataset(tmp_path)
    assert ds.image_ids == ["a"] and ds.captions == ["ok"]
    assert ds.skips.counts["empty caption"] == 3 and ds.skips.counts["image without captions"] == 2
    assert f"{tmp_path / 'manifest.jsonl'}:1 captions[0]" in ds.skips.summary()
    message = error_of(load_dataset, tmp_path, strict=True)
    assert "manifest.jsonl:1 captions[0]: empty caption" in message


def test_text_c10_blank_file_is_an_image_without_captions(tmp_path):
    make_text_c10(tmp_path, {"class_00001": {"image_00001": "\n\n", "image_00002": "a red flower"}})
    ds = load_dataset(tmp_path)
    assert ds.image_ids == ["image_00002"] and ds.skips.counts == {"image without captions": 1}


def test_absurdly_long_captions_are_truncated_and_counted(tmp_path):
    words = " ".join(f"w{i}" for i in range(150))
    make_manifest(tmp_path, [{"image_id": "a", "image_path": "a.png", "captions": [words, "x" * 5000, "fine"]}])
    ds = load_dataset(tmp_path)
    assert ds.captions[0] == " ".join(f"w{i}" for i in range(LONG_WORDS))
    assert ds.captions[1] == "x" * LONG_CHARS and ds.captions[2] == "fine"
    assert ds.skips.counts == {"truncated long caption": 2}
    assert "truncated long caption" in error_of(load_dataset, tmp_path, strict=True)


def test_non_utf8_text_names_file_and_line(tmp_path):
    make_text_c10(tmp_path / "t", {"class_00001": {"image_00001": b"a red flower\nthe petal is caf\xe9\n"}})
    message = error_of(load_dataset, tmp_path / "t")
    assert "image_00001.txt:2: not UTF-8" in message and "re-save the file as UTF-8" in message

    make_csv(tmp_path / "c" / "caps.csv", [("a", "a.png", "ok"), ("a", "a.png", "PLACEHOLDER")])
    csv = tmp_path / "c" / "caps.csv"
    csv.write_bytes(csv.read_bytes().replace(b"PLACEHOLDER", "naïve".encode("latin-1")))
    assert "caps.csv:3: not UTF-8" in error_of(load_dataset, csv)

    make_manifest(tmp_path / "m", [{"image_id": "a", "image_path": "a.png", "captions": ["PLACEHOLDER"]}])
    jsonl = tmp_path / "m" / "manifest.jsonl"
    jsonl.write_bytes(jsonl.read_bytes().replace(b"PLACEHOLDER", b"\xff\xfe"))
    assert "manifest.jsonl:1: not UTF-8" in error_of(load_dataset, tmp_path / "m")


def test_duplicate_image_ids_name_both_places(tmp_path):
    make_manifest(tmp_path / "m", [{"image_id": "7", "image_path": "a.png", "captions": ["x"]},
                                   {"image_id": "8", "image_path": "b.png", "captions": ["y"]},
                                   {"image_id": "7", "image_path": "c.png", "captions": ["z"]}])
    message = error_of(load_dataset, tmp_path / "m")
    assert "duplicate image id '7'" in message and "manifest.jsonl:1" in message and "manifest.jsonl:3" in message

    make_csv(tmp_path / "c" / "caps.csv", [("a", "a.png", "x"), ("a", "other.png", "y")])
    message = error_of(load_dataset, tmp_path / "c" / "caps.csv")
    assert "duplicate image id 'a'" in message
    assert "caps.csv:2 (a.png)" in message and "caps.csv:3 (other.png)" in message

    make_text_c10(tmp_path / "t", {"class_00001": {"image_00001": "x"}, "class_00002": {"image_00001": "y"}})
    message = error_of(load_dataset, tmp_path / "t")
    assert "class_00001/image_00001.txt" in message and "class_00002/image_00001.txt" in message

    root = make_datalab(tmp_path / "d", {"im": [["red"]]}, as_str=True)
    table = pd.read_pickle(root / "dataset" / "text2ImgData.pkl")
    pd.concat([table, table]).to_pickle(root / "dataset" / "text2ImgData.pkl")
    message = error_of(load_dataset, root)
    assert "duplicate image id 'im'" in message and "row 0" in message and "row 1" in message


def test_pickle_that_is_not_the_expected_dataframe(tmp_path):
    root = make_datalab(tmp_path / "d", {"im": [["red"]]}, as_str=False)
    pkl = root / "dataset" / "text2ImgData.pkl"
    pd.to_pickle({"Captions": [], "ImagePath": []}, pkl)
    message = error_of(load_dataset, root)
    assert str(pkl) in message and "found a builtins.dict" in message and "expected a pandas DataFrame" in message

    pd.DataFrame({"Captions": [[[5]]]}, index=["im"]).to_pickle(pkl)
    message = error_of(load_dataset, root)
    assert "lacks column(s) ImagePath" in message and "has Captions" in message

    pd.DataFrame({"Captions": ["5 6"], "ImagePath": ["./102flowers/im.jpg"]}, index=["im"]).to_pickle(pkl)
    message = error_of(load_dataset, root)
    assert "row 0 (id im)" in message and "Captions is str" in message and "expected a list of captions" in message

    pd.DataFrame({"Captions": [[[5, 999]]], "ImagePath": ["./102flowers/im.jpg"]}, index=["im"]).to_pickle(pkl)
    assert "word id 999 is not in the dictionary" in error_of(load_dataset, root)


def test_pickles_outside_the_root_are_refused(tmp_path):
    outside = make_datalab(tmp_path / "elsewhere", {"im": [["red"]]}, as_str=False)
    root = make_datalab(tmp_path / "root", {"im": [["red"]]}, as_str=False)
    pkl = root / "dataset" / "text2ImgData.pkl"
    pkl.unlink()
    pkl.symlink_to(outside / "dataset" / "text2ImgData.pkl")
    message = error_of(load_dataset, root)
    assert "symlink" in message and "only read from inside the dataset root" in message

    pkl.unlink()
    os.rmdir(root / "dataset")
    (root / "dataset").symlink_to(outside / "dataset")
    assert "symlink" in error_of(load_dataset, root, "datalab")

    assert "outside the dataset root" in error_of(inside_root, root, "../elsewhere/dataset/text2ImgData.pkl", "pickle")


def test_unknown_layout_lists_what_was_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    message = error_of(load_dataset, tmp_path / "empty")
    for needle in ("unknown dataset layout", "manifest.jsonl", "dataset/text2ImgData.pkl", "text_c10/",
                   "train_cap and word_code", "metadata.jsonl",
                   "--layout {auto,manifest,csv,datalab,text_c10,eee443,imagefolder,webdataset}"):
        assert needle in message
    message = error_of(load_dataset, tmp_path / "empty", "coco")
    assert "unknown layout 'coco'" in message and "auto, manifest, csv, datalab, text_c10, eee443, imagefolder" in message
    assert "no such file or folder" in error_of(load_dataset, tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hi")
    assert "unknown dataset file type" in error_of(load_dataset, tmp_path / "x.txt")


def test_malformed_manifest_rows(tmp_path):
    make_manifest(tmp_path, [{"image_id": "a", "image_path": "a.png", "captions": ["x"]}])
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write('{"image_id": "b", "image_path": "b.png", "captions": "one string"}\n')
    message = error_of(load_dataset, tmp_path)
    assert "manifest.jsonl:2: field 'captions' is str" in message and "expected a list of caption strings" in message
    (tmp_path / "manifest.jsonl").write_text('{"image_id": "a",\n')
    assert "manifest.jsonl:1: not valid JSON" in error_of(load_dataset, tmp_path)
    make_csv(tmp_path / "c.csv", [("a", "a.png", "x")])
    (tmp_path / "c.csv").write_text("id,path,text\n1,a.png,x\n")
    message = error_of(load_dataset, tmp_path / "c.csv")
    assert "lacks column(s) image_id, image_path, caption; found id, path, text" in message


def test_eee443_bad_files(tmp_path):
    path = make_eee443(tmp_path / "x.h5", [["dog"]], [1], ["http://x/a.jpg"], [0], image_dir="somewhere")
    message = error_of(load_dataset, path)
    assert "no image folder found" in message and "--images-dir" in message
    assert load_dataset(path, images_dir=tmp_path / "somewhere").captions == ["dog"]

    import h5py

    with h5py.File(path, "a") as f:
        f["train_imid"][0] = 5
    assert "train_imid[0] = 5 is outside 1..1" in error_of(load_dataset, path, images_dir=tmp_path / "somewhere")
    with h5py.File(path, "a") as f:
        del f["word_code"]
        f["word_code"] = np.arange(3)
    assert "expected one compound record" in error_of(load_dataset, path, "eee443", images_dir=tmp_path / "somewhere")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["images"] = np.zeros(3)
    assert "HDF5 file without train_cap and word_code" in error_of(load_dataset, other)


def test_strict_turns_every_skip_into_an_error(tmp_path):
    make_manifest(tmp_path, [{"image_id": "a", "image_path": "a.png", "captions": ["fine"]},
                             {"image_id": "b", "image_path": "b.png", "captions": []}])
    assert load_dataset(tmp_path).skips.counts == {"image without captions": 1}
    message = error_of(load_dataset, tmp_path, strict=True)
    assert "manifest.jsonl:2: image without captions" in message and "[--strict]" in message
    assert json.loads((tmp_path / "manifest.jsonl").read_text().splitlines()[1])["image_id"] == "b"
