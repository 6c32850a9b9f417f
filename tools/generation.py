"""Text -> images with a trained run: encode with the run's own encoder, sample G, write files and grids.

The run folder says which cache it trained on; the cache says which encoder (spec + config + fitted state)
made its vectors. New text is encoded by that encoder, rebuilt here, after checking that it reproduces
the cache's own vectors; captions already in the cache reuse their stored vectors.
"""
from __future__ import annotations

import time

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.errors import UserError

@dataclass
class EncodedTexts:
    vectors: np.ndarray  # float32 [N, D]
    reused: int  # how many came straight from the cache
    encoded: int  # how many the encoder computed here


def open_run_cache(cfg, run_dir: Path):
    """The embedding cache the run trained on (cfg: gan.config.GanConfig), checked against the run's
    fingerprint. None when the file is gone (new text can still be encoded when the encoder needs no
    fitted state; see run_encoder)."""
    from cache.reader import EmbeddingCache

    path = Path(cfg.cache.path)
    if not path.exists():
        return None
    cache = EmbeddingCache.open(path)
    if cache.fingerprint != cfg.cache.fingerprint:
        raise UserError(
            f"{path}: fingerprint {cache.fingerprint[:12]} differs from run {run_dir}'s {cfg.cache.fingerprint[:12]}; "
            "the cache was rebuilt after training — restore the original cache or retrain"
        )
    return cache


def encode_texts(cfg, cache, texts: list[str]) -> EncodedTexts:
    """float32 [N, D] for texts: cached rows where the caption is in the cache, the run's encoder elsewhere
    (EmbeddingCache.encode). Without the cache file, the encoder the run recorded (stateless encoders only).
    For an arch that reads words (dfgan-words) the rows are packed [N, D + L·E + 1] (gan/words.py): the sentence
    vector and the token states at the run's L, stored ones for cached captions (EmbeddingCache.encode_tokens)."""
    from embeddings.registry import encoder_from_config
    from gan.archs import get_arch

    words = get_arch(cfg.arch).words
    try:
        if cache is not None:
            if words:
                from gan.words import pack

                reused = int(cache.lookup(texts)[1].sum())
                return EncodedTexts(vectors=pack(*cache.encode_tokens(texts)), reused=reused,
                                    encoded=len(texts) - reused)
            vectors, reused = cache.encode(texts)
            return EncodedTexts(vectors=vectors, reused=reused, encoded=len(texts) - reused)
        encoder = encoder_from_config(cfg.cache.encoder_config)
    except UserError as e:
        missing = "" if cache is not None else f" (its cache {cfg.cache.path} is missing)"
        raise UserError(f"cannot build the run's encoder {cfg.cache.encoder} here{missing}: {e}") from None
    if words:
        from gan.words import pack

        vectors, states, lengths, _ = encoder.encode_tokens(texts, cfg.cache.token_length)
        return EncodedTexts(vectors=pack(vectors, states.astype(np.float16), lengths), reused=0, encoded=len(texts))
    return EncodedTexts(vectors=np.asarray(encoder.encode(texts), np.float32), reused=0, encoded=len(texts))


def sample_z(n: int, z_dim: int, seed: int, truncation: float | None) -> np.ndarray:
    """[n, z_dim] standard normal noise; with truncation t, values beyond ±t are redrawn (truncation trick)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, z_dim)).astype(np.float32)
    if truncation is not None:
        if truncation <= 0:
            raise UserError(f"--truncation {truncation}: must be > 0 (e.g. 0.7), or omit it")
        bad = np.abs(z) > truncation
        while bad.any():
            z[bad] = rng.standard_normal(int(bad.sum())).astype(np.float32)
            bad = np.abs(z) > truncation
    return z


def image_name(caption_id: str, k: int | None, fmt: str) -> str:
    """inference_{ID:04d}.jpg (the DataLab Cup's naming) for integer ids, inference_{ID}.jpg otherwise;
    with several samples per caption, inference_{ID}_{k}.jpg."""
    stem = f"inference_{int(caption_id):04d}" if caption_id.isdigit() else f"inference_{caption_id}"
    return f"{stem}{'' if k is None else f'_{k}'}.{fmt}"


def save_image(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    if path.suffix == ".jpg":
        Image.fromarray(image).save(path, quality=95)
    else:
        Image.fromarray(image).save(path)


@dataclass
class GenerationRequest:
    """What generate.py asks for (all options validated by the CLI)."""

    run_dir: Path
    out_dir: Path
    ids: list[str]  # [N] safe caption ids (tools.text_sources.check_ids)
    texts: list[str]  # [N]
    checkpoint: str | int | None = None  # None: latest
    weights: str = "auto"  # one of gan.config.GENERATOR_WEIGHTS (gan.inference.load_generator)
    n_per_caption: int = 1  # images per caption, each with its own z
    seed: int = 0
    truncation: float | None = None
    ca_noise: float | None = None  # CA noise scale of sampling (gan.inference.load_generator); None: the run's
    fmt: str = "jpg"  # jpg | png
    out_size: int | None = None  # side of the written images: None = the run's image size; 64 for DataLab Cup
    # files (a larger run's images are area-downsampled, tools.images.area_downsample); grids keep the run's size
    grid: bool = False  # also write grid.png: grid_ids × grid_noise
    grid_ids: list[str] | None = None  # caption ids for the grid rows (default: the first 5)
    grid_noise: int = 5
    batch_size: int = 64
    progress: bool = True


@dataclass
class GenerationReport:
    files: list[Path]
    grid: Path | None
    seconds: float
    reused: int
    encoded: int
    step: int
    ca_noise: float = 0.0  # the CA noise scale the images were drawn with

    def summary(self) -> str:
        rate = len(self.files) / max(self.seconds, 1e-9)
        n = len(self.files)
        return (f"wrote {n} image{'s' if n != 1 else ''} to {self.files[0].parent if self.files else '-'} in "
                f"{self.seconds:.1f} s ({rate:.1f} images/s including model loading; checkpoint step {self.step}; vectors: "
                f"{self.reused} from the cache, {self.encoded} encoded)" + (f"; grid: {self.grid}" if self.grid else ""))


def _conditions(gen, cfg, cache, texts: list[str]) -> tuple[object, EncodedTexts]:
    """What the generator is conditioned on: raw texts for an arch that reads them (ta80: its GRU is part of the
    run), else vectors."""
    if gen.needs == "texts":
        return list(texts), EncodedTexts(np.zeros((len(texts), 0), np.float32), 0, 0)
    enc = encode_texts(cfg, cache, texts)
    return enc.vectors, enc


def _sample(gen, conditions, z: np.ndarray, batch_size: int, bar=None) -> np.ndarray:
    """uint8 [N, S, S, 3] in batches (S: the run's image size); conditions: [N, D] vectors or N texts, z: [N, Z]."""
    out = []
    for lo in range(0, len(z), batch_size):
        out.append(gen(conditions[lo : lo + batch_size], z[lo : lo + batch_size]))
        if bar is not None:
            bar.update(len(out[-1]))
    size = gen.config.image_size
    return np.concatenate(out) if out else np.zeros((0, size, size, 3), np.uint8)


def generate(req: GenerationRequest) -> GenerationReport:
    """Encode req.texts with the run's encoder, draw req.n_per_caption images each, write them (and the grid)."""
    from tqdm import tqdm

    from gan.inference import load_generator
    from tools.grids import caption_grid

    t0 = time.perf_counter()
    gen, cfg = load_generator(req.run_dir, req.checkpoint, req.weights, req.ca_noise)
    cache = open_run_cache(cfg, req.run_dir) if gen.needs == "vectors" else None
    try:
        conditions, enc = _conditions(gen, cfg, cache, req.texts)
    finally:
        if cache is not None:
            cache.close()
    k = req.n_per_caption
    # [N*K] rows: caption i's k-th image is row i*K + k; z drawn once for all rows, so an image depends only
    # on (seed, its row), not on the batch size.
    rows = np.repeat(np.arange(len(req.texts)), k)
    z = sample_z(len(rows), gen.z_dim, req.seed, req.truncation)
    cond_rows = [conditions[i] for i in rows] if gen.needs == "texts" else conditions[rows]
    req.out_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(rows), unit="img", desc="generate", disable=not req.progress)
    images = _sample(gen, cond_rows, z, req.batch_size, bar)  # [N·K, S, S, 3]
    bar.close()
    if req.out_size is not None and req.out_size != images.shape[1]:
        from tools.images import area_downsample

        print(f"the run draws {images.shape[1]}x{images.shape[1]} images; writing them at {req.out_size}x"
              f"{req.out_size} (area-downsampled), the size the output format asks for")
        images = area_downsample(images, req.out_size)
    files = []
    for r, image in enumerate(images):
        i, j = divmod(r, k)
        files.append(req.out_dir / image_name(req.ids[i], j if k > 1 else None, req.fmt))
        save_image(image, files[-1])
    grid_path = _write_grid(req, gen, conditions, caption_grid) if req.grid else None
    return GenerationReport(files, grid_path, time.perf_counter() - t0, enc.reused, enc.encoded, gen.step, gen.ca_noise)


def _write_grid(req: GenerationRequest, gen, conditions, caption_grid) -> Path:
    """grid.png: one row per grid caption, req.grid_noise columns; column j uses the same z in every row,
    so a column shows what the text alone changes."""
    index = {cid: i for i, cid in enumerate(req.ids)}
    grid_ids = req.grid_ids or req.ids[:5]
    unknown = [g for g in grid_ids if g not in index]
    if unknown:
        raise UserError(f"--grid-captions: ids {unknown[:5]} are not among the captions given (e.g. {req.ids[:3]})")
    picks = [index[g] for g in grid_ids]
    z = sample_z(req.grid_noise, gen.z_dim, req.seed + 1, req.truncation)  # [K, Z] shared by all rows
    z_rows = np.tile(z, (len(picks), 1))  # [C*K, Z]
    cond = [conditions[i] for i in picks for _ in range(req.grid_noise)]
    cond = cond if gen.needs == "texts" else np.stack(cond)
    images = _sample(gen, cond, z_rows, req.batch_size)  # [C*K, H, W, 3]
    images = images.reshape(len(picks), req.grid_noise, *images.shape[1:])  # [C, K, H, W, 3]
    path = req.out_dir / "grid.png"
    caption_grid(images, [req.texts[i] for i in picks], labels=grid_ids).save(path)
    return path
