"""DataLab Cup (NTHU) text-to-image layout: pandas pickles of word-id captions + a word dictionary.

    ROOT/dataset/text2ImgData.pkl   DataFrame indexed by image id; Captions: 1-10 captions per image, each a
                                    list of 20 word ids (ints or digit strings) padded with <PAD>;
                                    ImagePath: "./102flowers/image_06734.jpg" (relative to ROOT)
    ROOT/dataset/testData.pkl       optional; columns ID, Captions (one caption of 20 word ids each)
    ROOT/dictionary/id2Word.npy     [V, 2] string pairs [id, word] (or [word, id]: the numeric column is found)
    ROOT/dictionary/word2Id.npy     [V, 2] [word, id]; used when id2Word.npy is absent. vocab.npy is not needed.

Pickles can execute code when loaded: they are read with pandas.read_pickle only from inside the dataset root
the user named (resolved, no symlinks, nothing escaping the root; see common.inside_root).

`<PAD>` is dropped. `<RARE>` (a word below the vocabulary's frequency cut) is also DROPPED from the text and
noted in the report ("captions with <RARE> dropped"): the pretrained encoders this project feeds have no
meaning for that marker — a literal "<RARE>" or "<unk>" is split into sub-word noise like "<", "un", "##k"
that every rare word would share, pulling unrelated captions together — while the words around it still read
as a caption. It is a property of the dataset, not a user mistake, so --strict does not reject it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tools.dataset import SkipReport
from tools.datasets.common import DatasetBuilder, find_image, inside_root
from tools.errors import UserError

TRAIN_PICKLE = "dataset/text2ImgData.pkl"
TEST_PICKLE = "dataset/testData.pkl"
PAD, RARE = "<PAD>", "<RARE>"


def _read_pickle(root: Path, relative: str, columns: tuple[str, ...], expected: str):
    import pandas as pd

    path = inside_root(root, relative, "DataLab pickle")
    try:
        table = pd.read_pickle(path)
    except Exception as e:  # unpickling can fail in many ways; all mean "not the file we expect"
        raise UserError(f"{path}: cannot read pickle ({type(e).__name__}: {e}); expected {expected}") from None
    if not isinstance(table, pd.DataFrame):
        raise UserError(f"{path}: found a {type(table).__module__}.{type(table).__name__}, expected {expected}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise UserError(
            f"{path}: DataFrame lacks column(s) {', '.join(missing)} (has {', '.join(map(str, table.columns))}); "
            f"expected {expected}"
        )
    return path, table


def _load_pairs(root: Path, name: str) -> np.ndarray | None:
    relative = f"dictionary/{name}"
    if not (root / relative).exists() and not (root / relative).is_symlink():
        return None
    path = inside_root(root, relative, "dictionary file")
    try:
        pairs = np.load(path, allow_pickle=False)
    except ValueError:  # object arrays need pickle; allowed only because inside_root checked the path
        pairs = np.load(path, allow_pickle=True)
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise UserError(f"{path}: found an array of shape {pairs.shape}, expected [V, 2] pairs of word and id")
    return pairs


def _id_to_word(root: Path) -> dict[int, str]:
    """{id: word} from id2Word.npy (or word2Id.npy), whichever column is numeric being the id."""
    for name, id_column in (("id2Word.npy", 0), ("word2Id.npy", 1)):
        pairs = _load_pairs(root, name)
        if pairs is None:
            continue
        text = pairs.astype(str)
        numeric = [bool(np.char.isdigit(np.char.lstrip(text[:, c], "-")).all()) for c in (0, 1)]
        if numeric[0] != numeric[1]:
            id_column = 0 if numeric[0] else 1
        elif not numeric[0]:
            raise UserError(
                f"{root / 'dictionary' / name}: neither column holds numeric word ids; expected [id, word] pairs"
            )
        return {int(i): str(w) for i, w in zip(text[:, id_column], text[:, 1 - id_column])}
    raise UserError(f"{root / 'dictionary'}: found neither id2Word.npy nor word2Id.npy; a DataLab Cup root has both")


class _Decoder:
    """Word-id caption -> text, dropping <PAD> and <RARE> (counted)."""

    def __init__(self, id2word: dict[int, str], skips: SkipReport) -> None:
        self.id2word, self.skips = id2word, skips

    def __call__(self, ids, where: str) -> str:
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise UserError(f"{where}: a caption is {type(ids).__name__} {ids!r:.40}; expected a list of 20 word ids")
        words, rare = [], False
        for token in ids:
            try:
                word = self.id2word[int(token)]
            except (KeyError, ValueError, TypeError):
                raise UserError(
                    f"{where}: word id {token!r} is not in the dictionary (dictionary/id2Word.npy)"
                ) from None
            if word == RARE:
                rare = True
            elif word != PAD:
                words.append(word)
        if rare:
            self.skips.note(f"captions with {RARE} dropped", where)
        return " ".join(words)


def _caption_list(captions, where: str) -> list:
    if isinstance(captions, np.ndarray):
        captions = list(captions)
    if not isinstance(captions, (list, tuple)):
        raise UserError(
            f"{where}: Captions is {type(captions).__name__}; expected a list of captions (lists of word ids)"
        )
    return list(captions)


def _test_rows(root: Path, decode: "_Decoder"):
    """(ID, decoded caption, where) for each row of ROOT/dataset/testData.pkl."""
    pkl, table = _read_pickle(root, TEST_PICKLE, ("ID", "Captions"), "a pandas DataFrame with columns ID, Captions")
    for i, (test_id, ids) in enumerate(zip(table["ID"], table["Captions"])):
        where = f"{pkl}: row {i} (ID {test_id})"
        ids = _caption_list(ids, where)
        if ids and hasattr(ids[0], "__iter__") and not isinstance(ids[0], (str, bytes)):
            ids = ids[0]  # a one-caption list instead of the caption itself
        yield str(test_id), decode(ids, where), where


def read_test_captions(test_pickle: Path, skips: SkipReport) -> tuple[list[str], list[str]]:
    """IDs and decoded texts of a DataLab testData.pkl, with the dictionary of its dataset root
    (ROOT/dataset/testData.pkl -> ROOT/dictionary/). Empty decoded captions are kept so every ID gets an image."""
    test_pickle = Path(test_pickle).resolve()
    root = test_pickle.parent.parent
    if test_pickle.name != Path(TEST_PICKLE).name or test_pickle.parent.name != "dataset":
        raise UserError(f"{test_pickle}: expected ROOT/{TEST_PICKLE} (the dictionary is read from ROOT/dictionary/)")
    rows = list(_test_rows(root, _Decoder(_id_to_word(root), skips)))
    return [r[0] for r in rows], [r[1] for r in rows]


def load(root: Path, images_dir: Path | None, skips: SkipReport) -> DatasetBuilder:
    root = Path(root)
    expected = "a pandas DataFrame indexed by image id with columns Captions (lists of word-id lists) and ImagePath"
    pkl, table = _read_pickle(root, TRAIN_PICKLE, ("Captions", "ImagePath"), expected)
    decode = _Decoder(_id_to_word(root), skips)
    builder = DatasetBuilder(root, "datalab", skips)
    for i, (image_id, captions, image_path) in enumerate(zip(table.index, table["Captions"], table["ImagePath"])):
        where = f"{pkl}: row {i} (id {image_id})"
        captions = _caption_list(captions, where)
        if not isinstance(image_path, str):
            found = type(image_path).__name__
            raise UserError(f"{where}: ImagePath is {found}; expected a path like ./102flowers/x.jpg")
        image = builder.add_image(str(image_id), find_image(image_path, root, images_dir), where)
        for k, ids in enumerate(captions):
            builder.add_caption(image, decode(ids, f"{where} caption {k}") if image is not None else "", where)
    if (root / TEST_PICKLE).exists() or (root / TEST_PICKLE).is_symlink():
        for test_id, text, where in _test_rows(root, decode):
            builder.add_test(test_id, text, where)
    return builder
