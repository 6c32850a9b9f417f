"""Token states in the cache (precompute_embeddings.py --tokens): one-pass encode_tokens, round trip, masked mean =
sentence vector, refusal of differently built caches, kill -9 + resume byte identity, the shard (Ray) path, and
EmbeddingCache.encode_tokens for new text. A tiny BERT (tests/encoder_fixtures.py) stands in for MiniLM: same code.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import encoder_fixtures as fx
from cache import layout as LA
from cache.fingerprint import cache_fingerprint
from cache.reader import EmbeddingCache
from cache.tokens import TokenStates, fingerprint_part
from cache.writer import UniquePlan, build_cache, build_cache_report
from tools.dataset import CaptionDataset
from tools.errors import UserError

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
COLORS = ["red", "yellow", "white", "pink", "green"]


def make_dataset(n_images: int = 24, per_image: int = 5, seed: int = 0) -> CaptionDataset:
    """Captions in the tiny vocabulary, many repeated, a few long enough to be cut at L = 8."""
    rng = np.random.default_rng(seed)
    captions, owner = [], []
    for i in range(n_images):
        for _ in range(per_image):
            a, b = rng.choice(COLORS, 2, replace=False)
            long = rng.random() < 0.2
            captions.append(f"this flower has {a} petals" + (f" and {b} leaves , a {b} flower ." if long else ""))
            owner.append(i)
    ids = [f"{i:05d}" for i in range(n_images)]
    return CaptionDataset(name="tok-flowers", root=Path("/tmp/tok-flowers"), layout="manifest", image_ids=ids,
                          image_paths=[f"/tmp/tok-flowers/{i}.png" for i in ids], captions=captions,
                          caption_image=np.array(owner), test_ids=None, test_captions=None)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("tokbert")
    fx.save_tiny_bert_tf(str(root / "tf"))
    return str(root / "tf")


@pytest.fixture(scope="module")
def encoder(bert_dir):
    from embeddings.registry import get_encoder

    return get_encoder(f"hf:{bert_dir}")


@pytest.fixture(scope="module")
def built(encoder, tmp_path_factory) -> Path:
    """The dataset cached with tokens at auto L, chunks of 8 distinct captions."""
    out = tmp_path_factory.mktemp("tokcache") / "c.h5"
    build_cache(make_dataset(), encoder, out, chunk_size=8, tokens="auto", log=None)
    return out


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------- encoder
def test_encode_tokens_is_encode_plus_masked_states(encoder):
    texts = ["this flower has red petals", "a pink flower", "this flower has red petals",
             "the flower has white petals and green leaves , a large white flower ."]
    vectors, states, lengths, ids = encoder.encode_tokens(texts, 8)
    assert vectors.tobytes() == encoder.encode(texts).tobytes()  # one pass, same batches: byte-equal
    assert states.shape == (4, 8, 16) and states.dtype == np.float32 and ids.dtype == lengths.dtype == np.int32
    assert lengths.tolist() == [7, 5, 7, 8]  # [CLS] ... [SEP]; the long one cut at L
    assert ids[1].tolist() == [2, 5, 12, 7, 3, 0, 0, 0] and ids[3, 0] == 2 and ids[3, -1] != 3  # pad 0, [SEP] cut
    assert not states[1, 5:].any() and np.abs(states[1, :5]).min() > 0  # zeros exactly beyond the length
    assert states[0].tobytes() == states[2].tobytes()
    full = encoder.encode_tokens(texts, 16)  # L only pads/cuts: the same batches give the same states
    np.testing.assert_array_equal(full[1][:3, :8], states[:3])
    assert not full[1][:3, 8:].any() and full[2][3] == 16 and full[0].tobytes() == vectors.tobytes()


# ------------------------------------------------------------------------------------------- round trip
def test_token_round_trip_and_config(built, encoder):
    ds = make_dataset()
    plan = UniquePlan.from_captions(ds.captions)
    counts = encoder.token_lengths(plan.texts)
    auto = -(-int(np.ceil(np.percentile(counts, 99))) // 8) * 8
    with EmbeddingCache.open(built) as cache:
        assert cache.has_tokens and cache.num_unique == len(plan.texts)
        config = cache.token_config
        assert config["length"] == auto == 16 and config["truncated"] == int((counts > auto).sum())
        assert (config["layer"], config["dtype"], config["padding"], config["pooling"]) == ("last", "float16",
                                                                                           "right", "mean")
        with cache.tokens() as tokens:
            assert (tokens.length, tokens.dim, tokens.num_unique) == (16, 16, len(plan.texts))
            rows = np.arange(ds.num_captions)[::-1]  # any order, duplicates included
            states, lengths = tokens.rows(rows)
        with h5py.File(built, "r") as f:
            assert f[LA.TOKENS_STATES].chunks == (1, 16, 16) and f[LA.TOKENS_STATES].dtype == np.float16
            stored_ids = f[LA.TOKENS_IDS][()]
    _, want, want_len, want_ids = encoder.encode_tokens([ds.captions[r] for r in rows], 16)
    np.testing.assert_array_equal(lengths, want_len)
    np.testing.assert_allclose(states.astype(np.float32), want, rtol=1e-3, atol=1e-3)  # float16 of the same pass
    assert np.array_equal(stored_ids[plan.index[rows]], want_ids)
    twins = np.flatnonzero(plan.index[rows] == plan.index[rows[0]])  # caption rows sharing one distinct caption
    assert len(twins) > 1 and all(states[t].tobytes() == states[0].tobytes() for t in twins)


def test_length_given_cuts_and_counts(encoder, tmp_path):
    ds = make_dataset()
    counts = encoder.token_lengths(UniquePlan.from_captions(ds.captions).texts)
    report = build_cache_report(ds, encoder, tmp_path / "l8.h5", chunk_size=8, tokens=8, dtype="float16", log=None)
    assert report.tokens["length"] == 8 and report.tokens["truncated"] == int((counts > 8).sum()) > 0
    assert report.tokens["length_rule"].startswith("--token-length 8")
    with EmbeddingCache.open(report.path) as cache, cache.tokens() as tokens:
        _, lengths = tokens.unique(np.arange(tokens.num_unique))
        assert cache.dtype == "float16" and tokens.length == 8  # --dtype float16 vectors beside the tokens
        vectors, want = cache.embeddings(), encoder.encode(ds.captions)
    np.testing.assert_array_equal(lengths, np.minimum(counts, 8))
    np.testing.assert_allclose(vectors, want, rtol=0, atol=2e-3)


def test_masked_mean_of_stored_tokens_is_the_sentence_vector(built):
    with EmbeddingCache.open(built) as cache, cache.tokens() as tokens:
        vectors = cache.embeddings()  # [N, D] float32
        states, lengths = tokens.rows(np.arange(cache.num_captions))
        cut = lengths == tokens.length  # reached L: possibly truncated, the vector saw more tokens
    mean = states.astype(np.float32).sum(axis=1) / lengths[:, None]  # zeros beyond each length
    err = np.abs(l2(mean) - vectors)[~cut]
    assert (~cut).sum() > 100 and err.max() < 2e-3  # float16 rounding (2^-11 relative) of ~O(1) states
    assert err.max() > 0  # they really went through float16


# ---------------------------------------------------------------------------------------------- refusals
def test_differently_built_caches_are_refused(built, encoder, tmp_path):
    ds = make_dataset()
    with pytest.raises(UserError, match=r"reused: its token states are length 16.*asks for length 8.*--force"):
        build_cache(ds, encoder, built, chunk_size=8, tokens=8, log=None)
    with pytest.raises(UserError, match=r"holds token states .* asks for none; add --tokens --token-length 16"):
        build_cache(ds, encoder, built, chunk_size=8, log=None)
    report = build_cache_report(ds, encoder, built, chunk_size=8, tokens=16, log=None)  # L as given = auto's L
    assert report.up_to_date and report.tokens["length"] == 16
    plain = build_cache(ds, encoder, tmp_path / "plain.h5", chunk_size=8, log=None)
    with pytest.raises(UserError, match=r"cannot be reused: it was built without --tokens"):
        build_cache(ds, encoder, plain, chunk_size=8, tokens="auto", log=None)
    with EmbeddingCache.open(plain) as cache:  # a sentence-only cache opens as before
        assert not cache.has_tokens and cache.tokens() is None
        with pytest.raises(UserError, match=r"holds no token states \(built without --tokens\).*--tokens"):
            cache.require_tokens()
        with pytest.raises(UserError, match=r"no token states"):
            cache.encode_tokens(["a red flower"])
        # its fingerprint is what a build without tokens always hashed
        assert cache.fingerprint == cache_fingerprint(ds, encoder.config(), "float32")
    with EmbeddingCache.open(built) as cache:
        tokens = fingerprint_part(cache.token_config)
        assert cache.fingerprint == cache_fingerprint(ds, encoder.config(), "float32", tokens)
        assert cache.fingerprint != cache_fingerprint(ds, encoder.config(), "float32", {**tokens, "length": 8})
    with pytest.raises(UserError, match=r"--tokens needs a transformer encoder .*minilm, mpnet, hf:"):
        from test_cache import BagEncoder

        build_cache(ds, BagEncoder(), tmp_path / "bag.h5", tokens="auto", log=None)


# ------------------------------------------------------------------------------------------------ resume
_KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path[:0] = [{repo!r}, {tests!r}]
    from test_token_cache import make_dataset
    from cache.writer import build_cache
    from embeddings.registry import get_encoder
    build_cache(make_dataset(), get_encoder("hf:" + sys.argv[2]), sys.argv[1], chunk_size=8, tokens="auto", log=None)
""")


def _run_writer(out: Path, bert_dir: str, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("T2I_CACHE_TEST_KILL", None)
    if kill:
        env["T2I_CACHE_TEST_KILL"] = kill
    script = _KILL_SCRIPT.format(repo=str(REPO), tests=str(TESTS))
    return subprocess.run([sys.executable, "-c", script, str(out), bert_dir], env=env, capture_output=True, text=True)


def test_kill_9_after_token_rows_then_resume_is_byte_identical(bert_dir, encoder, tmp_path, monkeypatch):
    """SIGKILL after chunk 2's vectors and token rows are written, before the chunk is recorded."""
    straight, killed = tmp_path / "straight.h5", tmp_path / "killed.h5"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the uninterrupted build runs here, the others in children
    build_cache(make_dataset(), encoder, straight, chunk_size=8, tokens="auto", log=None)
    run = _run_writer(killed, bert_dir, "rows:2")
    assert run.returncode == -9, run.stderr
    with EmbeddingCache.open(killed, require_complete=False) as cache:
        assert cache.chunks_done == 2 and not cache.complete and cache.has_tokens
    assert _run_writer(killed, bert_dir).returncode == 0
    assert killed.read_bytes() == straight.read_bytes()
    with EmbeddingCache.open(killed) as cache, cache.tokens() as tokens:
        assert tokens.unique(np.arange(tokens.num_unique))[1].min() >= 5  # every chunk's rows were written


# ------------------------------------------------------------------------------------- shards (Ray path)
def test_shard_path_writes_the_same_file(built, bert_dir, encoder, tmp_path, monkeypatch):
    """The Ray build's worker and merge code, with the workers run in this process: tokens travel through the
    shard files and the merged file equals the single-process one."""
    from cache import ray_pool

    def run_local(report, store, texts, enc, pending, workers, address, worker_cpus, batch_size, progress, log,
                  token_length=None):
        args = (enc.config(), enc.state(), str(store.out), store.key,
                (store.layout.num_unique, store.layout.chunk_size, store.layout.shard_chunks), batch_size, token_length)
        worker = ray_pool.ShardWorker(*args)
        for s in pending:
            lo, hi = store.layout.shard_range(s)
            worker.encode_shard(s, texts[lo:hi])
            report.shards_encoded += 1
        report.workers = 1  # the pool's scheduling without Ray: one plain ShardWorker runs every shard

    monkeypatch.setattr(ray_pool, "_run_pool", run_local)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    single = tmp_path / "single.h5"
    build_cache(make_dataset(), encoder, single, chunk_size=8, tokens="auto", log=None)
    sharded = tmp_path / "sharded.h5"
    report = ray_pool.build_cache_ray(make_dataset(), encoder, sharded, workers=1, chunk_size=8, shard_chunks=2,
                                      tokens="auto", log=None)
    assert report.shards_encoded == report.num_shards > 1 and not (tmp_path / "sharded.h5.shards").exists()
    assert sharded.read_bytes() == single.read_bytes()


# ----------------------------------------------------------------------------------------------- new text
def test_encode_tokens_of_new_and_cached_text(built, encoder):
    ds = make_dataset()
    cached, new = ds.captions[3], "a small white flower with pink petals"
    with EmbeddingCache.open(built) as cache:
        vectors, states, lengths = cache.encode_tokens([cached, new, cached])
        with cache.tokens() as tokens:
            stored, stored_len = tokens.rows([3])
        stored_vector = cache.embeddings([3])
    assert states.dtype == np.float16 and vectors.dtype == np.float32 and states.shape == (3, 16, 16)
    assert states[0].tobytes() == stored[0].tobytes() == states[2].tobytes()  # a hit reuses the stored rows
    assert lengths[0] == stored_len[0] and vectors[0].tobytes() == stored_vector[0].tobytes()
    want_v, want_s, want_len, _ = encoder.encode_tokens([new], 16)  # a miss: the cache's own encoder
    assert vectors[1].tobytes() == want_v[0].tobytes() and lengths[1] == want_len[0] == 9
    assert states[1].tobytes() == want_s[0].astype(np.float16).tobytes()
    # the cached text encoded afresh lands on its stored rows (another batch: equal to float16 rounding)
    again = encoder.encode_tokens([cached], 16)[1][0]
    np.testing.assert_allclose(again, stored[0].astype(np.float32), rtol=1e-3, atol=1e-3)


def test_rows_read_as_raw_chunks_equal_a_rechunked_copy(built, tmp_path):
    """rows() reads the writer's one-row chunks raw; a file chunked otherwise goes through h5py selections."""
    import shutil

    copy = tmp_path / "rechunked.h5"
    shutil.copy(built, copy)
    with h5py.File(copy, "r+") as f:
        states = f[LA.TOKENS_STATES][()]
        del f[LA.TOKENS_STATES]
        f.create_dataset(LA.TOKENS_STATES, data=states, chunks=(4, *states.shape[1:]), compression="gzip")
    rows = np.random.default_rng(1).integers(0, len(make_dataset().captions), 64)
    with TokenStates(built) as raw, TokenStates(copy) as selected:
        assert raw._raw_rows and not selected._raw_rows
        a, b = raw.rows(rows), selected.rows(rows)
        with pytest.raises(IndexError, match="caption rows must lie in"):
            raw.rows([len(make_dataset().captions)])
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    np.testing.assert_array_equal(a[0], states[raw_index(built)[rows]])


def raw_index(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[LA.CAPTION_UNIQUE_INDEX][()]


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("ray") is None,
                    reason="Ray is optional: pip install -r requirements-ray.txt")
def test_ray_workers_store_the_same_token_states(built, bert_dir, encoder, tmp_path):
    """A real local Ray, 2 workers, shards of one chunk: the file equals the single-process one (vectors to float
    tolerance: a worker runs TF on one thread; token states to float16 rounding; everything else exactly)."""
    from cache.ray_pool import build_cache_ray

    out = tmp_path / "ray.h5"
    report = build_cache_ray(make_dataset(), encoder, out, workers=2, chunk_size=8, shard_chunks=1, tokens="auto",
                             log=None)
    assert report.workers == 2 and report.shards_encoded == report.num_shards == 3
    with h5py.File(out, "r") as fa, h5py.File(built, "r") as fb:
        same_attrs = {k for k in fb.attrs if k != "created"}
        assert {k: str(fa.attrs[k]) for k in same_attrs} == {k: str(fb.attrs[k]) for k in same_attrs}
        np.testing.assert_allclose(fa[LA.CAPTION_EMBEDDING][()], fb[LA.CAPTION_EMBEDDING][()], rtol=0, atol=1e-6)
        np.testing.assert_allclose(fa[LA.TOKENS_STATES][()].astype(np.float32),
                                   fb[LA.TOKENS_STATES][()].astype(np.float32), rtol=1e-3, atol=1e-3)
        for name in (LA.TOKENS_LENGTHS, LA.TOKENS_IDS, LA.CAPTION_UNIQUE_INDEX):
            np.testing.assert_array_equal(fa[name][()], fb[name][()])


@pytest.mark.parametrize("args, needle", [
    (["--encoder", "tfidf", "--tokens"], "--tokens needs a transformer encoder with token states (minilm, mpnet, hf:"),
    (["--encoder", "glove:x.txt", "--tokens"], "glove:x.txt gives sentence vectors only"),
    (["--tokens", "--token-length", "0"], "--token-length '0' must be a positive integer or auto"),
    (["--token-length", "16"], "--token-length 16 needs --tokens"),
])
def test_cli_refuses_bad_token_flags_in_one_line_before_loading(args, needle, tmp_path):
    run = subprocess.run([sys.executable, "precompute_embeddings.py", "--data", str(tmp_path / "none"), *args],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and lines[-1].startswith("error: ") and needle in lines[-1], run.stderr
    assert "tensorflow" not in run.stderr.lower()  # refused before any model (or TensorFlow) was loaded
