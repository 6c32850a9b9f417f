"""Evaluation on any dataset: real pairs read the same from every encoder's cache and from the folder, the real
reference of an unlabelled dataset is its own images, and the shared R-precision judge (one per dataset, text
encoder of its own) learns real pairs, round-trips, and is named by the dataset whatever the encoder.

The attribute classifier comes from cache/attribute_classifier (trained once per checkout, see
test_evaluation.py); the judge trains here on 1 024 in-memory flowers for a few epochs (~30 s).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tools.evaluation.real_data import ATTRIBUTE_VALUES, ATTRIBUTES, generate_labelled_images

N_IMAGES = 240


def _attrs(label) -> dict:
    return {a: ATTRIBUTE_VALUES[a][v] for a, v in zip(ATTRIBUTES, label)}


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """A manifest dataset (no attributes.jsonl) of colour-inverted flowers: another domain than the classifier's
    synthetic set; 2 captions an image; one image file corrupt. Returns (root, images [N, 64, 64, 3], caches)."""
    from cache.writer import build_cache
    from embeddings.registry import get_encoder
    from tools.datasets import load_dataset
    from tools.synthetic import image_captions

    root = tmp_path_factory.mktemp("inverted")
    images, labels = generate_labelled_images(N_IMAGES, seed=5)
    images = 255 - images
    rng = np.random.default_rng(0)
    rows = []
    for i, (im, lab) in enumerate(zip(images, labels)):
        Image.fromarray(im).save(root / f"im{i:04d}.png")
        rows.append({"image_id": f"im{i:04d}", "image_path": f"im{i:04d}.png",
                     "captions": image_captions(_attrs(lab), rng, k=2, min_mentions=0)})
    (root / "im0007.png").write_bytes(b"not a png")  # counted and dropped, never a crash
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_dataset(root)
    caches = [build_cache(dataset, get_encoder(spec), root.parent / f"{root.name}-{k}.h5", log=None)
              for k, spec in enumerate(("tfidf", "tfidf?max_tokens=16"))]
    return root, images, caches


def test_pairs_are_the_same_from_every_cache_and_the_folder(unlabelled):
    from tools.evaluation.pairs import load_pairs

    root, images, caches = unlabelled
    logs = []
    a, b = (load_pairs(cache_path=c, log=logs.append) for c in caches)
    folder = load_pairs(dataset_dir=root, log=logs.append)
    assert a.key == b.key == folder.key  # names one dataset whatever encoded it
    for p in (a, b, folder):
        assert len(p.images) == N_IMAGES - 1 and "im0007" not in p.image_ids  # the corrupt image is dropped ...
        assert len(p.texts) == 2 * (N_IMAGES - 1)  # ... with its 2 captions
        assert np.array_equal(p.images, folder.images)
        assert [p.texts[k] for k in np.flatnonzero(p.caption_image == 7)] == folder.texts[14:16]  # renumbered
    assert np.array_equal(folder.images[:7], images[:7]) and np.array_equal(folder.images[7:], images[8:])
    assert any("1 corrupt image" in line for line in logs)  # ... and counted in the log


def test_unlabelled_dataset_is_judged_against_its_own_images(unlabelled):
    from tools.evaluation.attribute_classifier import load_or_train
    from tools.evaluation.fid import frechet_distance_from_activations
    from tools.evaluation.report import evaluate_images, format_table

    root, images, caches = unlabelled
    gen = {str(i): np.stack([images[i], images[i + 1]]) for i in range(8, 88, 2)}  # 40 captions x 2 real images
    captions = {k: {"caption": "a flower"} for k in gen}
    logs = []
    # real_limit 100 < 2 x 80 generated images: 160 real images, two halves of 80 (FID is biased by size)
    m = evaluate_images(gen, captions, cache_path=caches[0], real_limit=100, seed=0, log=logs.append)
    assert m["real_reference"] == {"source": f"160 of the {N_IMAGES - 1} images of {root.name} ({caches[0]})",
                                   "n": 160, "labelled": False}
    assert m["attribute_ceiling"] is None and m["attribute_accuracy"]["mean"] is None
    table = format_table(m)
    assert "petal_color accuracy" not in table and "no attribute rows: not a synthetic-flowers dataset" in table
    # the floor, recomputed by hand from the same seeded subset of the dataset's own images
    clf = load_or_train()
    valid = np.delete(images, 7, axis=0)
    real = valid[np.sort(np.random.default_rng(0).choice(len(valid), 160, replace=False))]
    f = clf.features(real)
    assert m["fid_floor"] == pytest.approx(frechet_distance_from_activations(f[80:], f[:80]), rel=1e-9)
    # real images of this domain sit near the floor; against the synthetic (uninverted) flowers they would not
    assert m["fid"] < 3 * m["fid_floor"]
    heldout = evaluate_images(gen, captions, seed=0, log=logs.append)  # no cache: the classifier's flowers
    assert heldout["fid"] > 10 * m["fid"]
    # 239 images: too few for either matcher, and both say so
    for key in ("r_precision", "r_precision_shared"):
        assert m[key]["value"] is None and "needs >= 1600" in m[key]["why"]


def _captioned(n: int, seed: int, per_image: int):
    """n in-memory flowers with per_image synthetic captions each: (images, texts, caption_image)."""
    from tools.synthetic import image_captions

    images, labels = generate_labelled_images(n, seed=seed)
    rng = np.random.default_rng(seed)
    texts = [t for lab in labels for t in image_captions(_attrs(lab), rng, k=per_image, min_mentions=0)]
    return images, texts, np.repeat(np.arange(n), per_image)


def test_shared_judge_learns_words_and_round_trips(tmp_path):
    from tools.evaluation.matching import real_r_precision, save_matcher, train_matcher
    from tools.evaluation.shared_matcher import SharedMatcher, _load, build_text_model, fit_vocabulary, tokenize

    images, texts, owner = _captioned(1024, seed=77, per_image=4)
    vocab = fit_vocabulary(texts)
    assert {"red", "petals", "five", "pointy"} <= set(vocab) and "" not in vocab and "[UNK]" not in vocab
    tokens = tokenize(vocab, texts)  # [N, 40]
    assert tokens.shape == (4096, 40) and tokens.dtype == np.int32 and (tokens[:, 0] > 1).all()
    assert (tokenize(vocab, ["Red, PETALS! zebra"])[0, :3] == [vocab.index("red") + 2, vocab.index("petals") + 2, 1]).all()
    trained = train_matcher(images, tokens, owner, lambda: build_text_model(len(vocab)), epochs=6, seed=0,
                            log=lambda *_: None)
    judge = SharedMatcher(trained.image_model, trained.text_model, {**trained.meta, "vocabulary": vocab,
                                                                    "version": 1, "r_precision_real": None})
    test_images, test_texts, test_owner = _captioned(300, seed=2024, per_image=1)
    rp = real_r_precision(judge, test_images, tokenize(vocab, test_texts), test_owner)
    assert rp > 0.03, rp  # 3x chance (0.01; sd 0.006 at 300 images) after 48 steps from scratch, on unseen flowers
    shuffled = real_r_precision(judge, test_images, tokenize(vocab, test_texts), np.roll(test_owner, 1))
    assert shuffled < 0.03  # images paired with another flower's caption: back to chance
    save_matcher(judge, tmp_path)
    again = _load(tmp_path)
    assert again.meta == judge.meta
    assert np.array_equal(again.embed_captions(test_texts[:8]), judge.embed_captions(test_texts[:8]))
    assert np.array_equal(again.embed_images(images[:8]), judge.embed_images(images[:8]))
