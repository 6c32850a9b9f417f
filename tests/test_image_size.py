"""--image-size 128 | 256: each size builds at its shapes, trains a step, resumes bit-identically, samples its grids
and generates at its size; DataLab Cup files stay 64x64; the archs that draw 64 px only refuse other sizes; the
synthetic renderer draws the same flowers at 128 and 256 px, judged by the same attribute rules."""
from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import train_gan
from test_gan_fixtures import make_cache
from tools.errors import UserError

TINY = ["--ngf", "8", "--ndf", "8", "--batch-size", "4", "--z-dim", "8", "--c-dim", "8", "--preset", "cpu",
        "--mixed-precision", "off", "--set", "num_sample_captions=2", "--set", "num_sample_z=2",
        "--set", "hard_negatives=0", "--log-every", "1", "--ckpt-every", "1", "--sample-every", "2"]


def cli(args) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        train_gan.main([str(a) for a in args])
    return buf.getvalue()


def ckpt_tensors(path) -> dict:
    reader = tf.train.load_checkpoint(str(path))
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(str(path)) if "CHECKPOINTABLE" not in n}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sizes")
    return tmp, make_cache(tmp, n_images=6, dim=8)


def test_channel_schedules_and_d_front_blocks():
    from gan.dfgan import G_SCHEDULE, d_front_channels, g_channels

    assert G_SCHEDULE == "hold"
    assert g_channels(32, 64) == (128, 64, 32, 16)  # the 64 px generator, whatever the schedule
    assert g_channels(32, 128) == (128, 64, 32, 16, 16) and g_channels(32, 256) == (128, 64, 32, 16, 16, 16)
    assert g_channels(32, 128, "halve") == (128, 64, 32, 16, 8) and g_channels(32, 256, "halve")[-1] == 4
    assert g_channels(32, 256, "ladder") == (256, 256, 128, 64, 32, 16)
    assert (d_front_channels(32, 64), d_front_channels(32, 128), d_front_channels(32, 256)) == ((), (16,), (8, 16))
    with pytest.raises(ValueError, match="image_size=96"):
        g_channels(32, 96)


@pytest.mark.parametrize("size", [128, 256])
def test_models_have_the_sizes_shapes_and_the_64px_layers_unchanged(size):
    from gan.dfgan import build_discriminator, build_generator
    from gan.flops import model_flops

    g = build_generator(8, 8, 8, ngf=8, image_size=size)
    enc, head = build_discriminator(8, ndf=8, image_size=size)
    assert g.outputs[0].shape[1:] == (size, size, 3)
    assert enc.inputs[0].shape[1:] == (size, size, 3)
    assert [tuple(f.shape[1:]) for f in enc.outputs] == [(8, 8, 32), (4, 4, 64)]  # D reads the text at 8x8, 4x4
    g64, (enc64, _) = build_generator(8, 8, 8, ngf=8), build_discriminator(8, ndf=8)
    # every layer of the 64 px models is there with the same kernel shape; the larger size only adds blocks
    shapes = lambda m: {w.path: tuple(w.shape) for w in m.weights}  # noqa: E731
    assert {k: v for k, v in shapes(g).items() if k in shapes(g64)} == shapes(g64)
    assert len(shapes(g)) > len(shapes(g64))
    for name in ("conv1", "conv2", "conv3"):
        assert enc.get_layer(name).kernel.shape == enc64.get_layer(name).kernel.shape
    assert enc.get_layer("conv0").kernel.shape == (4, 4, 4, 8)  # reads the front block's ndf/2 channels, not RGB
    extra = int(math.log2(size // 64))
    assert len([l for l in g.layers if l.name.startswith("conv")]) == 4 + extra
    assert len([l for l in enc.layers if l.name.startswith("down")]) == extra
    # FLOPs of the hold schedule: the 128 px block adds 2·128²·9·4·4 to the conv work of G
    added = model_flops(g).matmul - model_flops(g64).matmul
    assert added > 2 * 128 ** 2 * 9 * 4 * 4


@pytest.mark.parametrize("size", [128, 256])
def test_each_size_trains_resumes_bit_identically_and_generates_at_its_size(work, size, tmp_path):
    from gan.inference import load_generator
    from tools.generation import GenerationRequest, generate

    tmp, cache = work
    runs = tmp_path / "runs"
    out = cli(["--embeddings", cache, "--run-dir", runs, "--steps", 2, "--image-size", size, *TINY])
    full = runs / "00001-tiny-flowers-testhash"
    assert f"| {size} px |" in out and "step 2/2" in out
    cfg = json.loads((full / "config.json").read_text())
    assert cfg["image_size"] == size and cfg["run"]["image_cache"].endswith(f".images{size}.h5")
    assert Image.open(full / "samples" / "step_000002.png").size == (2 * size, 2 * size)
    # one step, then resume to two: the same weights, optimizer slots and RNG state to the bit
    cli(["--embeddings", cache, "--run-dir", runs, "--steps", 1, "--image-size", size, *TINY])
    part = runs / "00002-tiny-flowers-testhash"
    cli(["--resume", part, "--steps", 2])
    a, b = ckpt_tensors(full / "checkpoints" / "ckpt-2"), ckpt_tensors(part / "checkpoints" / "ckpt-2")
    assert a.keys() == b.keys() and len(a) > 50
    assert [n for n in a if not np.array_equal(a[n], b[n])] == []
    losses = [float(x) for line in out.splitlines() if line.startswith("step ") for x in line.split("|")[1:4]
              for x in [x.split()[1]]]
    assert losses and all(math.isfinite(x) for x in losses)
    # sampling and generate.py follow the run's size; DataLab Cup files stay 64x64
    gen, _ = load_generator(full)
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    images = gen(vectors, seed=0)
    assert images.shape == (3, size, size, 3) and images.dtype == np.uint8
    texts = ["a red flower number 0 variant 0", "a yellow flower number 1 variant 1"]  # cached: no encoder needed
    req = dict(run_dir=full, ids=["1", "2"], texts=texts, fmt="png", progress=False)
    generate(GenerationRequest(out_dir=tmp_path / "own", grid=True, grid_noise=2, **req))
    assert Image.open(tmp_path / "own" / "inference_0001.png").size == (size, size)
    assert Image.open(tmp_path / "own" / "grid.png").size[1] >= 2 * size
    generate(GenerationRequest(out_dir=tmp_path / "cup", out_size=64, **req))
    small = np.asarray(Image.open(tmp_path / "cup" / "inference_0002.png"))
    big = np.asarray(Image.open(tmp_path / "own" / "inference_0002.png"))
    assert small.shape == (64, 64, 3)
    k = size // 64
    expect = np.rint(big.reshape(64, k, 64, k, 3).astype(np.float64).mean(axis=(1, 3)))
    assert np.abs(small.astype(int) - expect).max() <= 1  # the area mean of the run's own image


def test_datalab_output_of_a_128px_run_is_64px_and_says_so(work, tmp_path, capsys):
    import generate as generate_cli
    from tools.synthetic.datalab import write_datalab

    tmp, cache = work
    runs = tmp_path / "runs"
    cli(["--embeddings", cache, "--run-dir", runs, "--steps", 1, "--image-size", 128, *TINY])
    run = runs / "00001-tiny-flowers-testhash"
    root = tmp_path / "cup"
    texts = ["a red flower number 0 variant 0", "a yellow flower number 1 variant 1"]  # cached: no encoder needed
    write_datalab(root, [1, 2], ["a.jpg", "b.jpg"], [[t] for t in texts], [7, 9], texts)
    capsys.readouterr()
    assert generate_cli.main(["--run", str(run), "--out", str(tmp_path / "sub"), "--datalab-test",
                              str(root / "dataset" / "testData.pkl"), "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "draws 128x128 images; writing them at 64x64" in said
    files = sorted((tmp_path / "sub").iterdir())
    assert [f.name for f in files] == ["inference_0007.jpg", "inference_0009.jpg"]
    assert all(Image.open(f).size == (64, 64) for f in files)


@pytest.mark.parametrize("args, pattern", [
    (["--arch", "stackgan", "--image-size", "128"], r"--image-size 128: --arch stackgan draws 64 px only; use "
                                                    r"--image-size 64 or --arch dfgan"),
    (["--arch", "ta80", "--image-size", "256"], r"--arch ta80 draws 64 px only"),
    (["--image-size", "96"], r"--image-size 96: choose one of 64, 128, 256"),
])
def test_sizes_an_arch_does_not_draw_are_refused_in_one_line(work, args, pattern):
    from gan.config import resolve

    overrides = train_gan.overrides_from_args(train_gan.build_parser().parse_args(
        ["--embeddings", str(work[1]), *args]))
    with pytest.raises(UserError, match=pattern) as e:
        resolve(overrides, gpu_available=False)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("preset,size,batch", [("gpu", 64, 128), ("gpu", 128, 128), ("gpu", 256, 64),
                                               ("cpu", 256, 64)])
def test_the_gpu_preset_halves_the_batch_at_256_px_and_an_explicit_batch_wins(work, preset, size, batch):
    from gan.config import resolve

    given = {"embeddings": str(work[1]), "preset": preset, "image_size": size}
    cfg = resolve(given, gpu_available=False)
    assert (cfg.preset, cfg.image_size, cfg.batch_size, cfg.ngf) == (preset, size, batch, 64 if preset == "gpu" else 32)
    assert resolve({**given, "batch_size": 96}, gpu_available=False).batch_size == 96


def test_resume_refuses_another_size(work, tmp_path):
    tmp, cache = work
    cli(["--embeddings", cache, "--run-dir", tmp_path, "--steps", 1, "--image-size", 128, *TINY])
    with pytest.raises(UserError, match=r"--image-size 64 differs from the resumed run's 128"):
        cli(["--resume", tmp_path / "00001-tiny-flowers-testhash", "--steps", 2, "--image-size", 64])
