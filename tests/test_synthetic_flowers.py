"""Synthetic-flowers generator: determinism, files, caption vocabulary, pixels vs the spec, DataLab layout."""
from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.errors import UserError
from tools.synthetic import generate_dataset, parse_caption, render_flower, sample_attributes, spec
from tools.synthetic.captions import TEMPLATES, fill, template_attributes
from tools.synthetic.render import petal_outline

REPO = Path(__file__).resolve().parents[1]
N = 40
# colour / shade words that must never appear (palette words are the only colour vocabulary)
FORBIDDEN = {"green", "grey", "gray", "violet", "lavender", "magenta", "maroon", "crimson", "gold", "golden",
             "light", "dark", "pale", "bright", "deep", "orangeish", "orange-ish", "yellowish", "reddish", "pinkish",
             "purplish", "bluish", "cream", "beige", "tan", "lilac", "indigo", "scarlet", "burgundy", "peach",
             "salmon", "navy", "teal", "cyan", "turquoise", "ivory", "silver", "rose", "mauve", "fuchsia", "lime",
             "olive", "amber", "vivid", "dull", "faded", "colorful", "multicolored", "dotted", "striped", "spotted"}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Three small sets: a (seed 0, 1 worker), b (seed 0, 2 workers), c (seed 1)."""
    root = tmp_path_factory.mktemp("synthetic")
    a = generate_dataset(root / "a", n=N, seed=0, datalab=True, workers=1, progress=False)
    b = generate_dataset(root / "b", n=N, seed=0, datalab=True, workers=2, progress=False)
    c = generate_dataset(root / "c", n=N, seed=1, n_test=50, progress=False)
    return a, b, c


def test_same_seed_same_bytes_whatever_the_workers(sets):
    a, b, _ = sets
    for name in ("manifest.jsonl", "attributes.jsonl", "test_captions.jsonl", "contact_sheet.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    pngs = sorted((a / "images").glob("*.png"))
    assert len(pngs) == N
    for p in pngs:
        assert p.read_bytes() == (b / "images" / p.name).read_bytes(), p.name
    for p in sorted((a / "datalab" / "102flowers").glob("*.jpg")):
        assert p.read_bytes() == (b / "datalab" / "102flowers" / p.name).read_bytes(), p.name


def test_different_seed_differs(sets):
    a, _, c = sets
    assert (a / "manifest.jsonl").read_text() != (c / "manifest.jsonl").read_text()
    same = sum((a / "images" / p.name).read_bytes() == p.read_bytes() for p in (c / "images").glob("*.png"))
    assert same == 0


def test_files_and_rows(sets):
    a, _, c = sets
    rows = _read_jsonl(a / "manifest.jsonl")
    assert [r["image_id"] for r in rows] == [f"image_{i:05d}" for i in range(1, N + 1)]
    for r in rows:
        assert set(r) == {"image_id", "image_path", "captions"}
        assert r["image_path"] == f"images/{r['image_id']}.png"
        assert len(r["captions"]) == 10 and len(set(r["captions"])) == 10
        with Image.open(a / r["image_path"]) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (64, 64))
    attrs = _read_jsonl(a / "attributes.jsonl")
    assert [r["image_id"] for r in attrs] == [r["image_id"] for r in rows]
    for r in attrs:
        assert set(r) == {"image_id", *spec.ATTRIBUTES}
        assert r["petal_color"] in spec.PETAL_COLORS and r["center_color"] in spec.CENTER_COLORS
        assert type(r["petal_count"]) is int and r["petal_count"] in spec.PETAL_COUNTS
        assert r["petal_shape"] in spec.PETAL_SHAPES
    tests = _read_jsonl(a / "test_captions.jsonl")
    assert [t["id"] for t in tests] == list(range(1, 820))
    assert len(_read_jsonl(c / "test_captions.jsonl")) == 50
    with Image.open(a / "contact_sheet.png") as im:
        assert im.size == (2 * (8 * 66 + 2), 2 * (5 * 66 + 2))  # 40 images -> 5 rows of 8, 2 px gaps, 2x


def test_every_attribute_named_twice_and_right(sets):
    a = sets[0]
    truth = {r["image_id"]: r for r in _read_jsonl(a / "attributes.jsonl")}
    for row in _read_jsonl(a / "manifest.jsonl"):
        named = [parse_caption(c) for c in row["captions"]]
        for attr in spec.ATTRIBUTES:
            values = [p[attr] for p in named if attr in p]
            assert len(values) >= 2, (row["image_id"], attr, row["captions"])
            assert set(values) == {truth[row["image_id"]][attr]}, (row["image_id"], attr)


def test_caption_vocabulary(sets):
    a = sets[0]
    texts = [c for r in _read_jsonl(a / "manifest.jsonl") for c in r["captions"]]
    texts += [t["caption"] for t in _read_jsonl(a / "test_captions.jsonl")]
    palette = set(spec.COLOR_WORDS)
    assert palette == {"red", "orange", "yellow", "white", "pink", "purple", "blue", "brown", "black"}
    seen_colors = set()
    for t in texts:
        assert re.fullmatch(r"[a-z]+( [a-z]+)*", t), t  # lowercase words, no digits or punctuation
        words = t.split()
        assert 6 <= len(words) <= 25, t
        assert not FORBIDDEN & set(words), t
        seen_colors |= palette & set(words)
        # the only number words are the petal counts
        assert not {"one", "two", "three", "seven", "nine", "ten", "many", "several"} & set(words), t
    assert seen_colors == palette  # all palette words are used, and nothing else is a colour word


def test_templates_parse_exactly():
    """Every template, for every attribute combination, names exactly its slots' attributes (golden round trip)."""
    combos = list(itertools.product(spec.PETAL_COLORS, spec.CENTER_COLORS, spec.PETAL_COUNTS, spec.PETAL_SHAPES))
    rng = np.random.default_rng(0)
    assert len(TEMPLATES) >= 30
    for template in TEMPLATES:
        for pc, cc, n, sh in combos:
            attrs = {"petal_color": pc, "center_color": cc, "petal_count": n, "petal_shape": sh}
            text = fill(template, attrs, rng)
            assert parse_caption(text) == {k: attrs[k] for k in template_attributes(template)}, text
    assert parse_caption("this flower has five pointed yellow petals and a brown center") == {
        "petal_color": "yellow", "center_color": "brown", "petal_count": 5, "petal_shape": "pointed"}
    assert parse_caption("the petals are white and the pistil is black") == {
        "petal_color": "white", "center_color": "black"}


def test_heldout_captions_record_what_they_name(sets):
    a = sets[0]
    tests = _read_jsonl(a / "test_captions.jsonl")
    named_counts = []
    for t in tests:
        named = {k: v for k, v in t.items() if k not in ("id", "caption")}
        assert set(named) <= set(spec.ATTRIBUTES)
        assert parse_caption(t["caption"]) == named, t
        named_counts.append(len(named))
    assert min(named_counts) >= 1 and max(named_counts) == 4
    # fresh attribute draws, not the training images': the first N test captions disagree with image j often
    train = _read_jsonl(a / "attributes.jsonl")
    agree = sum(all(train[j][k] == v for k, v in parse_caption(tests[j]["caption"]).items()) for j in range(N))
    assert agree < N // 2


def test_all_combinations_drawn():
    rng = np.random.default_rng(123)
    combos = {tuple(sample_attributes(rng).values()) for _ in range(4000)}
    assert len(combos) == 7 * 4 * 4 * 2


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    p = np.pad(mask, r)
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= p[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return out


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    return ~_dilate(~mask, r)


def _renders(count: int = 64):
    for i in range(count):
        rng = np.random.default_rng([7, i])
        attrs = sample_attributes(rng)
        img, masks = render_flower(attrs, rng, return_masks=True)
        yield attrs, img.astype(np.int32), masks


def test_pixels_obey_palette_jitter_shading_and_background():
    slack = 6  # anti-aliasing / Lanczos ringing one pixel inside an edge
    for attrs, img, masks in _renders():
        assert img.shape == (64, 64, 3)
        fg = (masks["petal"] > 0) | (masks["center"] > 0)
        bg = ~_dilate(fg, 1)
        assert bg.sum() > 400
        assert img[bg].max() <= spec.BG_MAX, attrs
        petal = _erode(masks["petal"] >= 1.0, 1)
        center = _erode(masks["center"] >= 1.0, 1)
        assert petal.sum() >= 4 and center.sum() >= 4, attrs  # thin pointed petals keep few
        pal = np.array(spec.PETAL_COLORS[attrs["petal_color"]])
        tol = spec.MAX_JITTER + spec.MAX_SHADE * (pal + spec.MAX_JITTER) + slack  # per channel
        assert (np.abs(img[petal] - pal) <= tol).all(), (attrs, np.abs(img[petal] - pal).max(0), tol)
        assert img[petal].max(-1).min() > spec.BG_MAX  # petals stay brighter than any background
        cpal = np.array(spec.CENTER_COLORS[attrs["center_color"]])
        assert (np.abs(img[center] - cpal) <= spec.MAX_JITTER + slack).all(), (attrs, np.abs(img[center] - cpal).max(0))


def test_palette_tolerance_can_fail():
    """The tolerance above separates palette colours: a wrong colour would be caught."""
    for name, pal in spec.PETAL_COLORS.items():
        tol = spec.MAX_JITTER + spec.MAX_SHADE * (np.array(pal) + spec.MAX_JITTER) + 6
        others = [o for o, q in spec.PETAL_COLORS.items() if o != name and (np.abs(np.array(q) - pal) <= tol).all()]
        assert others == [], (name, others)


def test_geometry_petal_count_and_stem():
    stems = 0
    for attrs, img, masks in _renders(48):
        cy, cx = np.argwhere(masks["center"] > 0.5).mean(0) + 0.5
        ys, xs = np.nonzero(masks["petal"] > 0.5)
        length = np.hypot(ys + 0.5 - cy, xs + 0.5 - cx).max()
        assert 17 <= length <= 27, attrs
        assert abs(cx - 32) <= 4.5 and abs(cy - 32) <= 4.5
        # count petals as runs of coverage on a circle where petals are apart (3-degree smoothing: edge flicker)
        ang = np.linspace(0, 2 * math.pi, 1440, endpoint=False)
        r = (0.9 if attrs["petal_shape"] == "round" else 0.7) * length
        py = np.clip((cy + r * np.sin(ang)).astype(int), 0, 63)
        px = np.clip((cx + r * np.cos(ang)).astype(int), 0, 63)
        on = (masks["petal"][py, px] > 0.5).astype(float)
        on = np.convolve(np.concatenate([on[-12:], on, on[:12]]), np.ones(25) / 25, "same")[12:-12] > 0.5
        runs = int(np.sum(on & ~np.roll(on, 1)))
        assert runs == attrs["petal_count"], (attrs, runs)
        if masks["stem"].any():
            stems += 1
            assert not ((masks["stem"] > 0) & (masks["center"] > 0)).any(), attrs
    assert 10 <= stems <= 40


def test_petal_shapes():
    for w in (0.55, 0.8):
        pts = petal_outline("round", 100.0, w * 100.0)
        assert pts[:, 0].max() == pytest.approx(100.0) and 2 * pts[:, 1].max() == pytest.approx(w * 100, rel=0.01)
    for peak in (0.35, 0.5):
        pts = petal_outline("pointed", 100.0, 33.0, peak)
        assert 2 * pts[:, 1].max() <= 0.35 * 100
        tip = pts[np.argsort(-pts[:, 0])[:3]]  # tip and its two neighbours
        half_angle = math.degrees(math.atan2(abs(tip[1:, 1]).max(), 100.0 - tip[1:, 0].min()))
        assert half_angle < 30  # a sharp tip


def test_images_on_disk_are_the_renders(sets):
    a = sets[0]
    for i in (0, 17, N - 1):
        rng = np.random.default_rng([0, 0, i])
        expected = render_flower(sample_attributes(rng), rng)
        got = np.asarray(Image.open(a / "images" / f"image_{i + 1:05d}.png"))
        np.testing.assert_array_equal(got, expected)


def test_datalab_layout_round_trips(sets):
    import pandas as pd

    a = sets[0]
    root = a / "datalab"
    word2id = dict(np.load(root / "dictionary" / "word2Id.npy"))
    id2word = dict(np.load(root / "dictionary" / "id2Word.npy"))
    vocab = np.load(root / "dictionary" / "vocab.npy")
    assert vocab.dtype.kind == "U" and vocab.shape == (len(word2id), 2)
    assert {"<PAD>", "<RARE>"} <= set(word2id) and all(id2word[i] == w for w, i in word2id.items())
    pad = int(word2id["<PAD>"])

    def decode(ids):
        assert len(ids) == 20 and all(type(i) is int for i in ids)
        return " ".join(id2word[str(i)] for i in ids if i != pad)

    train = pd.read_pickle(root / "dataset" / "text2ImgData.pkl")
    assert list(train.columns) == ["Captions", "ImagePath"] and list(train.index) == list(range(1, N + 1))
    assert train.index.dtype == np.int64 and train["ImagePath"].dtype == object
    rows = _read_jsonl(a / "manifest.jsonl")
    for (idx, rec), row in zip(train.iterrows(), rows):
        assert rec["ImagePath"] == f"./102flowers/image_{idx:05d}.jpg"
        with Image.open(root / rec["ImagePath"]) as im:
            assert (im.format, im.size) == ("JPEG", (64, 64))
        assert [decode(c) for c in rec["Captions"]] == [" ".join(c.split()[:20]) for c in row["captions"]]
    test = pd.read_pickle(root / "dataset" / "testData.pkl")
    assert list(test.columns) == ["ID", "Captions"] and test["ID"].dtype == np.int64
    texts = _read_jsonl(a / "test_captions.jsonl")
    assert list(test["ID"]) == [t["id"] for t in texts]
    assert [decode(c) for c in test["Captions"]] == [" ".join(t["caption"].split()[:20]) for t in texts]


def test_rerun_is_a_noop_and_other_args_are_refused(sets, capsys):
    a = sets[0]
    before = {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()}
    generate_dataset(a, n=N, seed=0, datalab=True, progress=False)
    assert "already holds" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()} == before
    with pytest.raises(UserError, match="n=40.*--force"):
        generate_dataset(a, n=N + 1, seed=0, datalab=True, progress=False)
    with pytest.raises(UserError, match="--seed"):
        generate_dataset(a, n=N, seed=-1)


def test_cli_runs_as_a_file(tmp_path):
    out = tmp_path / "sf"
    cmd = [sys.executable, str(REPO / "tools" / "make_synthetic_flowers.py"), "--out", str(out), "--n", "3",
           "--n-test", "2", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(list((out / "images").glob("*.png"))) == 3
    again = subprocess.run(cmd[:-3] + ["--n-test", "5", "--quiet"], capture_output=True, text=True, cwd=tmp_path,
                           timeout=60)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and again.stderr.startswith("error: ")
    forced = subprocess.run(cmd[:-3] + ["--n-test", "5", "--quiet", "--force"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert forced.returncode == 0, forced.stderr
    assert len((out / "test_captions.jsonl").read_text().splitlines()) == 5
