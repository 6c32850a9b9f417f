"""FLOPs of a Keras model's forward pass, counted from its layer shapes, and of one GAN training step.

    from gan.flops import model_flops, train_step_flops
    model_flops(generator).matmul              # forward FLOPs per sample (conv, dense, GRU)
    train_step_flops(trainer, batch=64)        # StepFlops: every pass GanTrainer.train_step runs, with its terms
    cpu_peak(lscpu_text).gflops                # fp32 peak of this CPU: cores × clock × FLOP/cycle

Per layer and per sample (one multiply-add = 2 FLOPs; the batch dimension is left out):
    Conv2D     2·Hout·Wout·kh·kw·(Cin/groups)·Cout        ("same" padding counted as full windows)
    Dense      2·rows·in·out, rows = product of the input's middle dims (1 for a [B, in] input)
    GRU        T·(2·in·3u + 2·u·3u): three gates' input and recurrent matmuls, every one of the T steps
               (on CPU Keras runs all T steps under a mask; masked steps only keep the state)
    Embedding  0 (a gather)
    a nested functional Model: its own layers, counted the same way
    any other layer: the Dense / Conv2D layers it holds as sublayers, applied to one [B, in] vector each
               (true of Affine and ConditioningAugmentation); its own arithmetic is elementwise
Elementwise work (biases, activations, adds, batch norm, affine modulation, pooling) is counted apart, as
ELEMENTWISE_COST FLOPs per output element: it is memory-bound, and a GFLOP/s figure over it would mislead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# FLOPs per output element of layers whose work is elementwise (the rest: 0 — reshapes, concats, upsampling)
ELEMENTWISE_COST = {
    "ReLU": 1, "LeakyReLU": 1, "Activation": 1, "Add": 1, "Multiply": 1, "Identity": 0,
    "BatchNormalization": 2,  # x·scale + shift once the batch moments are known (moments: 2 more per input)
    "Affine": 2,  # x·(1 + γ) + β
    "GlobalAveragePooling2D": 0,  # counted per input element below
    "Dot": 0,  # counted per input element below
}


@dataclass
class LayerFlops:
    name: str  # path in the model, e.g. "generator/fuse0a/fc1"
    kind: str  # layer class name
    matmul: int  # conv / dense / recurrent FLOPs per sample
    elementwise: int  # elementwise FLOPs per sample


@dataclass
class ModelFlops:
    name: str
    layers: list[LayerFlops] = field(default_factory=list)

    @property
    def matmul(self) -> int:
        return sum(r.matmul for r in self.layers)

    @property
    def elementwise(self) -> int:
        return sum(r.elementwise for r in self.layers)


def _size(shape) -> int:
    """Elements per sample of a shape with a leading batch dim (None or int)."""
    return math.prod(int(d) for d in shape[1:])


def _dense(name: str, kernel_shape, rows: int, bias: bool) -> LayerFlops:
    n_in, n_out = int(kernel_shape[0]), int(kernel_shape[1])
    return LayerFlops(name, "Dense", 2 * rows * n_in * n_out, rows * n_out if bias else 0)


def _conv2d(layer, name: str, out_shape) -> LayerFlops:
    kh, kw, cin_per_group, cout = (int(d) for d in layer.kernel.shape)
    hout, wout = int(out_shape[1]), int(out_shape[2])
    if layer.data_format == "channels_first":
        hout, wout = int(out_shape[2]), int(out_shape[3])
    positions = hout * wout
    return LayerFlops(name, "Conv2D", 2 * positions * kh * kw * cin_per_group * cout,
                      positions * cout if layer.use_bias else 0)


def _gru(layer, name: str, in_shape) -> LayerFlops:
    cell = layer.cell
    steps, n_in, units = int(in_shape[1]), int(in_shape[2]), int(cell.units)
    matmul = steps * (2 * n_in * 3 * units + 2 * units * 3 * units)
    return LayerFlops(name, "GRU", matmul, steps * 10 * units)  # gates: 2 sigmoids, tanh, 4 products/sums


def _sublayer_flops(layer, name: str) -> list[LayerFlops]:
    """Dense / Conv2D sublayers of a custom layer, each taken as applied to one [B, in] vector."""
    rows = []
    for sub in layer._flatten_layers(include_self=False, recursive=True):
        kind = type(sub).__name__
        if kind == "Dense":
            rows.append(_dense(f"{name}/{sub.name}", sub.kernel.shape, 1, sub.use_bias))
        elif kind in ("Conv2D", "GRU"):
            raise ValueError(f"{name}: a {kind} inside a custom layer has no known input shape; count it by hand")
    return rows


def _node_flops(node, prefix: str) -> list[LayerFlops]:
    layer = node.operation
    name = f"{prefix}/{layer.name}"
    kind = type(layer).__name__
    ins = [t.shape for t in node.input_tensors]
    outs = [t.shape for t in node.outputs]
    if hasattr(layer, "_nodes_by_depth"):  # a functional model used as a layer
        return model_flops(layer, prefix=name).layers
    if kind == "Dense":
        return [_dense(name, layer.kernel.shape, _size(ins[0][:-1]) if len(ins[0]) > 2 else 1, layer.use_bias)]
    if kind == "Conv2D":
        return [_conv2d(layer, name, outs[0])]
    if kind == "GRU":
        return [_gru(layer, name, ins[0])]
    if kind == "Embedding" or kind == "InputLayer":
        return [LayerFlops(name, kind, 0, 0)]
    if not hasattr(layer, "_flatten_layers"):  # a bare op in the graph (e.g. Embedding's mask): 1 per element
        return [LayerFlops(name, kind, 0, sum(_size(s) for s in outs))]
    rows = _sublayer_flops(layer, name)
    if kind in ("GlobalAveragePooling2D", "Dot"):
        elementwise = sum(_size(s) for s in ins)  # one add (pooling) or multiply-add (dot) per input element
    else:
        elementwise = ELEMENTWISE_COST.get(kind, 0) * sum(_size(s) for s in outs)
    return rows + [LayerFlops(name, kind, 0, elementwise)]


def model_flops(model, prefix: str = "") -> ModelFlops:
    """Forward-pass FLOPs per sample of a functional Keras model, one row per layer call (a layer called twice
    counts twice)."""
    if not hasattr(model, "_nodes_by_depth"):
        raise ValueError(f"{model.name}: only functional Keras models can be counted (built from keras.Input)")
    name = f"{prefix}/{model.name}" if prefix else model.name
    out = ModelFlops(name)
    for depth in sorted(model._nodes_by_depth, reverse=True):  # inputs first
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            out.layers.extend(_node_flops(node, name))
    return out


@dataclass
class StepFlops:
    """FLOPs of one GanTrainer.train_step at batch B, as the sum of named terms (see train_step_flops)."""

    batch: int
    g: int  # forward FLOPs per sample: generator
    d_encoder: int  # D encoder
    d_head: int  # D head
    text: int  # the text encoder of an arch that reads raw text (ta80's GRU; 0 for the cached-vector archs)
    penalty: bool  # whether the MA-GP term is included

    @property
    def forward(self) -> int:
        """G once; text encoder on the real and the wrong caption; D encoder on real
        and fake; head on real, wrong and fake (the real features serve the real and the wrong pair)."""
        return self.batch * (self.g + 2 * self.text + 2 * self.d_encoder + 3 * self.d_head)

    @property
    def backward(self) -> int:
        """2 × forward: gradients w.r.t. activations and w.r.t. weights, each about one forward pass."""
        return 2 * self.forward

    @property
    def g_tape_extra(self) -> int:
        """The G update's own backward through D on the fakes (activation gradients only): the D and G tapes are
        separate, so D's backward on the fakes is done twice with different upstream gradients."""
        return self.batch * (self.d_encoder + self.d_head)

    @property
    def magp(self) -> int:
        """MA-GP on the real pairs: ∂D/∂(image, text) = one activation-gradient pass through D (1×); its gradient
        w.r.t. D's weights differentiates each of those linear backward ops w.r.t. its two inputs (2×)."""
        return 3 * self.batch * (self.d_encoder + self.d_head) if self.penalty else 0

    @property
    def total(self) -> int:
        return self.forward + self.backward + self.g_tape_extra + self.magp


def train_step_flops(trainer, batch: int, penalty: bool = True) -> StepFlops:
    """StepFlops of `trainer.train_step(data, penalty)` at batch `batch`; penalty counts only for loss magp."""
    text = model_flops(trainer.text_encoder).matmul if trainer.text_encoder is not None else 0
    return StepFlops(batch=batch, g=model_flops(trainer.generator).matmul,
                     d_encoder=model_flops(trainer.d_encoder).matmul, d_head=model_flops(trainer.d_head).matmul,
                     text=text, penalty=bool(penalty and trainer.loss_name == "magp"))


# ---------------------------------------------------------------------------------------------- peak
@dataclass
class CpuPeak:
    """fp32 peak = cores × clock × FLOP/cycle; FLOP/cycle = fp32 lanes × 2 (FMA) × FMA units per core."""

    model: str
    cores: int  # physical cores (sockets × cores per socket); SMT threads share the FMA units
    ghz: float  # the clock lscpu / /proc/cpuinfo reports (max MHz if given, else the current MHz)
    lanes: int  # fp32 lanes of the widest vector unit: 16 (AVX-512), 8 (AVX2), 4 (SSE)
    fma_units: int  # full-width FMA issues per cycle per core (the assumption; see fma_units_guess)
    has_fma: bool
    why: str  # how fma_units was chosen
    has_bf16: bool = False  # avx512_bf16 or amx_bf16: bf16 dot products in hardware (2x the fp32 FLOP/cycle)

    @property
    def flop_per_cycle(self) -> int:
        return self.lanes * (2 if self.has_fma else 1) * self.fma_units

    @property
    def gflops(self) -> float:
        return self.cores * self.ghz * self.flop_per_cycle


def _field(text: str, name: str) -> str:
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return ""


def fma_units_guess(vendor: str, family: int, lanes: int) -> tuple[int, str]:
    """(full-width FMA units per core, reason). AMD Zen 4 (family 25) runs a 512-bit FMA as two halves on its
    two 256-bit FMA pipes: one 512-bit FMA per cycle. Zen 5 (family 26) has four 512-bit-capable pipes, two
    of them FMA. Intel Xeons with AVX-512: two units on Gold 6xxx / Platinum (port 0+1 fused and port 5), one on
    some Silver / Gold 5xxx parts — we assume two. AVX2 cores (Zen 2/3, Haswell+): two 256-bit units."""
    if lanes == 16 and "AMD" in vendor:
        if family >= 26:
            return 2, "AMD Zen 5: two 512-bit FMA pipes"
        return 1, "AMD Zen 4: 512-bit FMA double-pumped on two 256-bit pipes = one 512-bit FMA/cycle"
    if lanes == 16:
        return 2, "Intel AVX-512: two 512-bit FMA units assumed (one on some Silver/Gold 5xxx parts)"
    return 2, "two full-width FMA units (AVX2-class core)"


def cpu_peak(lscpu_text: str, cpuinfo_text: str = "", fma_units: int | None = None) -> CpuPeak:
    """CpuPeak from `lscpu` output (and /proc/cpuinfo for the clock when lscpu gives none)."""
    flags = set(_field(lscpu_text, "Flags").split())
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "avx" in flags else 4
    sockets = int(_field(lscpu_text, "Socket(s)") or 1)
    cores = sockets * int(_field(lscpu_text, "Core(s) per socket") or _field(lscpu_text, "CPU(s)") or 1)
    mhz = _field(lscpu_text, "CPU max MHz") or _field(lscpu_text, "CPU MHz") or _field(cpuinfo_text, "cpu MHz")
    if not mhz:
        raise ValueError("no clock in lscpu (CPU max MHz / CPU MHz) or /proc/cpuinfo (cpu MHz)")
    vendor = _field(lscpu_text, "Vendor ID")
    family = int(_field(lscpu_text, "CPU family") or 0)
    guess, why = fma_units_guess(vendor, family, lanes)
    if fma_units is not None:
        guess, why = fma_units, "given with --fma-units"
    return CpuPeak(model=_field(lscpu_text, "Model name"), cores=cores, ghz=float(mhz) / 1000, lanes=lanes,
                   fma_units=guess, has_fma="fma" in flags, why=why,
                   has_bf16=bool(flags & {"avx512_bf16", "amx_bf16"}))
