"""TAC-GAN's auxiliary classifier (--set aux_class, gan/aux_head.py): golden losses, the head trains D and G, resumes
bit-identically, is evaluated from the checkpoint, and is refused where it cannot work."""
from __future__ import annotations

import json
from dataclasses import replace

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan import losses as L
from test_gan_fixtures import make_cache
from test_gan_train import TINY, ckpt_tensors, cli
from tools.errors import UserError

LOGITS = tf.constant([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # [B=2, K=3]
LABELS = tf.constant([0, 2])


def test_auxiliary_classifier_loss_golden():
    # row 0: logsumexp(2, 0, -1) - 2 = ln(e² + 1 + e⁻¹) - 2 = 0.1698460196; row 1: ln(1 + e + 1) - 0 = 1.5514447139
    assert float(L.auxiliary_classifier_loss(LOGITS, LABELS)) == pytest.approx(0.8606453667, abs=1e-6)
    assert float(L.auxiliary_classifier_loss(tf.cast(LOGITS, tf.bfloat16), LABELS)) == pytest.approx(0.8606, abs=2e-2)
    assert float(L.classifier_accuracy(LOGITS, LABELS)) == 0.5  # row 0 right (arg-max 0), row 1 wrong (1, not 2)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("aux")
    return tmp, make_cache(tmp, classes=3), make_cache(tmp / "plain")


def test_one_step_trains_the_head_d_and_g(work):
    from gan.config import resolve
    from gan.data import read_cache
    from gan.trainer import build_trainer

    tmp, cache, _ = work
    data = read_cache(cache)
    assert data.info.num_classes == 3 and data.labels.tolist() == [0, 1, 2, 0, 1, 2]
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))
    cond = tf.constant(data.vectors[[0, 3, 6, 9]].astype(np.float32))  # captions of images 0, 1, 2, 3
    wrong = tf.constant(data.vectors[[3, 6, 9, 0]].astype(np.float32))
    after = {}
    for w in (0.0, 1.0):
        cfg = resolve(dict(embeddings=str(cache), ngf=8, ndf=8, batch_size=4, z_dim=8, c_dim=8, mixed_precision="off",
                           aux_class=w), False)
        keras.utils.set_random_seed(0)
        trainer = build_trainer(replace(cfg, cache=data.info))
        batch = (images, cond, wrong) + ((tf.constant(data.labels[[0, 1, 2, 3]].astype(np.int32)),) if w else ())
        losses = trainer.train_step(batch)
        after[w] = [v.numpy().copy() for v in trainer.generator.trainable_variables]
        if w:
            head = trainer.aux_head
            assert set(losses) == {"d", "g", "kl", "cls"} and trainer.metrics[-1].name == "cls"
            # before its first update the head is a random linear map of pooled features: CE near ln 3
            assert 0.5 < float(losses["cls"]) < 2.5
            assert head.get_layer("aux_logits").kernel.shape == (8 * 8, 3)
            assert all(any(v is h for v in trainer.d_variables) for h in head.trainable_variables)
            assert "aux_head" in __import__("gan.trainer").trainer.checkpoint_objects(trainer, tf.Variable(0))
    # G's update differs with the class term (same seed, same batch): the head's gradient reaches G
    moved = [not np.array_equal(a, b) for a, b in zip(after[0.0], after[1.0])]
    assert sum(moved) >= len(moved) // 2


def checkpoint_children(path) -> set[str]:
    """Names of the objects a checkpoint holds at its root (generator, d_encoder, aux_head, ...)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(str(path)).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return {c.local_name for c in graph.nodes[0].children}


def _run(work, name, steps, **extra):
    tmp, cache, _ = work
    return cli(["--embeddings", cache, "--run-dir", tmp / name, "--steps", steps, "--log-every", 2, "--ckpt-every", 3,
                "--sample-every", 100, "--set", "aux_class=1", *TINY, *sum((["--set", f"{k}={v}"]
                                                                          for k, v in extra.items()), [])])


@pytest.fixture(scope="module")
def aux_run(work):
    """A 6-step run with the head: (run folder, console output)."""
    tmp, _, _ = work
    out = _run(work, "full", 6)
    run = tmp / "full" / "00001-tiny-flowers-testhash"
    return run, out


def test_run_logs_the_class_loss_and_checkpoints_the_head(aux_run):
    run, out = aux_run
    lines = [l for l in out.splitlines() if l.startswith("step ")]
    assert len(lines) == 3 and all(" | cls " in l for l in lines)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["aux_class"] == 1.0 and cfg["cache"]["num_classes"] == 3 and cfg["cache"]["labels"] == "class"
    assert {"aux_head", "d_encoder", "d_head", "generator"} <= checkpoint_children(run / "checkpoints" / "ckpt-6")


def test_resume_with_the_head_is_bit_identical(work, aux_run):
    tmp, _, _ = work
    _run(work, "resumed", 3)
    run = tmp / "resumed" / "00001-tiny-flowers-testhash"
    cli(["--resume", run, "--steps", 6])
    a = ckpt_tensors(aux_run[0] / "checkpoints" / "ckpt-6")
    b = ckpt_tensors(run / "checkpoints" / "ckpt-6")
    assert a.keys() == b.keys() and "aux_head" in checkpoint_children(run / "checkpoints" / "ckpt-6")
    assert [n for n in a if not np.array_equal(a[n], b[n])] == []


def test_head_accuracy_restores_the_trained_head(work, aux_run):
    from gan.aux_head import classify
    from gan.data import read_cache
    from gan.image_cache import load_or_build_image_cache
    from tools.evaluation.aux_accuracy import format_lines, head_accuracy, load_head, real_images

    tmp, cache, _ = work
    run, _ = aux_run
    d_enc, head, names, cfg = load_head(run)
    assert names == ["c0", "c1", "c2"]
    # the restored head is the trained one: its kernel is the checkpoint's only trained [8·ndf, K] tensor
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / "ckpt-6"))
    kernel = [n for n, s in tf.train.list_variables(str(run / "checkpoints" / "ckpt-6"))
              if "_trainable_variables" in n and s == [64, 3]]
    assert len(kernel) == 1
    np.testing.assert_array_equal(head.get_layer("aux_logits").kernel.numpy(), reader.get_tensor(kernel[0]))
    assert not np.allclose(reader.get_tensor(kernel[0]), 0)
    data = read_cache(cache)
    images, _, _ = load_or_build_image_cache(cache, data.image_paths, 64, lambda *_: None, progress=False,
                                             dataset_name="tiny-flowers")
    real, real_ids, what = real_images(cfg, names)
    assert real.shape == (6, 64, 64, 3) and real_ids.tolist() == [0, 1, 2, 0, 1, 2] and what.startswith("train images")
    pred = classify(d_enc, head, images)
    captions = {"a": {"id": "a", "caption": "x", "class": "c1"}, "b": {"id": "b", "caption": "y"},
                "c": {"id": "c", "caption": "z", "label": "c2"}}
    gen = {"a": images[[0, 1]], "b": images[[2]], "c": images[[5]]}  # b names no class: left out
    m = head_accuracy(run, None, gen, captions)
    assert m["classes"] == 3 and m["real"]["count"] == 6 and m["generated"]["count"] == 3
    assert m["real"]["accuracy"] == pytest.approx(np.mean(pred == np.array([0, 1, 2, 0, 1, 2])))
    assert m["generated"]["accuracy"] == pytest.approx(np.mean(pred[[0, 1, 5]] == np.array([1, 1, 2])))
    assert "3 classes: class" in format_lines(m)[0]
    plain = tmp / "plain-run"  # a run without the head: nothing to report (config.json is all that is read)
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({**json.loads((run / "config.json").read_text()), "aux_class": 0.0}))
    assert head_accuracy(plain, None, gen, captions) is None


def test_refusals_are_one_line(work):
    tmp, cache, plain = work
    with pytest.raises(UserError, match=r"--set aux_class=1.0: .*tiny-flowers-testhash.h5 has no class labels; "
                                        r"rebuild it with precompute_embeddings.py --labels"):
        cli(["--embeddings", plain, "--run-dir", tmp / "refused", "--steps", 1, "--set", "aux_class=1", *TINY])
    with pytest.raises(UserError, match=r"--set aux_class=1.0: only the cached-vector architectures .* --arch ta80"):
        cli(["--embeddings", cache, "--arch", "ta80", "--steps", 1, "--set", "aux_class=1", "--dry-run"])
    with pytest.raises(UserError, match=r"--set aux_class=-1.0: must be a number >= 0"):
        cli(["--embeddings", cache, "--steps", 1, "--set", "aux_class=-1", "--dry-run"])


def test_batches_carry_the_images_labels(work):
    from gan.data import BatchSampler, make_dataset, read_cache

    _, cache, _ = work
    data = read_cache(cache)
    sampler = BatchSampler(data.caption_image, np.ones(6, bool), 4, seed=0)
    images = np.arange(6, dtype=np.uint8)[:, None, None, None] * np.ones((1, 64, 64, 3), np.uint8)
    for step, batch in zip(range(3), make_dataset(images, data.vectors, sampler, 0, 3, labels=data.labels)):
        rows = sampler.batch(step)[0]
        assert batch[3].numpy().tolist() == data.labels[rows].tolist()
        assert batch[0].numpy()[:, 0, 0, 0].tolist() == rows.tolist()  # the labels belong to the batch's images


def test_evaluate_run_reports_the_head(work, aux_run, capsys):
    from tools.evaluate import main

    tmp, _, _ = work
    run, _ = aux_run
    caps = tmp / "eval_captions.jsonl"  # the tiny set has no held-out captions: two of its own, with their class
    caps.write_text(json.dumps({"id": 1, "caption": "a red flower number 0 variant 0", "class": "c0"}) + "\n"
                    + json.dumps({"id": 2, "caption": "a yellow flower number 1 variant 0"}) + "\n")
    assert main(["--run", str(run), "--captions", str(caps), "--quick", "--n-per-caption", "2"]) == 0
    m = json.loads((run / "metrics.json").read_text())["aux_classifier"]
    assert (m["classes"], m["labels"], m["real"]["count"], m["generated"]["count"]) == (3, "class", 6, 2)
    assert m["generated"]["accuracy"] in (0.0, 0.5, 1.0)  # 2 images of caption 1 (class c0); caption 2 names none
    assert "aux classifier head (3 classes: class; chance 0.333)" in capsys.readouterr().out
