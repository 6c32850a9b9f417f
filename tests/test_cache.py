"""The HDF5 embedding cache: round trip, dedup, kill -9 + resume byte-identity, no-op re-runs, --force,
refusal of corrupt/incomplete files, fingerprints, float16.

Most tests use `BagEncoder`, a tiny deterministic *fitted* encoder in numpy (so they need no TensorFlow);
one test runs the real tfidf encoder end to end through the registry.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from cache import layout as L
from cache.fingerprint import cache_fingerprint
from cache.paths import default_cache_path, encoder_slug
from cache.layout import CAPTION_UNIQUE_INDEX
from cache.reader import EmbeddingCache
from cache.writer import UniquePlan, build_cache, build_cache_report
from embeddings.base import TextEncoder
from tools.dataset import CaptionDataset
from tools.errors import UserError

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
COLORS = ["red", "blue", "pale yellow", "white", "deep purple", "orange"]
PARTS = ["petals", "round petals", "a dark center", "pointed petals", "a long stem"]


class BagEncoder(TextEncoder):
    """Word counts over a vocabulary fitted on the captions (+ a length feature); numpy only, deterministic.

    Counts its calls so tests can see what was fitted, loaded and encoded."""

    needs_fit = True

    def __init__(self, scale: float = 1.0):
        self.spec, self.scale, self.dim = "bag", scale, 0
        self.vocab: dict[str, int] = {}
        self.fit_calls, self.load_calls, self.encoded = 0, 0, []
        self.fail_after: int | None = None  # raise KeyboardInterrupt after this many encode calls

    def config(self) -> dict:
        return {"spec": self.spec, "scale": self.scale, "dim": self.dim}

    def _set(self, words) -> None:
        self.vocab = {w: i + 1 for i, w in enumerate(words)}  # column 0: text length
        self.dim = len(self.vocab) + 1

    def fit(self, texts) -> None:
        self.fit_calls += 1
        self._set(sorted({w for t in texts for w in t.split()}))

    def state(self) -> dict:
        return {"vocabulary": np.array(list(self.vocab), dtype=str), "scale": np.float32(self.scale)}

    def load_state(self, state) -> None:
        self.load_calls += 1
        self._set([str(w) for w in state["vocabulary"]])

    def encode(self, texts) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.encoded.append(list(texts))
        out = np.zeros((len(texts), self.dim), np.float32)  # [n, V+1]
        for i, text in enumerate(texts):
            out[i, 0] = len(text) / 7.0
            for w in text.split():
                out[i, self.vocab.get(w, 0)] += self.scale
        return out

    @property
    def calls(self) -> int:
        return len(self.encoded)


def make_dataset(n_images: int = 40, per_image: int = 10, seed: int = 0, tests: bool = True) -> CaptionDataset:
    """Captions from a small grammar, so many repeat (like real caption sets)."""
    rng = np.random.default_rng(seed)
    captions, owner = [], []
    for i in range(n_images):
        for _ in range(per_image):
            c, p = COLORS[rng.integers(len(COLORS))], PARTS[rng.integers(len(PARTS))]
            captions.append(f"this {c} flower has {p}" + (" and leaves" if rng.random() < 0.3 else ""))
            owner.append(i)
    ids = [f"{i:05d}" for i in range(n_images)]
    return CaptionDataset(
        name="toy-flowers", root=Path("/tmp/toy-flowers"), layout="manifest", image_ids=ids,
        image_paths=[f"/tmp/toy-flowers/images/{i}.png" for i in ids], captions=captions,
        caption_image=np.array(owner), test_ids=["1", "2"] if tests else None,
        test_captions=["a red flower", "a flower with ünïcode petals"] if tests else None)


def contents(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file, as comparable Python values."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                value = obj[()]
                out[name] = (str(obj.dtype), value.tobytes() if value.dtype != object else [bytes(v) for v in value])
            for key, attr in obj.attrs.items():
                out[f"{name}@{key}"] = repr(attr)
        f.visititems(visit)
        out.update({f"@{k}": repr(v) for k, v in f.attrs.items()})
    return out


# ------------------------------------------------------------------------------------------------ round trip
def test_round_trip_every_row_and_attribute(tmp_path):
    ds, enc = make_dataset(), BagEncoder()
    out = build_cache(ds, enc, tmp_path / "c.h5", chunk_size=16, log=None)
    reference = BagEncoder()
    reference.fit(ds.captions)
    with EmbeddingCache.open(out) as cache:
        assert cache.texts() == ds.captions
        assert cache.image_index().dtype == np.int64 and (cache.image_index() == ds.caption_image).all()
        np.testing.assert_array_equal(cache.embeddings(), reference.encode(ds.captions))  # exact, duplicates too
        assert cache.image_ids() == ds.image_ids and cache.image_paths() == ds.image_paths
        assert cache.test_ids() == ["1", "2"] and cache.test_texts()[1] == "a flower with ünïcode petals"
        assert (cache.num_captions, cache.num_images, cache.dim) == (400, 40, reference.dim)
        assert cache.encoder_spec == "bag" and cache.encoder_config == reference.config()
        assert cache.fingerprint == cache_fingerprint(ds, BagEncoder().config(), "float32")
        assert (cache.dataset_name, cache.dataset_root, cache.dataset_layout) == ("toy-flowers", "/tmp/toy-flowers", "manifest")
        assert {"python", "numpy", "h5py"} <= set(cache.versions) and cache.created[:2] == "20"
        assert list(cache.encoder_state()["vocabulary"]) == list(reference.vocab)
        assert cache.num_unique == len(set(ds.captions)) and cache.complete
        rows = [399, 3, 3, 0, 250]
        np.testing.assert_array_equal(cache.embeddings(rows), reference.encode([ds.captions[r] for r in rows]))
        vectors, found = cache.lookup([ds.captions[7], "never seen", ds.captions[0]])
        assert found.tolist() == [True, False, True] and not vectors[1].any()
        np.testing.assert_array_equal(vectors[[0, 2]], reference.encode([ds.captions[7], ds.captions[0]]))
    with h5py.File(out, "r") as f:  # plain h5py sees the documented layout
        assert f[L.CAPTION_TEXT].dtype == h5py.string_dtype() and f[L.CAPTION_EMBEDDING].dtype == np.float32
        assert f[L.CAPTION_EMBEDDING].chunks is not None and bool(f.attrs[L.ATTR_COMPLETE])
        assert json.loads(f.attrs[L.ATTR_ENCODER_CONFIG]) == reference.config()


def test_duplicates_encoded_once_in_length_order(tmp_path):
    ds, enc = make_dataset(), BagEncoder()
    build_cache(ds, enc, tmp_path / "c.h5", chunk_size=16, log=None)
    encoded = [t for call in enc.encoded for t in call]
    assert sorted(encoded) == sorted(set(ds.captions)) and len(encoded) < len(ds.captions) / 2
    assert encoded == sorted(encoded, key=lambda t: (len(t), t)) and max(map(len, enc.encoded)) == 16
    with EmbeddingCache.open(tmp_path / "c.h5") as cache:
        emb, uidx = cache.embeddings(), cache.unique_index()
        for text in set(ds.captions):
            rows = [i for i, c in enumerate(ds.captions) if c == text]
            assert len({emb[r].tobytes() for r in rows}) == 1 and len(set(uidx[rows])) == 1


def test_unique_plan_is_deterministic():
    plan = UniquePlan.from_captions(["bb", "a", "bb", "ab", "a"])
    assert plan.texts == ["a", "ab", "bb"] and plan.index.tolist() == [2, 0, 2, 1, 0]


def test_float16_storage(tmp_path):
    ds = make_dataset(tests=False)
    build_cache(ds, BagEncoder(), tmp_path / "h.h5", dtype="float16", log=None)
    reference = BagEncoder()
    reference.fit(ds.captions)
    with EmbeddingCache.open(tmp_path / "h.h5") as cache:
        assert cache.dtype == "float16" and cache.test_ids() is None
        got = cache.embeddings()
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, reference.encode(ds.captions).astype(np.float16).astype(np.float32))
    with h5py.File(tmp_path / "h.h5", "r") as f:
        assert f[L.CAPTION_EMBEDDING].dtype == np.float16
    with pytest.raises(UserError, match="float32, float16"):
        build_cache(ds, BagEncoder(), tmp_path / "x.h5", dtype="bfloat16", log=None)


# ---------------------------------------------------------------------------------------------- re-runs
def test_rerun_is_a_noop_and_force_rebuilds(tmp_path):
    ds, out = make_dataset(), tmp_path / "c.h5"
    build_cache(ds, BagEncoder(), out, log=None)
    before, mtime, items = out.read_bytes(), out.stat().st_mtime_ns, contents(out)
    enc, said = BagEncoder(), []
    report = build_cache_report(ds, enc, out, log=said.append)
    assert report.up_to_date and enc.calls == 0 and enc.fit_calls == 0
    assert said == [f"cache is up to date: {out} (400 captions, dim {report.dim}) — use --force to rebuild"]
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime
    enc = BagEncoder()
    report = build_cache_report(ds, enc, out, force=True, log=None)
    assert not report.up_to_date and enc.fit_calls == 1 and enc.calls > 0
    after = contents(out)
    assert after.pop("@created") and items.pop("@created") and after == items


def test_different_inputs_refused_with_both_fingerprints(tmp_path):
    ds, out = make_dataset(), tmp_path / "c.h5"
    build_cache(ds, BagEncoder(), out, log=None)
    ds.captions[5] = "a completely new caption"
    with pytest.raises(UserError) as err:
        build_cache(ds, BagEncoder(), out, log=None)
    old = cache_fingerprint(make_dataset(), BagEncoder().config(), "float32")[:16]
    new = cache_fingerprint(ds, BagEncoder().config(), "float32")[:16]
    assert old in str(err.value) and new in str(err.value) and "--force" in str(err.value)
    build_cache(ds, BagEncoder(), out, force=True, log=None)
    with EmbeddingCache.open(out) as cache:
        assert cache.texts()[5] == "a completely new caption"


def test_fingerprint_tracks_captions_mapping_encoder_and_dtype():
    base = make_dataset()
    fp = lambda ds, cfg={"spec": "bag"}, dt="float32": cache_fingerprint(ds, cfg, dt)  # noqa: E731
    assert fp(base) == fp(make_dataset())
    changed_caption = make_dataset()
    changed_caption.captions[0] += "."
    moved = make_dataset()
    moved.caption_image[0] = 1
    renamed = make_dataset()
    renamed.image_ids[0] = "x"
    relocated = make_dataset()
    relocated.image_paths[0] = "/elsewhere.png"  # paths are not content
    prints = [fp(base), fp(changed_caption), fp(moved), fp(renamed), fp(base, {"spec": "bag", "scale": 2}),
              fp(base, dt="float16")]
    assert len(set(prints)) == len(prints)
    assert fp(relocated) == fp(base)
    assert fp(base, {"b": 1, "a": 2}) == fp(base, {"a": 2, "b": 1})  # sorted keys


# ------------------------------------------------------------------------------------------ bad / partial files
def _good_cache(tmp_path) -> Path:
    return build_cache(make_dataset(), BagEncoder(), tmp_path / "good.h5", log=None)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_file_refused_by_reader_and_writer(tmp_path, damage):
    bad = tmp_path / "bad.h5"
    good = _good_cache(tmp_path).read_bytes()
    bad.write_bytes({"garbage": b"not an hdf5 file at all" * 100, "truncated": good[: len(good) // 2],
                     "empty": b""}[damage])
    with pytest.raises(UserError) as err:
        EmbeddingCache.open(bad)
    message = str(err.value)
    assert "\n" not in message and str(bad) in message and "--force" in message
    with pytest.raises(UserError, match="--force"):
        build_cache(make_dataset(), BagEncoder(), bad, log=None)
    build_cache(make_dataset(), BagEncoder(), bad, force=True, log=None)
    assert EmbeddingCache.open(bad).complete


def test_file_held_by_another_process_is_one_line(tmp_path):
    good = _good_cache(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time, h5py
        f = h5py.File({str(good)!r}, "r+")  # HDF5 locks a file open for writing
        print("open", flush=True)
        sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        for attempt in (lambda: EmbeddingCache.open(good), lambda: build_cache(make_dataset(), BagEncoder(), good, log=None)):
            with pytest.raises(UserError) as err:
                attempt()
            message = str(err.value)
            assert "\n" not in message and str(good) in message and "open in another process" in message
            assert "--force" not in message  # nothing is damaged: no rebuild advice
    finally:
        holder.communicate("")
    assert EmbeddingCache.open(good).complete  # free again once the other process lets go


def test_not_a_cache_and_missing_file_refused(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(UserError, match="not an embedding cache.*missing captions/text"):
        EmbeddingCache.open(tmp_path / "other.h5")
    with pytest.raises(UserError, match="not found"):
        EmbeddingCache.open(tmp_path / "missing.h5")


def test_incomplete_file_refused_by_reader_and_resumed_with_stored_state(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    ds, out = make_dataset(), tmp_path / "c.h5"
    first = BagEncoder()
    first.fail_after = 3  # "Ctrl-C" during the 4th chunk
    with pytest.raises(KeyboardInterrupt):
        build_cache(ds, first, out, chunk_size=16, log=None)
    with pytest.raises(UserError) as err:
        EmbeddingCache.open(out)
    message = str(err.value)
    assert "incomplete (3 of" in message and "precompute_embeddings.py --data /tmp/toy-flowers" in message
    assert "--encoder bag" in message and message.endswith("to finish it") and "\n" not in message
    with EmbeddingCache.open(out, require_complete=False) as cache:
        assert cache.chunks_done == 3 and not cache.complete
    again = BagEncoder()
    report = build_cache_report(ds, again, out, chunk_size=16, log=None)
    assert again.fit_calls == 0 and again.load_calls == 1  # fitted state comes from the file
    assert report.resumed_unique == 48 and again.calls == -(-report.num_unique // 16) - 3
    build_cache(ds, BagEncoder(), tmp_path / "straight.h5", chunk_size=16, log=None)
    assert contents(out) == contents(tmp_path / "straight.h5")


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    from test_cache import BagEncoder, make_dataset
    from cache.writer import build_cache
    build_cache(make_dataset(), BagEncoder(), sys.argv[1], chunk_size=16, log=None)
""")


def _run_writer(out: Path, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("T2I_CACHE_TEST_KILL", None)
    if kill:
        env["T2I_CACHE_TEST_KILL"] = kill
    script = _KILL_SCRIPT.format(repo=str(REPO), tests=str(TESTS))
    return subprocess.run([sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("kill", ["chunk:0", "rows:2"])
def test_kill_9_then_resume_is_byte_identical(tmp_path, kill):
    """SIGKILL after chunk 0 is recorded, or after chunk 2's rows are written but before they are recorded."""
    straight, killed = tmp_path / "straight.h5", tmp_path / "killed.h5"
    assert _run_writer(straight).returncode == 0
    run = _run_writer(killed, kill)
    assert run.returncode == -9, run.stderr
    with EmbeddingCache.open(killed, require_complete=False) as cache:
        assert cache.chunks_done == {"chunk:0": 1, "rows:2": 2}[kill] and not cache.complete
    assert _run_writer(killed).returncode == 0
    assert contents(killed) == contents(straight)
    assert killed.read_bytes() == straight.read_bytes()
    assert not (tmp_path / "killed.h5.partial").exists()


# ------------------------------------------------------------------------------------- real encoder, names
def test_tfidf_cache_rebuilds_the_same_encoder(tmp_path):
    from embeddings.registry import get_encoder

    ds = make_dataset(n_images=20)
    out = build_cache(ds, get_encoder("tfidf"), tmp_path / "t.h5", log=None)
    with EmbeddingCache.open(out) as cache:
        assert set(cache.encoder_state()) == {"vocabulary", "idf"}
        encoder = cache.build_encoder()  # via the registry, from the stored config + fitted state
        assert encoder.dim == cache.dim
        np.testing.assert_array_equal(cache.embeddings(), encoder.encode(ds.captions))
        assert np.allclose(np.linalg.norm(cache.embeddings(), axis=1), 1, atol=1e-6)


def test_new_text_encoder_is_built_once_per_file_and_rebuilt_for_a_rewritten_file(tmp_path, monkeypatch):
    from embeddings.registry import get_encoder

    ds = make_dataset(n_images=20)
    out = build_cache(ds, get_encoder("tfidf"), tmp_path / "t.h5", log=None)
    builds = []
    real_build = EmbeddingCache.build_encoder
    monkeypatch.setattr(EmbeddingCache, "build_encoder", lambda self: builds.append(1) or real_build(self))
    new = ["a caption that is not in the cache", "nor is this one"]
    with EmbeddingCache.open(out) as cache:
        first, reused = cache.encode(new)
        assert reused == 0 and len(builds) == 1
    with EmbeddingCache.open(out) as cache:  # another reader of the same file: the checked encoder is reused
        np.testing.assert_array_equal(cache.encode(new)[0], first)
        assert len(builds) == 1
    build_cache(ds, get_encoder("tfidf"), out, log=None, force=True)  # rewritten: a new build, checked again
    with EmbeddingCache.open(out) as cache:
        np.testing.assert_array_equal(cache.encode(new)[0], first)
        assert len(builds) == 2


def test_default_names():
    assert encoder_slug("minilm") == "minilm"
    assert encoder_slug("hf:bert-base-uncased") == "hf-bert-base-uncased"
    assert encoder_slug("tfidf?max_tokens=8192") == "tfidf-max_tokens-8192"
    slug = encoder_slug("glove:/data/vectors/glove.6B.300d.txt")
    assert slug.startswith("glove-glove.6B.300d.txt-") and len(slug) == len("glove-glove.6B.300d.txt-") + 8
    assert default_cache_path("synthetic-flowers", "hf:bert-base-uncased", "cache").as_posix() \
        == "cache/synthetic-flowers-hf-bert-base-uncased.h5"
    assert CAPTION_UNIQUE_INDEX == "captions/unique_index"
