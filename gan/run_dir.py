"""Numbered run folders (stylegan2-ada style), the run log, config.json, checkpoints lookup, sample grids.

    runs/00003-synthetic-flowers-minilm/
        config.json              config_version, resolved options + "cache" (encoder, encoder_config, dim, fingerprint, path, ...)
                                 + "run" (folder, device, mixed precision, versions, created)
        train.log                the same lines as the console
        samples_captions.json    the fixed captions (rows of every sample grid: first caption of the first images)
        samples/step_000500.png  grid: one row per fixed caption, one column per fixed z
        checkpoints/ckpt-500.*   tf.train.Checkpoint (G, D, optimizers, RNG, step); last few kept
        tb/                      TensorBoard scalars (d, g, kl, ms/step) and sample grids
        vocab.json               (archs that read raw text: ta80) the word vocabulary, id = index + 2
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from gan.config import GanConfig
from tools.errors import UserError

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"


class TrainingDiverged(UserError):
    """A non-finite loss or weight: training stopped, the last good checkpoint of the run folder is kept."""


def slug(text: str) -> str:
    """'hf:bert-base-uncased?pooling=cls' -> 'hf-bert-base-uncased-pooling-cls' (folder-name safe)."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "x"


def new_run_dir(parent: str | Path, name: str) -> Path:
    """Create parent/NNNNN-name with the next free number (safe against a concurrent run taking one)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        numbers = [int(m.group(1)) for p in parent.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
        path = parent / f"{max(numbers, default=0) + 1:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"could not create a new run folder in {parent}")


def run_name(cfg: GanConfig) -> str:
    name = f"{slug(cfg.cache.dataset_name or 'data')}-{slug(cfg.cache.encoder)}"
    from gan.archs import get_arch

    return name + get_arch(cfg.arch).run_suffix


def save_config(run_dir: Path, cfg: GanConfig) -> None:
    tmp = run_dir / (CONFIG + ".tmp")
    tmp.write_text(cfg.to_json() + "\n", encoding="utf-8")
    tmp.replace(run_dir / CONFIG)


def load_config(run_dir: str | Path) -> GanConfig:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder: {path} not found (run folders are made by train_gan.py)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None
    from gan.config_versions import migrate

    return GanConfig.from_dict(migrate(data, str(path)), where=str(path))


def find_checkpoint(run_dir: str | Path, checkpoint=None) -> str:
    """Checkpoint path prefix: None -> latest, int -> that step, str -> as given."""
    import tensorflow as tf

    ckpt_dir = Path(run_dir) / CHECKPOINTS
    if checkpoint is None:
        path = tf.train.latest_checkpoint(str(ckpt_dir))
        if path is None:
            raise UserError(f"no checkpoint in {ckpt_dir}; train longer than --ckpt-every steps first")
        return path
    if isinstance(checkpoint, (int, np.integer)):
        path = ckpt_dir / f"ckpt-{int(checkpoint)}"
    else:
        path = Path(checkpoint)
    if not Path(str(path) + ".index").exists():
        have = sorted(p.name[:-6] for p in ckpt_dir.glob("ckpt-*.index"))
        raise UserError(f"checkpoint {path} not found; available: {', '.join(have) or 'none'}")
    return str(path)


class RunLog:
    """Writes each line to the console (stdout) and appends it to train.log."""

    def __init__(self, path: Path | None = None, echo: bool = True):
        self.path, self.echo = path, echo

    def __call__(self, line: str) -> None:
        if self.echo:
            print(line, file=sys.stdout, flush=True)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")


def image_grid(images: np.ndarray, rows: int) -> np.ndarray:
    """uint8 [rows·cols, H, W, 3] -> [rows·H, cols·W, 3] (row r holds images r·cols .. r·cols + cols - 1)."""
    n, h, w, c = images.shape
    cols = n // rows
    return images[: rows * cols].reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def save_png(grid: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid, "RGB").save(path)


def _plugin_metadata(plugin: str) -> bytes:
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin))
    return meta.SerializeToString()


def tb_scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar via tf.summary.write (works without the tensorboard package installed)."""
    import tensorflow as tf

    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=_plugin_metadata("scalars"))


def tb_image(tag: str, image: np.ndarray, step: int) -> None:
    """A TensorBoard image (uint8 [H, W, 3]) in the image plugin's format: [width, height, png]."""
    import tensorflow as tf

    h, w = image.shape[:2]
    tensor = tf.stack([tf.constant(str(w)), tf.constant(str(h)), tf.io.encode_png(image)])
    tf.summary.write(tag, tensor, step=step, metadata=_plugin_metadata("images"))


def format_duration(seconds: float) -> str:
    """6m12s, 1h03m, 45s."""
    s = int(round(max(seconds, 0)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
