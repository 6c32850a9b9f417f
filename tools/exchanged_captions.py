"""Exchanged-colour captions: each caption that names two different colours, with the two colour words exchanged.

    python tools/exchanged_captions.py --data data/synthetic-flowers --out data/synthetic-flowers-exchanged
    python precompute_embeddings.py --data data/synthetic-flowers-exchanged --encoder minilm --tokens
    python train_gan.py --embeddings cache/synthetic-flowers-minilm-tokens.h5 --arch dfgan-words \\
        --set exchanged_cache=cache/synthetic-flowers-exchanged-minilm-tokens.h5

"this flower has yellow petals and a white center" becomes "this flower has white petals and a yellow center": a
caption of the same image that is false about it only in which part has which colour. Used as mismatched captions
(gan/exchanged.py), they make the discriminator reject a wrong binding, which no other image's caption teaches it.
The output is a `manifest` dataset (docs/datasets.md) of the same images (absolute paths) whose captions are the
exchanged ones; images without such a caption are left out, and the counts are printed. Only a text edit: no
labels are read, so it applies to any captioned dataset whose captions name colours (CUB's "a red head and black
wings" as much as the synthetic flowers).

`--seen-only` keeps only the exchanged captions that are, word for word, another image's caption: exchanges the data
shows can be true of some flower ("white petals and a yellow center" when white flowers with yellow centres exist),
which D can reject only by binding each colour to its part, never by knowing that brown petals do not occur. On the
synthetic flowers these are exactly the yellow/white exchanges (2 062 of 37 915); on free-form captions few match.
"""
from __future__ import annotations

import argparse
import functools
import json
import re
from pathlib import Path

from tools.errors import UserError, run_cli

# basic colour terms of English captions (Berlin & Kay's eleven, their common variants, and the synthetic flowers'
# palette, which tests/test_exchanged.py checks is covered); --colours replaces the list
COLOURS = ("black", "white", "red", "green", "yellow", "blue", "brown", "orange", "pink", "purple", "grey", "gray",
           "violet", "magenta", "crimson", "scarlet", "maroon", "golden", "gold", "lavender", "cream", "tan", "beige",
           "ivory", "indigo", "cyan", "turquoise", "olive", "silver", "lilac", "peach", "navy")


@functools.lru_cache(maxsize=8)
def _colour_pattern(colours: tuple[str, ...]) -> re.Pattern:
    """Any of the colour words as a whole word, any case (longest first, so "gold" never cuts "golden")."""
    return re.compile(r"\b(" + "|".join(sorted(map(re.escape, colours), key=len, reverse=True)) + r")\b", re.IGNORECASE)


def exchange_colours(caption: str, colours=COLOURS) -> str | None:
    """The caption with its first two different colour words exchanged (whole words, any case; each keeps the
    other's case pattern only as far as lower/upper/title), or None when it names fewer than two different colours."""
    found = list(_colour_pattern(tuple(colours)).finditer(caption))
    first = found[0] if found else None
    second = next((m for m in found[1:] if m.group(0).lower() != first.group(0).lower()), None) if first else None
    if second is None:
        return None

    def cased(word: str, like: str) -> str:
        return word.upper() if like.isupper() and len(like) > 1 else word.title() if like[:1].isupper() else word.lower()

    a, b = first.group(0), second.group(0)
    return (caption[: first.start()] + cased(b, a) + caption[first.end(): second.start()] + cased(a, b)
            + caption[second.end():])


def exchanged_rows(dataset, colours=COLOURS, seen_only: bool = False) -> tuple[list[dict], dict]:
    """Manifest rows {"image_id", "image_path", "captions"} of the images that have an exchanged caption (distinct,
    in caption order, never equal to one of the image's own captions; with seen_only, only those that are another
    image's caption), and counts for the report."""
    own: dict[int, list[str]] = {}
    for text, image in zip(dataset.captions, dataset.caption_image.tolist()):
        own.setdefault(image, []).append(text)
    seen = set(dataset.captions) if seen_only else None
    rows, counts = [], {"captions": dataset.num_captions, "exchanged": 0, "fewer_than_two_colours": 0,
                        "equal_to_an_own_caption": 0, "duplicates": 0, "not_another_images_caption": 0}
    for image in sorted(own):
        mine, out = set(own[image]), []
        for text in own[image]:
            new = exchange_colours(text, colours)
            if new is None:
                counts["fewer_than_two_colours"] += 1
            elif new in mine:  # "red and white" -> "white and red": still true of the image, not a negative
                counts["equal_to_an_own_caption"] += 1
            elif new in out:
                counts["duplicates"] += 1
            elif seen is not None and new not in seen:
                counts["not_another_images_caption"] += 1
            else:
                out.append(new)
        if out:
            counts["exchanged"] += len(out)
            rows.append({"image_id": dataset.image_ids[image], "image_path": dataset.image_paths[image], "captions": out})
    counts["images"] = len(rows)
    return rows, counts


def main(argv: list[str] | None = None) -> int:
    from tools.datasets import add_dataset_args, dataset_from_args

    p = argparse.ArgumentParser(prog="exchanged_captions.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_args(p)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder of the manifest dataset to write")
    p.add_argument("--colours", metavar="W,W,...", help="colour words to exchange (default: basic English colour terms)")
    p.add_argument("--seen-only", action="store_true",
                   help="keep only exchanged captions that are word for word another image's caption (see above)")
    args = p.parse_args(argv)
    colours = tuple(w.strip() for w in args.colours.split(",") if w.strip()) if args.colours else COLOURS
    if not colours:
        raise UserError("--colours is empty; give words such as --colours red,white,yellow")
    dataset = dataset_from_args(args)
    rows, counts = exchanged_rows(dataset, colours, args.seen_only)
    if not rows and args.seen_only and counts["not_another_images_caption"]:
        raise UserError(f"{args.data}: none of the {counts['not_another_images_caption']} exchanged captions is another "
                        f"image's caption; leave out --seen-only")
    if not rows:
        raise UserError(f"{args.data}: no caption names two different colours ({', '.join(colours[:6])}, ...); "
                        f"nothing to exchange — pass the dataset's colour words with --colours")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "manifest.jsonl"
    with open(target, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {target}: {counts['exchanged']} exchanged captions of {counts['images']} images "
          f"(from {counts['captions']} captions; skipped: {counts['fewer_than_two_colours']} with fewer than two "
          f"colours, {counts['equal_to_an_own_caption']} equal to one of the image's own captions, "
          f"{counts['duplicates']} repeats" + (f", {counts['not_another_images_caption']} not another image's caption"
                                                if args.seen_only else "") + ")")
    return 0


if __name__ == "__main__":
    run_cli(main)
