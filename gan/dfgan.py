"""`--arch dfgan`: text fused into every generator block, and a discriminator that reads the text at 8×8 and 4×4.

After DF-GAN (Tao et al., CVPR 2022) with the mission's conditioning augmentation in front:

    G: text [B, D] (×√D: unit scale per dimension), z [B, Z], ε [B, C] -> CA -> cond = [c, z] [B, C + Z]
       dense 4×4×8ngf -> 4 × FusedUpBlock (8, 16, 32, 64 px) -> LReLU -> conv 3×3 -> tanh
       image_size 128 / 256: one more FusedUpBlock per doubling, ngf/2 channels each (g_channels, G_SCHEDULE)
       FusedUpBlock: affine(cond) -> LReLU -> upsample ×2 -> conv 3×3 -> affine(cond) -> LReLU, + 1×1 shortcut
       affine(cond): x·(1 + γ(cond)) + β(cond), γ and β from a small MLP whose last layer starts at zero,
       so every block starts as the identity modulation (DF-GAN's γ = 1, β = 0 initialisation).
       No batch norm: per-sample G (the EMA copy needs no running statistics).
    D encoder: image -> 4 strided 4×4 convs, LReLU, no norm (per-sample, for MA-GP); at 128 / 256 px one more
               strided conv per doubling in front (ndf/2 channels at 64 px, ndf/4 at 128)
                                                   => [f8 [B, 8, 8, 4ndf], f4 [B, 4, 4, 8ndf]]
    D head: [f8, f4, text] ->
       one-way output (DF-GAN): text dense 128 tiled 4×4, concatenated with f4 -> conv 3×3 -> LReLU -> conv 4×4
       + projection terms (Miyato & Koyama 2018) ⟨mean(f8), W8·t⟩ + ⟨mean(f4), W4·t⟩, where the centre disc
         and the petal layout are still resolved                                 => logit [B] float32
       proj4="spatial": the 4×4 term reads every position with its own weights, mean_ij ⟨f4_ij, W4_ij·t⟩
         (the pooled term is the case W4_ij = W4). A pooled term's gradient asks every position of f4 for the
         same change; the spatial one can ask for the centre disc's colour where the disc is, petals around it.
         The flower is centred ± 4 px (± 12 px after DiffAugment's shift, under one f4 cell). The preset's
         default: at 5 000 steps centre colour 0.87 -> 0.96 and diversity 0.45x -> 0.53x over pooled; D reads
         the count word better, G's count did not follow (bench/results/count-2026-12-03.md; measured before the
         CA fix of 2026-12-05).
       The 8×8 term is always pooled: per position it measured worse (count 0.42 and FID 151 against 0.48-0.49
         and 112-120 at 5 000 steps, bench/results/ca-noise-2026-12-04.md; removed, bench/results/REMOVED_OPTIONS.md).

    Batch contrastive term (contrastive=λ, the dfgan preset's λ = 1; after XMC-GAN, Zhang et al. 2021, with D's own projection
    as the image-text score): S[i, j] = the projection terms for image i and caption j of the batch (pair_scores);
    D adds λ·CE(softmax_j S_real[i, :], i) on real images and G adds λ·CE(softmax_j S_fake[i, :], i) on its images.
    Its gradient for G is W·t_i − Σ_j p_ij W·t_j: the caption's own direction minus what the batch's captions share,
    so G is pushed on what tells its caption from the others (the petal count, once colours match) rather than on
    what every caption asks for. At 5 000 steps: petal count 0.44 -> 0.77, FID 100 -> 40, diversity kept by sampling
    with CA's full noise (ca_noise 1) (bench/results/contrastive-2026-12-05.md).

G has the same inputs and outputs as the stackgan generator, so GanTrainer, sampling and load_generator treat
both alike. Its recipe is GanConfig's defaults (gan/config.py); ARCH below declares it to gan/archs.py.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from gan.archs import Architecture
from gan.conditioning import ConditioningAugmentation
from gan.config import PROJECTIONS, UPSAMPLING

IMAGE_SIZE = 64  # the default image side; IMAGE_SIZES are the ones this module builds (--image-size)
IMAGE_SIZES = (64, 128, 256)
# G's channels beyond 64 px (one fused up-block per doubling), per schedule; the default is G_SCHEDULE.
#   hold    every block beyond 64 px keeps the 64 px block's ngf/2 channels (capped by resolution, as StyleGAN)
#   halve   channels halve per doubling beyond 64 px (ngf/4 at 128, ngf/8 at 256; at least 4)
#   ladder  DF-GAN's ladder: the 64 px schedule moved up, 8·ngf at 4 px and 8 px, ngf/2 at the output
# FLOPs and ms/step of each: bench/image_size.py; the choice: bench/results/image-size-2026-12-06.md.
G_SCHEDULES = ("hold", "halve", "ladder")
G_SCHEDULE = "hold"


@keras.saving.register_keras_serializable(package="gan")
class Affine(layers.Layer):
    """[x [B, H, W, ch], cond [B, K]] -> x·(1 + γ) + β with γ, β [B, ch] from Dense(hidden) -> ReLU -> Dense(2ch).

    The last Dense is zero-initialised: at step 0 the block is unmodulated (γ = 1, β = 0 in DF-GAN's terms)."""

    def __init__(self, channels: int, hidden: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.hidden = channels, hidden
        self.fc1 = layers.Dense(hidden, activation="relu", name="fc1")  # [B, K] -> [B, hidden]
        self.fc2 = layers.Dense(2 * channels, kernel_initializer="zeros", name="fc2")  # -> [B, 2ch]

    def build(self, input_shape):
        x_shape, cond_shape = input_shape
        self.fc1.build(cond_shape)
        self.fc2.build((cond_shape[0], self.hidden))

    def call(self, inputs):
        x, cond = inputs
        gb = ops.cast(self.fc2(self.fc1(cond)), x.dtype)  # [B, 2ch]
        gamma, beta = gb[:, None, None, : self.channels], gb[:, None, None, self.channels:]  # [B, 1, 1, ch] ×2
        return x * (1.0 + gamma) + beta

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "hidden": self.hidden}


def _conv(ch: int, k: int, name: str, strides: int = 1, use_bias: bool = True):
    return layers.Conv2D(ch, k, strides=strides, padding="same", use_bias=use_bias,
                         kernel_initializer="he_normal", name=name)


def text_scale(text_dim: int) -> float:
    """Cached sentence vectors are L2-normalised (per-dimension std ~1/√D): ×√D brings them to unit scale per
    dimension. Without it CA's μ starts ~20× below its noise σ = 1, KL pins μ there, and G ignores the text for
    hundreds of steps (seen at 500 steps: rows of a sample grid identical). D gets the same scaled vector from
    GanTrainer, so MA-GP penalises ∂D/∂t at that scale (not √D times larger w.r.t. the unit vector)."""
    return float(text_dim) ** 0.5


def _unit_scale(text, name: str):
    return layers.Rescaling(text_scale(text.shape[-1]), name=name)(text)


def _fused_up_block(h, cond, ch: int, i: int, upsample: str = "nearest"):
    """[B, H, W, Cin] -> [B, 2H, 2W, ch].

    Per-channel affine, LReLU and a 1×1 conv all commute with nearest-neighbour upsampling, so they run at the
    input resolution (a quarter of the elements) and only the 3×3 conv's input is upsampled: the same function
    as upsample-first, at less memory traffic (the step's cost on CPU). Bilinear upsampling (a fixed linear map
    per channel whose weights sum to 1) still commutes with the 1×1 conv and the affine, not with LReLU: the
    order below is then a choice (resize after the nonlinearity), not the upsample-first function."""
    up = lambda x, tag: layers.UpSampling2D(2, interpolation=upsample, name=f"up{i}{tag}")(x)  # noqa: E731
    shortcut = up(_conv(ch, 1, f"skip{i}", use_bias=False)(h), "s")
    r = Affine(h.shape[-1], name=f"fuse{i}a")([h, cond])
    r = up(layers.LeakyReLU(0.2)(r), "r")
    r = _conv(ch, 3, f"conv{i}")(r)
    r = Affine(ch, name=f"fuse{i}b")([r, cond])
    r = layers.LeakyReLU(0.2)(r)
    return layers.Add(name=f"res{i}")([shortcut, r])


def doublings(image_size: int) -> int:
    """Blocks beyond the 64 px ones: 0 at 64, 1 at 128, 2 at 256; other sizes are a ValueError."""
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size={image_size!r}: expected one of {', '.join(map(str, IMAGE_SIZES))}")
    return IMAGE_SIZES.index(image_size)


def g_channels(ngf: int, image_size: int = IMAGE_SIZE, schedule: str = G_SCHEDULE) -> tuple[int, ...]:
    """Output channels of G's fused up-blocks, 8 px first: (4ngf, 2ngf, ngf, ngf/2) at 64 px, + one per doubling."""
    extra = doublings(image_size)
    base = (4 * ngf, 2 * ngf, ngf, max(ngf // 2, 1))
    if schedule == "hold":
        return base + (base[-1],) * extra
    if schedule == "halve":
        return base + tuple(max(base[-1] >> (k + 1), min(4, base[-1])) for k in range(extra))
    if schedule == "ladder":
        return tuple(max(base[-1] << k, 1) if k < 4 else 8 * ngf for k in range(3 + extra, -1, -1))
    raise ValueError(f"schedule={schedule!r}: expected one of {', '.join(G_SCHEDULES)}")


def d_front_channels(ndf: int, image_size: int = IMAGE_SIZE) -> tuple[int, ...]:
    """Channels of D's strided down-blocks in front of the 64 px ones, largest resolution first: () at 64,
    (ndf/2,) at 128 (its output is 64 px), (ndf/4, ndf/2) at 256; at least 4."""
    extra = doublings(image_size)
    return tuple(max(ndf >> k, min(4, ndf)) for k in range(extra, 0, -1))


def build_generator(text_dim: int, z_dim: int = 100, c_dim: int = 128, ngf: int = 32,
                    upsample: str = "nearest", image_size: int = IMAGE_SIZE,
                    schedule: str = G_SCHEDULE, extra_inputs=(), after_block=None) -> keras.Model:
    """Inputs [text [B, D], z [B, Z], eps [B, C], *extra_inputs] -> [image [B, S, S, 3] f32, mu [B, C], logvar [B, C]],
    S = image_size.

    upsample: nearest (DF-GAN's) or bilinear, the ×2 resize of every block. schedule: G_SCHEDULES (the channels
    of the blocks beyond 64 px; the 64 px generator is the same for all).
    after_block(i, h) -> h: what an architecture built on this one inserts after up-block i (0: 8 px, 1: 16 px, ...),
    reading its `extra_inputs` (keras.Input tensors); gan/words.py adds word attention this way."""
    text = keras.Input((text_dim,), name="text")
    z = keras.Input((z_dim,), name="z")
    eps = keras.Input((c_dim,), name="eps")
    c, mu, logvar = ConditioningAugmentation(c_dim, name="ca")([_unit_scale(text, "g_text_scale"), eps])  # [B, C] ×3
    cond = layers.Concatenate(name="c_z")([c, z])  # [B, C + Z]: what every block is modulated by
    h = layers.Dense(4 * 4 * 8 * ngf, name="fc")(cond)
    h = layers.Reshape((4, 4, 8 * ngf))(h)  # [B, 4, 4, 8ngf]
    for i, ch in enumerate(g_channels(ngf, image_size, schedule)):  # 8, 16, 32, 64 (, 128, 256) px
        h = _fused_up_block(h, cond, ch, i, upsample)
        if after_block is not None:
            h = after_block(i, h)
    h = layers.LeakyReLU(0.2)(h)
    h = _conv(3, 3, "to_rgb")(h)
    image = layers.Activation("tanh", dtype="float32", name="image")(h)  # [B, S, S, 3]
    return keras.Model([text, z, eps, *extra_inputs], [image, mu, logvar], name="generator")


def _dcgan_init():
    """DCGAN init N(0, 0.02): small initial gradients w.r.t. the image keep the p = 6 MA-GP term near 0 at the start.
    A new initializer per layer, so each draws its own numbers from the seed keras.utils.set_random_seed set."""
    return keras.initializers.RandomNormal(0.0, 0.02)


def _d_conv(ch: int, k: int, name: str, strides: int = 1, padding: str = "same", dtype=None):
    return layers.Conv2D(ch, k, strides=strides, padding=padding, kernel_initializer=_dcgan_init(), name=name,
                         dtype=dtype)


def build_discriminator(text_dim: int, ndf: int = 32, text_proj: int = 128, proj4: str = "pooled",
                        image_size: int = IMAGE_SIZE, extra_inputs=(), extra_terms=None):
    """Returns (encoder, head): encoder image [B, S, S, 3] -> [f8 [B, 8, 8, 4ndf], f4 [B, 4, 4, 8ndf]];
    head [f8, f4, text [B, D] × text_scale(D), *extra_inputs] -> logit [B] float32. proj4: one of PROJECTIONS.
    Beyond 64 px one strided 4×4 down-block per doubling comes first (d_front_channels), so the 64 px blocks
    and the head, which reads the text at 8×8 and 4×4, are the 64 px discriminator's.
    extra_terms(f8, f4) -> list of [B] float32 terms an architecture built on this one adds to the logit, reading
    its `extra_inputs` (gan/words.py: the word-region term)."""
    if proj4 not in PROJECTIONS:
        raise ValueError(f"proj4={proj4!r}: expected one of {', '.join(PROJECTIONS)}")
    image = keras.Input((image_size, image_size, 3), name="image")
    h, feats = image, []
    for j, ch in enumerate(d_front_channels(ndf, image_size)):  # [B, S, S, 3] -> [B, 64, 64, ndf/2]
        h = layers.LeakyReLU(0.2)(_d_conv(ch, 4, f"down{j}", strides=2)(h))
    for i, ch in enumerate((ndf, 2 * ndf, 4 * ndf, 8 * ndf)):  # 32, 16, 8, 4 px
        h = layers.LeakyReLU(0.2)(_d_conv(ch, 4, f"conv{i}", strides=2)(h))
        if i >= 2:
            feats.append(h)
    encoder = keras.Model(image, feats, name="d_encoder")

    f8 = keras.Input((8, 8, 4 * ndf), name="f8")
    f4 = keras.Input((4, 4, 8 * ndf), name="f4")
    text = keras.Input((text_dim,), name="text")  # already at unit scale: GanTrainer applies D_TEXT_SCALE
    # one-way output: the sentence tiled over the 4×4 features
    t = layers.LeakyReLU(0.2)(layers.Dense(text_proj, name="text_proj")(text))  # [B, D] -> [B, 128]
    t = layers.UpSampling2D(4, name="tile")(layers.Reshape((1, 1, text_proj))(t))  # [B, 4, 4, 128]
    h = layers.Concatenate(name="joint")([f4, t])  # [B, 4, 4, 8ndf + 128]
    h = layers.LeakyReLU(0.2)(_d_conv(2 * ndf, 3, "joint_conv")(h))
    h = _d_conv(1, 4, "logit", padding="valid", dtype="float32")(h)  # [B, 1, 1, 1]
    logit = layers.Reshape((), dtype="float32", name="flat")(h)  # [B]
    # projection terms: <pooled features, W·t> at 8×8 and 4×4 (each optionally per position)
    terms = [logit]
    for name, f, ch, how in (("proj8", f8, 4 * ndf, "pooled"), ("proj4", f4, 8 * ndf, proj4)):
        if how == "spatial":
            positions = f.shape[1] * f.shape[2]
            phi = layers.Rescaling(1.0 / positions, name=f"{name}_mean")(layers.Flatten(name=f"{name}_flat_f")(f))
            width = positions * ch  # [B, HWch]: W_ij·t for every position ij, against f flattened the same way
        else:
            phi, width = layers.GlobalAveragePooling2D(name=f"{name}_pool")(f), ch  # [B, ch]
        wt = layers.Dense(width, use_bias=False, kernel_initializer=_dcgan_init(), name=f"{name}_w")(text)
        dot = layers.Dot(axes=1, dtype="float32", name=name)([phi, wt])  # [B, 1]
        terms.append(layers.Reshape((), dtype="float32", name=f"{name}_flat")(dot))  # [B]
    if extra_terms is not None:
        terms += extra_terms(f8, f4)
    out = layers.Add(dtype="float32", name="d_logit")(terms)
    head = keras.Model([f8, f4, text, *extra_inputs], out, name="d_head")
    return encoder, head


def pair_scores(head: keras.Model, f8, f4, text):
    """The head's projection terms for every (image, text) pair of a batch: S [B, B] float32 with
    S[i, j] = ⟨φ8(image i), W8·t_j⟩ + ⟨φ4(image i), W4·t_j⟩, the same layers (and weights) as `head`'s own terms, so
    S's diagonal is what the head adds to its one-way output for matched pairs. The terms are bilinear, so all B²
    pairs cost one [B, K] × [K, B] product per term; the one-way output (a conv over the tiled text) is not, and is
    left out. Used by the batch contrastive term (GanConfig.contrastive)."""
    total, names = 0.0, {layer.name for layer in head.layers}
    for name, f in (("proj8", f8), ("proj4", f4)):
        if f"{name}_mean" in names:  # spatial: W_ij·t per position, against f flattened the same way
            phi = head.get_layer(f"{name}_mean")(head.get_layer(f"{name}_flat_f")(f))
        else:
            phi = head.get_layer(f"{name}_pool")(f)
        wt = head.get_layer(f"{name}_w")(text)  # [B, K]
        total = total + ops.matmul(ops.cast(phi, "float32"), ops.transpose(ops.cast(wt, "float32")))
    return total


class DfGan(Architecture):
    name = "dfgan"
    image_sizes = IMAGE_SIZES
    preset = {}  # GanConfig's defaults are this architecture's recipe (gan/config.py says where each was measured)
    own_options = {
        "upsample": (UPSAMPLING[0], "this option ({arch} has one way)"),
        "proj4": (PROJECTIONS[0], "this option ({arch} has one way)"),
        "contrastive": (0.0, "the projection terms it scores pairs with ({arch} has none)"),
    }

    def build(self, cfg, vocab_size: int = 0, generator_only: bool = False):
        g = build_generator(cfg.cache.dim, cfg.z_dim, cfg.c_dim, cfg.ngf, cfg.upsample, image_size=cfg.image_size)
        if generator_only:
            return g
        return (g, *build_discriminator(cfg.cache.dim, cfg.ndf, proj4=cfg.proj4, image_size=cfg.image_size), None)

    def d_text_scale(self, cfg) -> float:
        return text_scale(cfg.cache.dim)

    def pair_scores(self, head, features, text, words=()):
        return pair_scores(head, *features, text)


ARCH = DfGan()
