"""Tiny embedding caches for the GAN tests (built with cache.writer.build_cache and a hashing test encoder),
plus tests of the image cache and the batch sampler, which need no model."""
from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from embeddings.base import TextEncoder
from tools.dataset import CaptionDataset

COLORS = [(220, 40, 40), (240, 200, 30), (250, 250, 250), (150, 60, 200), (40, 120, 220), (240, 120, 180)]
WORDS = ["red", "yellow", "white", "purple", "blue", "pink"]


class HashEncoder(TextEncoder):
    """Deterministic test encoder: unit vectors from sha256 of the text (no model, no TF)."""

    needs_fit = False

    def __init__(self, dim: int = 16, spec: str = "testhash"):
        self.dim, self.spec = dim, spec

    def config(self) -> dict:
        return {"spec": self.spec, "dim": self.dim}

    def encode(self, texts, **_):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            raw = np.frombuffer(hashlib.sha256(t.encode()).digest() * 4, np.uint8)[: self.dim]
            v = raw.astype(np.float32) - 127.5
            out[i] = v / np.linalg.norm(v)
        return out


def tiny_synthetic_run(tmp: Path, n_images: int) -> tuple[Path, Path, Path]:
    """A synthetic-flowers set of n_images, its TF-IDF cache and a 2-step tiny dfgan run on it (the bench scripts'
    end-to-end tests): -> (data folder, cache, run folder)."""
    import precompute_embeddings
    import train_gan
    from tools.synthetic import generate_dataset

    data = tmp / "flowers"
    generate_dataset(data, n=n_images, seed=0, n_test=4, progress=False)
    cache = tmp / "tfidf.h5"
    assert precompute_embeddings.main(["--data", str(data), "--encoder", "tfidf", "--out", str(cache)]) in (0, None)
    train_gan.main(["--embeddings", str(cache), "--run-dir", str(tmp / "runs"), "--steps", "2", "--ngf", "8",
                    "--ndf", "8", "--batch-size", "4", "--z-dim", "8", "--c-dim", "8", "--preset", "cpu",
                    "--mixed-precision", "off", "--set", "num_sample_captions=2", "--set", "num_sample_z=1",
                    "--set", "hard_negatives=0"])
    return data, cache, next((tmp / "runs").iterdir())


def make_cache(tmp: Path, n_images: int = 6, caps: int = 3, dim: int = 16, corrupt: int | None = None,
               spec: str = "testhash", name: str = "tiny-flowers", classes: int = 0) -> Path:
    """tmp/data/*.png (n_images solid colours, one per image) + tmp/cache/<name>-<spec>.h5; with classes > 0 the
    images carry labels (image i: class "c{i % classes}")."""
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    paths, captions, caption_image = [], [], []
    for i in range(n_images):
        p = data / f"img{i:03d}.png"
        color = COLORS[i % len(COLORS)]
        if i == corrupt:
            p.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        else:
            arr = np.zeros((64, 64, 3), np.uint8)
            arr[:] = color
            arr[16:48, 16:48] = (255 - np.array(color)) // 2  # a centred square: flips and shifts change pixels
            Image.fromarray(arr).save(p)
        paths.append(str(p.resolve()))
        for c in range(caps):
            captions.append(f"a {WORDS[i % len(WORDS)]} flower number {i} variant {c}")
            caption_image.append(i)
    ds = CaptionDataset(name=name, root=data, layout="manifest", image_ids=[f"img{i}" for i in range(n_images)],
                        image_paths=paths, captions=captions, caption_image=np.array(caption_image))
    if classes:
        ds.labels, ds.label_source = np.arange(n_images) % classes, "class"
        ds.label_names = [f"c{k}" for k in range(classes)]
    from cache.writer import build_cache

    out = tmp / "cache" / f"{name}-{spec}.h5"
    build_cache(ds, HashEncoder(dim, spec), out, log=lambda *_: None)
    return out


def test_image_cache_masks_corrupt_images_and_is_shared_and_reused(tmp_path):
    from gan.data import read_cache
    from gan.image_cache import image_cache_path, load_or_build_image_cache, paths_hash

    cache = make_cache(tmp_path, n_images=4, corrupt=2)
    data = read_cache(cache)
    lines = []
    images, valid, path = load_or_build_image_cache(cache, data.image_paths, 64, lines.append, progress=False,
                                                    dataset_name="tiny-flowers")
    assert path == image_cache_path(cache, data.image_paths, 64, "tiny-flowers") and path.parent == cache.parent
    assert path.name == f"tiny-flowers-{paths_hash(data.image_paths, 64)[:12]}.images64.h5"
    assert images.shape == (4, 64, 64, 3) and images.dtype == np.uint8
    assert valid.tolist() == [True, True, False, True]
    assert images[0, 0, 0].tolist() == list(COLORS[0]) and images[2].max() == 0
    assert any("1 corrupt image" in line for line in lines)
    # second use, here from another encoder's cache of the same images: read back, not decoded again
    other = make_cache(tmp_path, n_images=4, corrupt=2, spec="otherhash")
    lines.clear()
    images2, valid2, path2 = load_or_build_image_cache(other, read_cache(other).image_paths, 64, lines.append,
                                                       progress=False, dataset_name="tiny-flowers")
    assert path2 == path and np.array_equal(images, images2) and np.array_equal(valid, valid2)
    assert lines and "1 masked out" in lines[0] and "decoded" not in lines[0]
    # other paths (moved dataset, other size): another file; a damaged file is rebuilt
    subset = data.image_paths[:3]
    assert image_cache_path(cache, subset, 64, "tiny-flowers") != path != image_cache_path(cache, subset, 32)
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
    lines.clear()
    load_or_build_image_cache(cache, data.image_paths, 64, lines.append, progress=False, dataset_name="tiny-flowers")
    assert any("rebuilding" in line for line in lines)
    with h5py.File(path) as f:
        assert f["images"].shape == (4, 64, 64, 3) and f.attrs["complete"]


def test_sampler_is_keyed_by_step_and_mismatches_images():
    from gan.data import BatchSampler

    caption_image = np.repeat(np.arange(5), [2, 3, 1, 2, 4])  # 12 captions over 5 images
    valid = np.array([True, True, True, False, True])  # image 3 failed to decode
    a = BatchSampler(caption_image, valid, batch_size=3, seed=7, k=2)
    b = BatchSampler(caption_image, valid, batch_size=3, seed=7, k=2)
    seen = []
    for step in range(8):
        img, rows, wrong = a.batch(step)
        img_b, rows_b, wrong_b = b.batch(step)
        assert np.array_equal(img, img_b) and np.array_equal(rows, rows_b) and np.array_equal(wrong, wrong_b)
        assert 3 not in img.tolist()
        assert (caption_image[rows] == img[:, None]).all()  # captions belong to their image
        assert (caption_image[wrong] != img[:, None]).all()  # mismatched captions come from another image
        assert (caption_image[wrong] != 3).all()
        seen += img.tolist()
    # epoch-wise permutation: the first 4 samples cover the 4 usable images once
    assert sorted(seen[:4]) == [0, 1, 2, 4]
    # k distinct captions when the image has that many
    img, rows, _ = a.batch(3)
    for i, r in zip(img, rows):
        if np.sum(caption_image == i) >= 2:
            assert r[0] != r[1]
    # a fresh sampler asked for step 5 directly (resume) gives the same batch
    fresh = BatchSampler(caption_image, valid, batch_size=3, seed=7, k=2)
    assert all(np.array_equal(x, y) for x, y in zip(fresh.batch(5), a.batch(5)))


def test_ta80_vocabulary_and_word_ids():
    from gan import ta80

    texts = ["This flower has RED petals.", "a red, red flower", "petals"]
    assert ta80.tokenize(texts[0]) == ["this", "flower", "has", "red", "petals"]
    vocab = ta80.build_vocab(texts)  # by frequency, ties alphabetical
    assert vocab == ["red", "flower", "petals", "a", "has", "this"]
    ids = ta80.encode_texts(["red zebra petals", " ".join(["red"] * 30)], vocab, max_tokens=20)
    assert ids.dtype == np.int32 and ids.shape == (2, 20)
    assert ids[0, :4].tolist() == [2, ta80.UNK, 4, ta80.PAD] and ids[0, 3:].sum() == 0  # pad 0, unknown 1
    assert (ids[1] == 2).all()  # cut at 20 words
