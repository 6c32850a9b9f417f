"""Write a synthetic set in the DataLab Cup 3 (reverse image caption) layout, so that importer runs end to end.

    <root>/dataset/text2ImgData.pkl   DataFrame indexed by int image id: Captions (list of 1-10 captions, each
                                      20 int word ids padded with <PAD>), ImagePath ("./102flowers/image_00001.jpg")
    <root>/dataset/testData.pkl       DataFrame: ID (int), Captions (one caption, 20 int word ids)
    <root>/dictionary/vocab.npy       [V, 2] str rows [word, id]
    <root>/dictionary/word2Id.npy     [V, 2] str rows [word, id]
    <root>/dictionary/id2Word.npy     [V, 2] str rows [id, word]
    <root>/102flowers/*.jpg           the images (JPEG quality 95; written by the renderer workers)
As in the original, ids are strings in the dictionary files, words are ids 0..V-3 by falling frequency, and
<PAD> / <RARE> take the last two ids.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

MAX_SEQ_LENGTH = 20  # word ids per caption; longer captions are truncated
PAD, RARE = "<PAD>", "<RARE>"
IMAGE_DIR = "102flowers"
JPEG_QUALITY = 95


def build_vocab(texts) -> dict[str, int]:
    """word -> id: most frequent first (ties alphabetical), then <PAD>, <RARE>."""
    counts = Counter(w for t in texts for w in t.split())
    words = sorted(counts, key=lambda w: (-counts[w], w))
    word2id = {w: i for i, w in enumerate(words)}
    word2id[PAD] = len(word2id)
    word2id[RARE] = len(word2id)
    return word2id


def encode(text: str, word2id: dict[str, int]) -> list[int]:
    """A caption as exactly MAX_SEQ_LENGTH word ids: truncated, unknown words -> <RARE>, padded with <PAD>."""
    ids = [word2id.get(w, word2id[RARE]) for w in text.split()][:MAX_SEQ_LENGTH]
    return ids + [word2id[PAD]] * (MAX_SEQ_LENGTH - len(ids))


def write_datalab(root: Path, image_ids: list[int], image_files: list[str], captions: list[list[str]],
                  test_ids: list[int], test_texts: list[str]) -> dict[str, int]:
    """Write the pickles and dictionary under `root` (images are already in root/102flowers). Returns word2id."""
    import pandas as pd

    root = Path(root)
    (root / "dataset").mkdir(parents=True, exist_ok=True)
    (root / "dictionary").mkdir(parents=True, exist_ok=True)
    word2id = build_vocab([c for caps in captions for c in caps] + list(test_texts))
    train = pd.DataFrame(
        {
            "Captions": [[encode(c, word2id) for c in caps] for caps in captions],
            # object dtype like the original pickles (pandas 3 would otherwise pick its new "str" dtype)
            "ImagePath": pd.Series([f"./{IMAGE_DIR}/{f}" for f in image_files], dtype=object, index=image_ids),
        },
        index=pd.Index(image_ids, dtype="int64"),
    )
    test = pd.DataFrame({"ID": np.asarray(test_ids, dtype=np.int64),
                         "Captions": [encode(t, word2id) for t in test_texts]})
    train.to_pickle(root / "dataset" / "text2ImgData.pkl")
    test.to_pickle(root / "dataset" / "testData.pkl")
    pairs = np.array([[w, str(i)] for w, i in word2id.items()])  # [V, 2] str
    np.save(root / "dictionary" / "vocab.npy", pairs)
    np.save(root / "dictionary" / "word2Id.npy", pairs)
    np.save(root / "dictionary" / "id2Word.npy", pairs[:, ::-1].copy())
    return word2id
