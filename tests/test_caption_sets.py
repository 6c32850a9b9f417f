"""The caption sets of bench/data: the synonym set uses no colour word the synthetic training captions contain,
and the translated set names the same attributes in every language.

The training vocabulary is rebuilt from the caption grammar (tools/synthetic/captions.py + spec.py), so the test
needs no data folder; a second test checks that the grammar's own captions stay inside that vocabulary.
"""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np

from tools.synthetic import captions, spec

DATA = Path(__file__).resolve().parents[1] / "bench" / "data"

# every colour word of the synonym set -> the palette value it stands for
PETAL_SYNONYMS = {
    "scarlet": "red", "crimson": "red", "ruby": "red", "cherry": "red",
    "tangerine": "orange", "amber": "orange",
    "golden": "yellow", "lemon": "yellow", "canary": "yellow",
    "ivory": "white", "alabaster": "white", "snowy": "white", "pearly": "white",
    "rosy": "pink", "fuchsia": "pink", "bubblegum": "pink",
    "violet": "purple", "lilac": "purple", "plum": "purple", "lavender": "purple",
    "sapphire": "blue", "azure": "blue", "cobalt": "blue", "cerulean": "blue",
}
CENTRE_SYNONYMS = {
    "golden": "yellow", "lemon": "yellow", "canary": "yellow",
    "chocolate": "brown", "chestnut": "brown", "cocoa": "brown", "coffee": "brown",
    "ebony": "black", "inky": "black", "jet": "black", "sooty": "black",
    "ivory": "white", "alabaster": "white", "snowy": "white", "pearly": "white",
}
# the other phrasings the set adds (nouns and verbs the grammar never uses)
NEW_PHRASING = {"heart", "core", "eye", "centre", "disc", "hues", "hued", "ring", "encircle", "whose", "looks",
                "painted", "every", "its", "petal"}
LANGS = ("en", "es", "fr", "de", "it", "pt", "zh", "ja")


def words(text: str) -> list[str]:
    """Lower-case letter runs: "golden-hued" -> ["golden", "hued"], so a hyphen cannot hide a training word."""
    return re.findall(r"[a-z]+", text.lower())


def training_vocabulary() -> set[str]:
    """Every word any synthetic training caption can contain: template words plus every word a slot can take."""
    vocab = {"an"}  # fill() turns "a orange" into "an orange"
    for template in captions.TEMPLATES:
        vocab |= set(words(re.sub(r"\{\w+\}", " ", template)))
    vocab |= set(spec.COLOR_WORDS) | set(spec.COUNT_WORDS.values()) | set(spec.CENTER_WORDS)
    vocab |= {w for ws in spec.SHAPE_WORDS.values() for w in ws}
    vocab |= {w for ws in captions.TIP_WORDS.values() for w in ws} | set(captions.FLOWER_NOUNS)
    return vocab


def read(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_vocabulary_covers_generated_captions():
    vocab = training_vocabulary()
    rng = np.random.default_rng(0)
    seen = set()
    for pc, cc, n, sh in itertools.product(spec.PETAL_COLORS, spec.CENTER_COLORS, spec.PETAL_COUNTS,
                                           spec.PETAL_SHAPES):
        attrs = {"petal_color": pc, "center_color": cc, "petal_count": n, "petal_shape": sh}
        for _ in range(3):
            for text in captions.image_captions(attrs, rng):
                seen |= set(words(text))
    assert seen <= vocab, sorted(seen - vocab)
    assert len(vocab) == 59  # golden value: changes only when the grammar does
    assert {"red", "white", "bloom", "center", "middle"} <= vocab


def test_synonym_captions_avoid_training_words():
    rows = read("synonym_captions.jsonl")
    vocab = training_vocabulary()
    assert len(rows) == 60
    assert len({r["id"] for r in rows}) == 60 and min(r["id"] for r in rows) > 819  # no clash with test ids
    used_colours = set()
    for r in rows:
        toks = set(words(r["caption"]))
        assert not toks & set(spec.COLOR_WORDS), r  # no palette word at all, hyphenated or not
        colour_toks = toks & (set(PETAL_SYNONYMS) | set(CENTRE_SYNONYMS))
        used_colours |= colour_toks
        named = {a: r[a] for a in ("petal_color", "center_color") if a in r}
        assert named and len(colour_toks) <= 2, r
        # each named colour is carried by one synonym of exactly that value
        if "petal_color" in named:
            assert named["petal_color"] in spec.PETAL_COLORS
            assert any(PETAL_SYNONYMS.get(w) == named["petal_color"] for w in colour_toks), r
        if "center_color" in named:
            assert named["center_color"] in spec.CENTER_COLORS
            assert any(CENTRE_SYNONYMS.get(w) == named["center_color"] for w in colour_toks), r
    assert not used_colours & vocab, sorted(used_colours & vocab)
    assert used_colours == set(PETAL_SYNONYMS) | set(CENTRE_SYNONYMS)  # every synonym listed above is used
    assert len(used_colours) == 32
    assert not NEW_PHRASING & vocab, sorted(NEW_PHRASING & vocab)
    all_words = {w for r in rows for w in words(r["caption"])}
    assert all_words - vocab == used_colours | NEW_PHRASING  # the only new words: colours and the phrasings above
    assert {r.get("petal_color") for r in rows} - {None} == set(spec.PETAL_COLORS)
    assert {r.get("center_color") for r in rows} - {None} == set(spec.CENTER_COLORS)


def test_translated_captions_same_attributes_per_language():
    rows = read("translated_captions.jsonl")
    assert len(rows) == 20 * len(LANGS)
    assert len({r["id"] for r in rows}) == len(rows) and min(r["id"] for r in rows) > 1060
    by_lang = {lang: sorted((r for r in rows if r["lang"] == lang), key=lambda r: r["pair"]) for lang in LANGS}
    english = [(r["petal_color"], r["center_color"]) for r in by_lang["en"]]
    assert len(set(english)) == 20 and {p for p, _ in english} == set(spec.PETAL_COLORS)
    for lang, lrows in by_lang.items():
        assert [(r["petal_color"], r["center_color"]) for r in lrows] == english, lang
        assert len({r["caption"] for r in lrows}) == 20, lang
        if lang != "en":  # a translation, not English left in place
            assert not set(words(" ".join(r["caption"] for r in lrows))) & set(spec.COLOR_WORDS) - {"orange"}, lang
    assert by_lang["es"][0]["caption"] == "una flor con pétalos rojos y un centro amarillo"
    assert by_lang["de"][1]["caption"] == "diese Blume hat rote Blütenblätter und eine weiße Mitte"
