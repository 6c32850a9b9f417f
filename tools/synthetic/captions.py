"""Oxford-102-style captions for synthetic flowers, and the reference parser that reads attributes back.

Templates use slots: {pc} petal colour, {cc} centre colour, {n} petal count, {sh} shape adjective, {tip} shape
word that fits "... tips", {ctr} centre noun, {fl} flower noun. A template names exactly the attributes of the
slots it contains. Grammar rule every template keeps (so `parse_caption` is exact): a colour word describes the
noun right after it (skipping count/shape/colour words), otherwise the nearest noun before it.
"""
from __future__ import annotations

import numpy as np

from tools.synthetic import spec

SLOT_ATTRIBUTE = {"pc": "petal_color", "cc": "center_color", "n": "petal_count", "sh": "petal_shape",
                  "tip": "petal_shape"}
FLOWER_NOUNS = ("flower", "flower", "flower", "bloom", "blossom")  # "flower" most often, as in Oxford-102
TIP_WORDS = {"round": ("round", "rounded"), "pointed": ("pointed", "pointy", "sharp")}  # "oval tips" reads oddly

TEMPLATES = (
    # all four attributes
    "this flower has {n} {sh} {pc} petals and a {cc} {ctr}",
    "this flower has {n} {pc} petals that are {sh} and a {cc} {ctr}",
    "a flower with {n} {sh} {pc} petals surrounding a {cc} {ctr}",
    "this {pc} {fl} has {n} {sh} petals and a {cc} {ctr}",
    "{n} {sh} {pc} petals surround a {cc} {ctr} on this flower",
    "this flower has {n} petals that are {pc} and {sh} with a {cc} {ctr}",
    "the {cc} {ctr} of this flower is surrounded by {n} {sh} {pc} petals",
    "this is a {pc} flower with {n} {sh} petals and a {cc} {ctr}",
    "this flower has a {cc} {ctr} and {n} {pc} petals with {tip} tips",
    "the flower has {n} {pc} petals that are {sh} and the {ctr} is {cc}",
    "this flower has {n} {pc} petals that are {tip} at the ends and a {cc} {ctr} that is large compared to the petals",
    "this is a picture of a flower with {n} {sh} petals that are {pc} in color and a {ctr} that is {cc}",
    # three
    "this flower has {n} {pc} petals and a {cc} {ctr}",
    "this flower has {n} {sh} petals that are {pc} in color",
    "a {pc} {fl} with {n} petals and a {cc} {ctr}",
    "the petals of this flower are {pc} and {sh} and the {ctr} is {cc}",
    "this flower has {sh} {pc} petals and a {cc} {ctr}",
    "this flower has {n} {sh} petals and a {cc} {ctr}",
    "there are {n} {pc} petals on this flower and they are {sh}",
    "this {fl} has {n} {sh} petals arranged around a {cc} {ctr}",
    "the {pc} petals on this flower are {sh} and the {ctr} is {cc}",
    "this flower has a {ctr} that is {cc} and {n} petals that are {pc}",
    "this flower has {n} petals that are {pc} with {tip} tips",
    # two
    "the petals on this flower are {pc} and {sh}",
    "a {pc} {fl} with a {cc} {ctr}",
    "this flower is {pc} in color with petals that are {sh}",
    "this flower has {n} petals that are {sh}",
    "this flower has petals that are {pc} and a {ctr} that is {cc}",
    "this flower has {n} {pc} petals arranged in a circle",
    "this flower has a {cc} {ctr} surrounded by {sh} petals",
    "a flower with {n} {sh} petals and a large {ctr}",
    "the {ctr} is {cc} and the petals are {sh}",
    "this {pc} {fl} has petals that are {sh}",
    "this flower has {n} petals and a {cc} {ctr}",
    "this {pc} flower has a {cc} {ctr}",
    "there are {n} petals on this flower and they are {pc}",
    "the petals are {sh} and {pc} in color",
    "{pc} petals surround the {cc} {ctr} of this flower",
    # one
    "this flower has a {cc} {ctr}",
    "this flower has petals that are {pc}",
    "this flower has {n} petals in a single layer",
    "the petals on this flower are {tip} at the tips",
    "this flower has a large {ctr} that is {cc} in color",
)

_SHAPE_TOKENS = {w for ws in spec.SHAPE_WORDS.values() for w in ws}
_MODIFIERS = set(spec.COLOR_WORDS) | set(spec.COUNT_WORDS.values()) | _SHAPE_TOKENS  # skipped before a noun
_WORD_SHAPE = {w: shape for shape, ws in spec.SHAPE_WORDS.items() for w in ws}
_WORD_COUNT = {w: c for c, w in spec.COUNT_WORDS.items()}


def template_attributes(template: str) -> tuple[str, ...]:
    """The attributes a template names, in spec.ATTRIBUTES order."""
    named = {a for slot, a in SLOT_ATTRIBUTE.items() if "{" + slot + "}" in template}
    return tuple(a for a in spec.ATTRIBUTES if a in named)


def fill(template: str, attrs: dict, rng: np.random.Generator) -> str:
    """One caption: the template's slots filled with `attrs` words (synonyms drawn from rng)."""
    choices = (spec.SHAPE_WORDS[attrs["petal_shape"]], TIP_WORDS[attrs["petal_shape"]], spec.CENTER_WORDS,
               FLOWER_NOUNS)
    sh, tip, ctr, fl = (c[i] for c, i in zip(choices, rng.integers([len(c) for c in choices]).tolist()))
    words = {"pc": attrs["petal_color"], "cc": attrs["center_color"], "n": spec.COUNT_WORDS[attrs["petal_count"]],
             "sh": sh, "tip": tip, "ctr": ctr, "fl": fl}
    tokens = template.format(**words).split()
    for i in range(len(tokens) - 1):  # "a orange" -> "an orange"
        if tokens[i] == "a" and tokens[i + 1][0] in "aeiou":
            tokens[i] = "an"
    return " ".join(tokens)


def image_captions(attrs: dict, rng: np.random.Generator, k: int = spec.CAPTIONS_PER_IMAGE, min_mentions: int = 2):
    """k captions from k distinct templates such that every attribute is named >= min_mentions times."""
    for _ in range(100):  # rejection sampling; nearly every draw qualifies
        picks = rng.permutation(len(TEMPLATES))[:k].tolist()
        counts = {a: 0 for a in spec.ATTRIBUTES}
        for p in picks:
            for a in template_attributes(TEMPLATES[p]):
                counts[a] += 1
        if min(counts.values()) >= min_mentions:
            return [fill(TEMPLATES[p], attrs, rng) for p in picks]
    raise RuntimeError("no template draw covered every attribute; the template set is too sparse")


def heldout_caption(attrs: dict, rng: np.random.Generator) -> tuple[str, dict]:
    """One held-out caption and the attributes it names ({attribute: value} for the named ones only)."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return fill(template, attrs, rng), {a: attrs[a] for a in template_attributes(template)}


def parse_caption(text: str) -> dict:
    """The attributes a caption names, read with the template grammar (first mention wins).

    >>> parse_caption("this flower has five pointed yellow petals and a brown center")
    {'petal_color': 'yellow', 'center_color': 'brown', 'petal_count': 5, 'petal_shape': 'pointed'}
    """
    tokens = text.lower().split()
    nouns = set(spec.PETAL_WORDS) | set(spec.CENTER_WORDS)
    found: dict = {}
    for i, tok in enumerate(tokens):
        if tok in _WORD_COUNT:
            found.setdefault("petal_count", _WORD_COUNT[tok])
        elif tok in _WORD_SHAPE:
            found.setdefault("petal_shape", _WORD_SHAPE[tok])
        elif tok in spec.COLOR_WORDS:
            j = i + 1
            while j < len(tokens) and tokens[j] in _MODIFIERS:
                j += 1
            noun = tokens[j] if j < len(tokens) and tokens[j] in nouns else None
            if noun is None:
                noun = next((t for t in reversed(tokens[:i]) if t in nouns), None)
            if noun is not None:
                key = "center_color" if noun in spec.CENTER_WORDS else "petal_color"
                found.setdefault(key, tok)
    return {a: found[a] for a in spec.ATTRIBUTES if a in found}
