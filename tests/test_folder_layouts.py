"""The imagefolder and webdataset layouts: exact captions, ids and image references, counted skips, --strict,
detection, one-line errors, shard references decoded in one pass, and a folder and its shards giving the same
embedding cache and image cache apart from provenance."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.fixtures_datasets import make_imagefolder, make_shards, png_bytes, write_image
from tools.dataset import SkipReport
from tools.datasets import add_dataset_args, dataset_from_args, detect_layout, load_dataset
from tools.datasets.shards import split_key, split_ref
from tools.errors import UserError
from tools.images import decode_images, load_rgb

REPO = Path(__file__).resolve().parent.parent


def captions_of(ds, image_id):
    row = ds.image_ids.index(image_id)
    return [c for c, r in zip(ds.captions, ds.caption_image) if r == row]


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as e:
        fn(*args, **kwargs)
    message = str(e.value)
    assert "\n" not in message
    return message


# ---- imagefolder ---------------------------------------------------------------------------------------------

def test_imagefolder_metadata_jsonl(tmp_path):
    root = make_imagefolder(tmp_path / "My Flowers", {
        "0001.jpg": "a red flower", "sub/0002.png": ["a blue flower", "  round   petals "], "0003.jpg": None,
    })
    with open(root / "metadata.jsonl", "a") as f:  # a repeated file_name adds a caption
        f.write(json.dumps({"file_name": "0001.jpg", "text": "five petals"}) + "\n")
    ds = load_dataset(root)
    assert (ds.layout, ds.name) == ("imagefolder", "my-flowers")
    assert ds.image_ids == ["0001", "sub/0002"]
    assert ds.image_paths == [str(root / "0001.jpg"), str(root / "sub" / "0002.png")]
    assert captions_of(ds, "0001") == ["a red flower", "five petals"]
    assert captions_of(ds, "sub/0002") == ["a blue flower", "round petals"]
    assert dict(ds.skips.counts) == {"image without captions": 1}  # 0003.jpg: no row names it
    assert str(root / "0003.jpg") in ds.skips.summary()
    assert "0003.jpg" in error_of(load_dataset, root, strict=True)


def test_imagefolder_csv_caption_column_and_splits(tmp_path):
    root = tmp_path / "set"
    make_imagefolder(root / "train", {"a.jpg": "a dog", "b.jpg": "a cat"}, metadata="csv", column="prompt",
                     extra={"url": "http://x/a.jpg", "note": "ok"})
    make_imagefolder(root / "test", {"c.jpg": "a bird"}, metadata="csv", column="prompt",
                     extra={"url": "http://x/c.jpg", "note": "ok"})
    ds = load_dataset(root)
    assert ds.layout == "imagefolder" and ds.image_ids == ["test/c", "train/a", "train/b"]
    assert ds.captions == ["a bird", "a dog", "a cat"]
    # two text columns besides file_name and no known name: ask for --caption-column
    (root / "test" / "metadata.csv").write_text("file_name,desc,url\nc.jpg,a bird,http://x/c.jpg\n")
    message = error_of(load_dataset, root)
    assert "metadata.csv" in message and "--caption-column" in message and "desc, url" in message
    assert "train/metadata.csv: --caption-column 'desc' is not a column" in error_of(load_dataset, root,
                                                                                     caption_column="desc")
    (root / "train" / "metadata.csv").write_text("file_name,desc,url\na.jpg,a dog,u\nb.jpg,a cat,u\n")
    assert load_dataset(root, caption_column="desc").captions == ["a bird", "a dog", "a cat"]
    assert "'nope' is not a column" in error_of(load_dataset, root, caption_column="nope")
    # ... and the flag, through the shared CLI arguments
    parser = __import__("argparse").ArgumentParser()
    add_dataset_args(parser)
    args = parser.parse_args(["--data", str(root / "test"), "--caption-column", "desc"])
    assert dataset_from_args(args).captions == ["a bird"]
    assert "applies to the imagefolder and webdataset" in error_of(
        load_dataset, root / "test" / "metadata.csv", "csv", caption_column="desc")


def test_imagefolder_caption_files(tmp_path):
    root = make_imagefolder(tmp_path / "ft", {
        "a.jpg": ["a red flower", "", "with five petals"], "deep/b.png": "a white flower", "c.jpg": None,
    }, metadata=None)
    (root / "orphan.txt").write_text("no image for me\n")
    ds = load_dataset(root)
    assert ds.layout == "imagefolder" and ds.image_ids == ["a", "deep/b"]
    assert captions_of(ds, "a") == ["a red flower", "with five petals"]
    assert captions_of(ds, "deep/b") == ["a white flower"]
    assert dict(ds.skips.counts) == {"caption file without image": 1, "image without captions": 1}
    assert "orphan.txt" in error_of(load_dataset, root, strict=True)


def test_imagefolder_bad_rows_are_one_line_errors(tmp_path):
    root = make_imagefolder(tmp_path / "x", {"a.jpg": "dog"})
    (root / "metadata.jsonl").write_text('{"file_name": "a.jpg", "text": 3}\n')
    assert "metadata.jsonl:1 text: caption is int 3" in error_of(load_dataset, root)
    (root / "metadata.jsonl").write_text('{"name": "a.jpg", "text": "dog"}\n')
    assert "no 'file_name' column" in error_of(load_dataset, root)
    (root / "metadata.jsonl").write_text('{"file_name": "gone.jpg", "text": "dog"}\n{"file_name": "a.jpg", "text": "x"}\n')
    ds = load_dataset(root)
    assert ds.skips.counts["missing image"] == 1 and ds.skips.counts["caption of a missing image"] == 1


# ---- webdataset ----------------------------------------------------------------------------------------------

def samples_for(n: int, text="txt"):
    out = []
    for i in range(n):
        cap = f"flower number {i}\nsecond caption {i}"
        others = {"txt": cap.encode()} if text == "txt" else {
            "json": json.dumps({"caption": f"flower number {i}", "url": f"http://x/{i}.jpg", "key": f"{i:09d}",
                                "status": "success", "width": 10}).encode()}
        out.append((f"{i:09d}", png_bytes((20 * i, 0, 0)), others))
    return out


def test_webdataset_pattern_folder_and_file(tmp_path):
    shards = make_shards(tmp_path / "shards", samples_for(5), per_shard=2)  # 00000..00002.tar
    ds = load_dataset(str(tmp_path / "shards" / "{00000..00002}.tar"))
    assert (ds.layout, ds.name) == ("webdataset", "shards")
    assert ds.image_ids == [f"{i:09d}" for i in range(5)]
    assert ds.image_paths[3] == f"{shards[1]}#000000003.jpg"
    assert captions_of(ds, "000000004") == ["flower number 4", "second caption 4"]
    assert ds.skips.total == 0
    assert load_dataset(tmp_path / "shards").image_ids == ds.image_ids  # a folder of shards
    assert load_dataset(shards[1]).image_ids == ["000000002", "000000003"]  # one shard
    # the pattern names a shard that is not there: counted, not fatal (unless --strict)
    partial = load_dataset(str(tmp_path / "shards" / "{00000..00003}.tar"))
    assert partial.num_images == 5 and partial.skips.counts["missing shard"] == 1
    assert "00003.tar: missing shard" in error_of(load_dataset, str(tmp_path / "shards" / "{00000..00003}.tar"),
                                                  strict=True)
    assert "none of the 2 shards" in error_of(load_dataset, str(tmp_path / "shards" / "{00007..00008}.tar"))
    # compressed shards stream the same way, images included
    import gzip
    gz = tmp_path / "gz" / "00001.tar.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(shards[1].read_bytes()))
    zipped = load_dataset(tmp_path / "gz")
    assert zipped.image_ids == ["000000002", "000000003"] and zipped.image_paths[1] == f"{gz}#000000003.jpg"
    assert load_rgb(zipped.image_paths[1], 4)[0, 0].tolist() == [60, 0, 0]


def test_webdataset_json_captions_skips_and_duplicates(tmp_path):
    samples = samples_for(3, text="json") + [
        ("only-text", None, {"txt": b"a caption without its image"}),
        ("only-image", png_bytes(), {"cls": b"3"}),
    ]
    make_shards(tmp_path / "s", samples, per_shard=10)
    ds = load_dataset(tmp_path / "s" / "00000.tar")
    assert ds.image_ids == ["000000000", "000000001", "000000002"]
    assert ds.captions == ["flower number 0", "flower number 1", "flower number 2"]
    assert ds.skips.counts["caption without image"] == 1 and ds.skips.counts["image without captions"] == 1
    assert ds.skips.counts["shard members of other kinds ignored (.cls)"] == 1
    assert load_dataset(tmp_path / "s" / "00000.tar", caption_column="url").captions[0] == "http://x/0.jpg"
    # the same key in two shards is ambiguous
    make_shards(tmp_path / "dup", samples_for(2) + samples_for(1), per_shard=2)
    message = error_of(load_dataset, tmp_path / "dup")
    assert "duplicate image id '000000000'" in message and "00000.tar#" in message and "00001.tar#" in message


def test_webdataset_damaged_shards(tmp_path):
    (shard,) = make_shards(tmp_path / "s", samples_for(4), per_shard=4)
    data = shard.read_bytes()
    cut = tmp_path / "cut" / "00000.tar"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2 + 100])  # breaks off inside the third sample
    ds = load_dataset(cut)
    assert ds.image_ids == ["000000000", "000000001"] and ds.skips.counts["truncated shard"] == 1
    assert "truncated shard" in error_of(load_dataset, cut, strict=True)
    (tmp_path / "bad.tar").write_bytes(b"this is not a tar file" * 40)
    assert "bad.tar: not a readable tar archive" in error_of(load_dataset, tmp_path / "bad.tar")
    assert "--images-dir" in error_of(load_dataset, shard, images_dir=tmp_path)


def test_detection(tmp_path):
    make_imagefolder(tmp_path / "meta", {"a.jpg": "x"})
    make_imagefolder(tmp_path / "pairs", {"a.jpg": "x"}, metadata=None)
    shards = make_shards(tmp_path / "wds", samples_for(2), per_shard=1)
    assert detect_layout(tmp_path / "meta") == "imagefolder"
    assert detect_layout(tmp_path / "pairs") == "imagefolder"
    assert detect_layout(tmp_path / "wds") == "webdataset"
    assert detect_layout(shards[0]) == "webdataset"
    assert detect_layout(tmp_path / "wds" / "{00000..00001}.tar") == "webdataset"


# ---- shard references ----------------------------------------------------------------------------------------

def test_shard_references_decode_in_one_pass(tmp_path, monkeypatch):
    shards = make_shards(tmp_path / "s", samples_for(6), per_shard=3)
    ds = load_dataset(tmp_path / "s")
    assert split_ref(ds.image_paths[4]) == (str(shards[1]), "000000004.jpg")
    assert split_key("a/b/0017.seg.PNG") == ("a/b/0017", "seg.png")
    # a real file whose name holds '#' stays a path
    odd = write_image(tmp_path / "odd.tar#x.png")
    assert split_ref(odd) is None and load_rgb(odd, 4).shape == (4, 4, 3)

    import tools.datasets.shards as shard_module
    opened = []
    real = shard_module.tarfile.open
    monkeypatch.setattr(shard_module.tarfile, "open", lambda p, mode: opened.append(p) or real(p, mode=mode))
    refs = ds.image_paths[::-1] + [f"{shards[0]}#nope.jpg", str(tmp_path / "gone.png")]  # any order
    skips = SkipReport()
    images, valid = decode_images(refs, 8, skips)  # [8, 8, 8, 3]
    assert sorted(opened) == [str(shards[0]), str(shards[1])]  # each shard streamed once
    assert valid.tolist() == [True] * 6 + [False, False]
    assert images[:6, 0, 0, 0].tolist() == [100, 80, 60, 40, 20, 0]  # sample i is red 20*i
    assert dict(skips.counts) == {"missing image": 2}
    assert (load_rgb(ds.image_paths[2], 8) == images[3]).all()


# ---- a folder and its shards give the same caches ------------------------------------------------------------

def folder_to_shards(root: Path, out: Path, per_shard: int) -> None:
    """Pack an imagefolder of name.jpg + name.txt into shards, in the importer's order."""
    ds = load_dataset(root)
    samples = [(i, Path(p).read_bytes(), {"txt": Path(p).with_suffix(".txt").read_bytes()})
               for i, p in zip(ds.image_ids, ds.image_paths)]
    make_shards(out, samples, per_shard)


def test_folder_and_shards_give_the_same_cache(tmp_path, monkeypatch):
    from cache.writer import build_cache_report
    from embeddings.registry import get_encoder
    from gan.image_cache import load_or_build_image_cache

    captions = {f"{i:04d}.jpg": [f"a flower with {i} petals", "a red flower"] for i in range(7)}
    folder = make_imagefolder(tmp_path / "flowers", captions, metadata=None)
    folder_to_shards(folder, tmp_path / "shards", per_shard=3)
    words = sorted({w for caps in captions.values() for c in caps for w in c.split()})
    vectors = tmp_path / "glove.txt"
    vectors.write_text("".join(f"{w} {i} {len(w) / 4} -1.5\n" for i, w in enumerate(words)))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the same 'created' attribute in both files
    caches = {}
    for name, data in (("folder", folder), ("shards", str(tmp_path / "shards" / "{00000..00002}.tar"))):
        ds = load_dataset(data, name="flowers")
        out = tmp_path / name / "flowers-glove.h5"
        build_cache_report(ds, get_encoder(f"glove:{vectors}"), out, log=None)
        images, valid, _ = load_or_build_image_cache(out, ds.image_paths, 16, lambda *_: None, progress=False,
                                                     dataset_name="flowers")
        caches[name] = (out, images, valid, ds)
    (a, img_a, valid_a, ds_a), (b, img_b, valid_b, ds_b) = caches["folder"], caches["shards"]
    assert ds_a.layout == "imagefolder" and ds_b.layout == "webdataset"
    assert valid_a.all() and valid_b.all() and np.array_equal(img_a, img_b)  # [7, 16, 16, 3] equal pixels
    assert len(np.unique(img_a[:, 8, 8, 0])) == 7

    def contents(path):
        with h5py.File(path, "r") as f:
            data = {}
            f.visititems(lambda k, v: data.__setitem__(k, v[()].tolist() if v.dtype.kind == "O" else v[()].tobytes())
                         if isinstance(v, h5py.Dataset) else None)
            return data, {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    data_a, attrs_a = contents(a)
    data_b, attrs_b = contents(b)
    provenance_data = {"images/path"}
    provenance_attrs = {"dataset_root", "dataset_layout"}
    assert {k for k in data_a if data_a[k] != data_b.get(k)} == provenance_data
    assert {k for k in attrs_a if attrs_a[k] != attrs_b.get(k)} == provenance_attrs
    assert set(data_a) == set(data_b) and set(attrs_a) == set(attrs_b)
    assert attrs_a["fingerprint"] == attrs_b["fingerprint"]


def test_precompute_cli_reads_a_shard_pattern(tmp_path):
    """As a user runs it: a quoted brace pattern and --caption-column on the command line."""
    make_shards(tmp_path / "shards", samples_for(4, text="json"), per_shard=2)
    words = sorted({w for i in range(4) for w in f"flower number {i}".split()})
    vectors = tmp_path / "glove.txt"
    vectors.write_text("".join(f"{w} {i} 0.5 -1.5\n" for i, w in enumerate(words)))
    out = tmp_path / "c.h5"
    run = subprocess.run([sys.executable, "precompute_embeddings.py", "--data", str(tmp_path / "shards/{00000..00001}.tar"),
                          "--caption-column", "caption", "--encoder", f"glove:{vectors}", "--out", str(out),
                          "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith(f"wrote {out}: 4 captions (4 unique)")
    with h5py.File(out, "r") as f:
        assert f.attrs["dataset_layout"] == "webdataset"
        assert [p.decode() for p in f["images/path"][()]][1].endswith("00000.tar#000000001.jpg")
