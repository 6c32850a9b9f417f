"""gan.flops: forward FLOPs from layer shapes on tiny models checked by hand, the training-step accounting, and
the fp32 peak read from lscpu text."""
import keras
import pytest
from keras import layers

from gan.flops import StepFlops, cpu_peak, model_flops


def test_conv2d_same_and_strided():
    x = keras.Input((8, 8, 3))
    h = layers.Conv2D(4, 3, padding="same", name="c1")(x)  # 8×8 out: 2·64·9·3·4
    y = layers.Conv2D(2, 4, strides=2, padding="same", use_bias=False, name="c2")(h)  # 4×4 out: 2·16·16·4·2
    f = model_flops(keras.Model(x, y))
    by = {r.name.split("/")[-1]: r for r in f.layers}
    assert by["c1"].matmul == 13_824 and by["c1"].elementwise == 256  # bias: one add per output element
    assert by["c2"].matmul == 4_096 and by["c2"].elementwise == 0
    assert f.matmul == 17_920


def test_dense_on_vectors_and_sequences_and_a_shared_layer_counts_per_call():
    a, s = keras.Input((10,)), keras.Input((6, 10))
    shared = layers.Dense(5, name="shared")
    out = layers.Concatenate(axis=1)([shared(a)[:, None, :], shared(s)])  # [B, 7, 5]
    f = model_flops(keras.Model([a, s], out))
    dense = sorted(r.matmul for r in f.layers if r.kind == "Dense")
    assert dense == [100, 600]  # 2·10·5 once, then for each of the 6 rows
    assert f.matmul == 700


def test_gru_counts_every_step_and_embedding_is_free():
    ids = keras.Input((7,), dtype="int32")
    h = layers.Embedding(50, 4, name="emb")(ids)  # [B, 7, 4]
    out = layers.GRU(3, name="gru")(h)
    f = model_flops(keras.Model(ids, out))
    assert {r.name.split("/")[-1]: r.matmul for r in f.layers}["emb"] == 0
    assert f.matmul == 7 * (2 * 4 * 9 + 2 * 3 * 9)  # T·(input + recurrent matmuls of 3 gates) = 882


def test_custom_layer_sublayers_and_elementwise():
    from gan.dfgan import Affine

    x, cond = keras.Input((2, 2, 4)), keras.Input((6,))
    y = Affine(4, hidden=5, name="fuse")([x, cond])
    f = model_flops(keras.Model([x, cond], y))
    assert f.matmul == 2 * 6 * 5 + 2 * 5 * 8  # fc1 [6 -> 5], fc2 [5 -> 2·4]
    assert f.elementwise == 5 + 8 + 2 * 16  # the two biases, then x·(1 + γ) + β over 2·2·4 elements


def test_stackgan_discriminator_golden():
    from gan.stackgan import build_discriminator

    enc, head = build_discriminator(text_dim=8, ndf=2, norm="none")
    # 4×4 stride-2 convs: 64->32 px 3->2 ch, 32->16 px 2->4, 16->8 px 4->8, 8->4 px 8->16
    assert model_flops(enc).matmul == 2 * 16 * (1024 * 3 * 2 + 256 * 2 * 4 + 64 * 4 * 8 + 16 * 8 * 16)  # 393 216
    # text dense 8->128; 1×1 conv on 4×4×(16 + 128) -> 16; 4×4 valid conv 16 -> 1 at one position
    assert model_flops(head).matmul == 2 * 8 * 128 + 2 * 16 * 144 * 16 + 2 * 16 * 16  # 76 288


def test_step_accounting():
    s = StepFlops(batch=2, g=10, d_encoder=3, d_head=1, text=0, penalty=True)
    assert s.forward == 2 * (10 + 2 * 3 + 3 * 1)  # G once, D encoder twice, head three times: 38
    assert (s.backward, s.g_tape_extra, s.magp) == (76, 8, 24)
    assert s.total == 146
    ta = StepFlops(batch=1, g=5, d_encoder=2, d_head=1, text=4, penalty=False)
    assert ta.forward == 5 + 8 + 4 + 3 and ta.magp == 0 and ta.total == 60 + 3


LSCPU_ZEN4 = """Architecture:                            x86_64
CPU(s):                                  2
Vendor ID:                               AuthenticAMD
Model name:                              AMD EPYC
CPU family:                              25
Thread(s) per core:                      1
Core(s) per socket:                      2
Socket(s):                               1
Flags:                                   fpu sse sse2 fma avx avx2 avx512f avx512dq avx512_bf16
"""
LSCPU_XEON = """Vendor ID:                               GenuineIntel
Model name:                              Intel(R) Xeon(R) Gold 6248
CPU family:                              6
Thread(s) per core:                      2
Core(s) per socket:                      4
Socket(s):                               2
CPU max MHz:                             3500.0000
Flags:                                   fpu sse2 fma avx avx2 avx512f
"""


def test_cpu_peak_from_lscpu():
    zen4 = cpu_peak(LSCPU_ZEN4, "processor : 0\ncpu MHz\t\t: 2596.132\n")
    assert (zen4.cores, zen4.lanes, zen4.fma_units, zen4.flop_per_cycle) == (2, 16, 1, 32)
    assert zen4.gflops == pytest.approx(2 * 2.596132 * 32)  # 166.15
    xeon = cpu_peak(LSCPU_XEON)
    assert (xeon.cores, xeon.flop_per_cycle) == (8, 64)  # SMT threads share the units
    assert xeon.gflops == pytest.approx(8 * 3.5 * 64)
    avx2 = cpu_peak(LSCPU_ZEN4.replace(" avx512f avx512dq avx512_bf16", ""), "cpu MHz : 2450.0")
    assert avx2.gflops == pytest.approx(2 * 2.45 * 32)  # the AVX2 Zen 3 of bench/results/readme-history-2026-12.md: 157
    assert zen4.has_bf16 and not xeon.has_bf16 and not avx2.has_bf16  # avx512_bf16 in the flags or not
    assert cpu_peak(LSCPU_ZEN4, "cpu MHz : 2000", fma_units=2).gflops == pytest.approx(2 * 2.0 * 64)
    with pytest.raises(ValueError, match="no clock"):
        cpu_peak(LSCPU_ZEN4)


def test_conv_layer_bench_rows_are_every_conv_with_three_times_its_forward_flops():
    from bench.conv_layers import attach, conv_rows
    from gan import dfgan

    g = dfgan.build_generator(16, z_dim=4, c_dim=4, ngf=8)
    d_enc, _ = dfgan.build_discriminator(16, ndf=8)
    rows = conv_rows([g, d_enc], batch=2)
    assert [r.name for r in rows] == ["conv0", "skip0", "conv1", "skip1", "conv2", "skip2", "conv3", "skip3",
                                      "to_rgb", "conv0", "conv1", "conv2", "conv3"]
    by = {(r.model, r.name): r for r in rows}
    rgb, first = by[("generator", "to_rgb")], by[("d_encoder", "conv0")]
    assert rgb.in_shape == (64, 64, 4) and rgb.out_shape == (64, 64, 3)
    assert rgb.flops == 3 * 2 * 64 * 64 * 9 * 4 * 3 * 2  # 3 convolutions x 2 FLOP x positions x k² x Cin x Cout x B
    assert first.in_shape == (64, 64, 3) and first.out_shape == (32, 32, 8) and first.strides == 2
    assert first.flops == 3 * 2 * 32 * 32 * 16 * 3 * 8 * 2
    attach(rgb, 2, seed=0)
    assert rgb.run(1) > 0 and rgb.fn()[1].shape == (3, 3, 4, 3)  # ∂L/∂W has the kernel's shape


def test_machine_line_names_family_cores_and_vector_flags():
    from bench.machine import describe

    zen4 = describe(LSCPU_ZEN4.replace("CPU family:                              25\n",
                                       "CPU family:                              25\nModel:     17\n"), "mixed_bfloat16")
    assert zen4 == ("AMD EPYC (family 25 model 17) | 2 cores, 2 logical CPUs | fma avx2 avx512f avx512_bf16 | "
                    "auto precision: mixed_bfloat16")
    xeon = describe(LSCPU_XEON)  # no CPU(s) line, no Model line: what is there, nothing invented
    assert xeon == "Intel(R) Xeon(R) Gold 6248 | 8 cores, ? logical CPUs | fma avx2 avx512f"
