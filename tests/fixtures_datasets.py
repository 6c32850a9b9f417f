"""Tiny dataset fixtures in every supported layout, built in a test's tmp_path (no files are shipped)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# DataLab-style dictionary: id 0 is <PAD>, 1 is <RARE>
VOCAB = ["<PAD>", "<RARE>", "this", "flower", "has", "red", "petals", "a", "yellow", "center", "white"]
WORD_ID = {w: i for i, w in enumerate(VOCAB)}


def write_image(path: Path, color=(200, 30, 40), size=(12, 8), fmt: str | None = None) -> Path:
    """A solid-colour RGB image (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def make_manifest(root: Path, rows: list[dict], test_rows: list[dict] | None = None, images=True) -> Path:
    """manifest.jsonl (+ test_captions.jsonl) under root; images for each row's image_path unless images=False."""
    root.mkdir(parents=True, exist_ok=True)
    for row in rows if images else []:
        write_image(root / row["image_path"])
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if test_rows is not None:
        (root / "test_captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test_rows), encoding="utf-8")
    return root / "manifest.jsonl"


def make_csv(path: Path, rows: list[tuple[str, str, str]], images=True) -> Path:
    """CSV with header image_id,image_path,caption written by pandas; images beside it."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    for _, image_path, _ in rows if images else []:
        if not (path.parent / image_path).exists():
            write_image(path.parent / image_path)
    pd.DataFrame(rows, columns=["image_id", "image_path", "caption"]).to_csv(path, index=False)
    return path


def encode_words(words: list[str], as_str: bool, length: int = 20) -> list:
    """A DataLab caption: word ids padded with <PAD> to 20, ints or digit strings."""
    ids = [WORD_ID[w] for w in words] + [WORD_ID["<PAD>"]] * (length - len(words))
    return [str(i) for i in ids] if as_str else ids


def make_datalab(root: Path, captions: dict[str, list[list[str]]], *, as_str: bool,
                 test: dict[int, list[str]] | None = None, id2word_order=("id", "word"), images=True) -> Path:
    """ROOT/dataset/text2ImgData.pkl (+ testData.pkl), ROOT/dictionary/*.npy, ROOT/102flowers/*.jpg."""
    import pandas as pd

    (root / "dataset").mkdir(parents=True, exist_ok=True)
    (root / "dictionary").mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        {
            "Captions": [[encode_words(c, as_str) for c in caps] for caps in captions.values()],
            "ImagePath": [f"./102flowers/{image_id}.jpg" for image_id in captions],
        },
        index=list(captions),
    )
    table.to_pickle(root / "dataset" / "text2ImgData.pkl")
    if test is not None:
        pd.DataFrame({"ID": list(test), "Captions": [encode_words(c, as_str) for c in test.values()]}).to_pickle(
            root / "dataset" / "testData.pkl"
        )
    np.save(root / "dictionary" / "vocab.npy", np.array(VOCAB))
    np.save(root / "dictionary" / "word2Id.npy", np.array([[w, str(i)] for w, i in WORD_ID.items()]))
    pairs = [[str(i), w] if id2word_order[0] == "id" else [w, str(i)] for w, i in WORD_ID.items()]
    np.save(root / "dictionary" / "id2Word.npy", np.array(pairs))
    for image_id in captions if images else []:
        write_image(root / "102flowers" / f"{image_id}.jpg")
    return root


def make_text_c10(root: Path, files: dict[str, dict[str, str]], image_dir: str = "jpg", cub=False) -> Path:
    """ROOT/text_c10/<class>/<stem>.txt with the given text; images ROOT/jpg/<stem>.jpg (CUB: images/<class>/)."""
    for class_name, stems in files.items():
        for stem, text in stems.items():
            txt = root / "text_c10" / class_name / f"{stem}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
            folder = root / image_dir / class_name if cub else root / image_dir
            write_image(folder / f"{stem}.jpg")
    return root


EEE_WORDS = ["x_NULL_", "x_START_", "x_END_", "x_UNK_", "a", "man", "riding", "horse", "on", "beach", "dog"]


def make_eee443(path: Path, captions: list[list[str]], imid: list[int], urls: list[str],
                present: list[int], image_dir="train_images") -> Path:
    """EEE443-style HDF5: train_cap [N,17] framed/padded, train_imid 1-based, train_url bytes, word_code record.

    Only images whose url index is in `present` are written into image_dir beside the .h5.
    """
    import h5py

    code = {w: i for i, w in enumerate(EEE_WORDS)}
    caps = np.full((len(captions), 17), code["x_NULL_"], dtype=np.int64)
    for row, words in enumerate(captions):
        ids = [code["x_START_"], *(code[w] for w in words), code["x_END_"]]
        caps[row, : len(ids)] = ids
    record = np.zeros((1,), dtype=np.dtype([(w, "<i8") for w in EEE_WORDS]))
    for w, i in code.items():
        record[0][w] = i
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["train_cap"] = caps
        f["train_imid"] = np.asarray(imid, dtype=np.int64)
        f["train_url"] = np.array([u.encode() for u in urls])
        f["word_code"] = record
    for j in present:
        write_image(path.parent / image_dir / urls[j].rsplit("/", 1)[-1])
    return path


def make_imagefolder(root: Path, captions: dict[str, list[str] | str | None], metadata: str | None = "jsonl",
                     column: str = "text", extra: dict | None = None) -> Path:
    """Hugging Face imagefolder: ROOT/<file_name> images + metadata.jsonl/.csv, or name.txt beside each image.

    captions maps file_name -> caption(s); None writes the image but no caption. metadata=None writes
    <stem>.txt files (one caption per line) instead. extra adds the same columns to every metadata row.
    Each image gets its own colour, so decoded pixels tell images apart.
    """
    import pandas as pd

    rows = []
    for k, (file_name, caps) in enumerate(captions.items()):
        write_image(root / file_name, color=(10 * k % 256, 255 - 10 * k % 256, 77), size=(10, 8))
        if caps is None:
            continue
        if metadata is None:
            text = "\n".join(caps) if isinstance(caps, list) else caps
            (root / file_name).with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
        else:
            rows.append({"file_name": file_name, column: caps, **(extra or {})})
    if metadata == "jsonl":
        (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif metadata == "csv":
        pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def make_shards(folder: Path, samples: list[tuple[str, bytes | None, dict[str, bytes]]], per_shard: int,
                name: str = "{:05d}.tar") -> list[Path]:
    """WebDataset shards in folder: each sample (key, image bytes or None, {ext: bytes}) as key.jpg + key.<ext>.

    per_shard samples per shard, in the given order (like img2dataset).
    """
    import io
    import tarfile

    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for s in range(0, len(samples), per_shard):
        path = folder / name.format(s // per_shard)
        with tarfile.open(path, "w") as tar:
            for key, image, others in samples[s: s + per_shard]:
                files = ({"jpg": image} if image is not None else {}) | others
                for ext, data in files.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime = len(data), 1700000000
                    tar.addfile(info, io.BytesIO(data))
        shards.append(path)
    return shards


def png_bytes(color=(200, 30, 40), size=(10, 8)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()
