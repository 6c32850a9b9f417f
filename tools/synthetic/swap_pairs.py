"""Attribute-swap caption pairs of the synthetic flowers: two captions that differ only in which part gets which colour.

    python -m tools.synthetic.swap_pairs --data data/synthetic-flowers --out bench/data/swap_pairs.jsonl

Member "a" of a pair names petals of colour X and a centre of colour Y; member "b" the same sentence with X and Y
exchanged. Only a colour can swap: a caption gives a count and a shape to the petals alone (no template gives them
to the centre), so colour is the one attribute two parts share, and only the colours of both palettes
(spec.PETAL_COLORS and spec.CENTER_COLORS: yellow, white) can be put on either part. Every template that names both
colours gives one pair per petal count and shape it names (count and shape stay as they are across the pair).

Held out: the synonym words (shape, tip, centre noun, flower noun) of a pair are drawn so that neither member
occurs among the training captions (manifest.jsonl); where every choice of synonyms occurs there (the short
templates, whose few wordings the 80 000 training captions exhaust), the pair is kept and a member that is a
training caption is marked "in_training": true. Each line: {"id", "pair", "member", "caption", "template", "in_training", + the attributes the
caption names}. Deterministic: the output depends only on the training captions and --seed.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from tools.errors import UserError
from tools.synthetic import captions as C
from tools.synthetic import spec

# the attributes of each part a caption can name; an attribute both parts carry is one a caption can swap
PART_ATTRIBUTES = {"petals": ("petal_color", "petal_count", "petal_shape"), "centre": ("center_color",)}
SWAP = ("petal_color", "center_color")  # the one swappable pair of attributes (see swappable_colours)


def swappable_colours() -> tuple[str, ...]:
    """Colours that either part can take, so a caption can exchange them between petals and centre."""
    return tuple(c for c in spec.PETAL_COLORS if c in spec.CENTER_COLORS)


def swap_templates() -> list[int]:
    """Indices of captions.TEMPLATES that name both the petal and the centre colour."""
    return [k for k, t in enumerate(C.TEMPLATES) if set(SWAP) <= set(C.template_attributes(t))]


def _wordings(template: str, shape: str) -> list[dict]:
    """Every choice of synonym words a template can take for one petal shape ({slot: word})."""
    slots = {"sh": spec.SHAPE_WORDS[shape], "tip": C.TIP_WORDS[shape], "ctr": spec.CENTER_WORDS,
             "fl": tuple(dict.fromkeys(C.FLOWER_NOUNS))}
    used = [s for s in slots if "{" + s + "}" in template]
    return [dict(zip(used, words)) for words in itertools.product(*(slots[s] for s in used))]


def render(template: str, words: dict) -> str:
    """A template filled with these words ("a" -> "an" before a vowel, as captions.fill does)."""
    tokens = template.format(**words).split()
    for i in range(len(tokens) - 1):
        if tokens[i] == "a" and tokens[i + 1][0] in "aeiou":
            tokens[i] = "an"
    return " ".join(tokens)


def _members(template: str, x: str, y: str, count: int, wording: dict) -> tuple[str, str]:
    base = {"n": spec.COUNT_WORDS[count], **wording}
    return render(template, {**base, "pc": x, "cc": y}), render(template, {**base, "pc": y, "cc": x})


def build_pairs(training: set[str], seed: int = 0) -> list[dict]:
    """The pair rows (two per pair), held out from `training` captions where a wording allows."""
    colours = swappable_colours()
    if len(colours) < 2:
        raise UserError(f"tools/synthetic/spec.py: only {list(colours)} are in both palettes; a swap needs two")
    rows, number = [], 0
    for k in swap_templates():
        t = C.TEMPLATES[k]
        named = C.template_attributes(t)
        counts = spec.PETAL_COUNTS if "petal_count" in named else (spec.PETAL_COUNTS[0],)
        shapes = spec.PETAL_SHAPES if "petal_shape" in named else (spec.PETAL_SHAPES[0],)
        for (x, y), count, (s, shape) in itertools.product(itertools.combinations(colours, 2), counts,
                                                           enumerate(shapes)):
            options = _wordings(t, shape)
            order = np.random.default_rng([seed, k, count, s]).permutation(len(options)).tolist()
            texts = [_members(t, x, y, count, options[i]) for i in order]
            free = [p for p in texts if p[0] not in training and p[1] not in training]
            pair = (free or texts)[0]
            number += 1
            attrs = {"petal_count": count, "petal_shape": shape}
            for member, text, (pc, cc) in zip("ab", pair, ((x, y), (y, x))):
                row = {"id": f"p{number:03d}{member}", "pair": f"p{number:03d}", "member": member, "caption": text,
                       "template": k, "in_training": text in training}
                full = {**attrs, "petal_color": pc, "center_color": cc}
                rows.append({**row, **{a: full[a] for a in named}})
    return rows


def training_captions(data: Path) -> set[str]:
    """Every caption text of a synthetic-flowers folder's manifest.jsonl."""
    from tools.datasets.common import jsonl_rows

    path = Path(data) / "manifest.jsonl"
    if not path.is_file():
        raise UserError(f"--data {data}: no manifest.jsonl; give the synthetic-flowers folder the GANs train on")
    out: set[str] = set()
    for n, row in jsonl_rows(path):
        if not isinstance(row.get("captions"), list):
            raise UserError(f"{path}:{n}: field \"captions\" must be a list of strings")
        out.update(row["captions"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.synthetic.swap_pairs", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="synthetic-flowers folder whose captions to hold out from")
    p.add_argument("--out", type=Path, required=True, help="JSONL to write (bench/data/swap_pairs.jsonl)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synonym choice (default 0)")
    args = p.parse_args(argv)
    training = training_captions(args.data)
    rows = build_pairs(training, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pairs = len(rows) // 2
    held = sum(not (a["in_training"] or b["in_training"]) for a, b in zip(rows[::2], rows[1::2]))
    print(f"wrote {pairs} pairs ({len(rows)} captions) from {len(swap_templates())} templates to {args.out}: "
          f"{held} held out, {pairs - held} with a member among the {len(training)} distinct training captions")
    return 0


if __name__ == "__main__":
    from tools.errors import run_cli

    run_cli(main)
