"""The trained run behind the server: generator, cache and encoder loaded once, and one call that turns a
micro-batch of jobs into images.

    engine = Engine.load("runs/demo/00001-demo-flowers-minilm")
    images, stats = engine.run_batch([GenerateJob(("a red flower",), n=4)])   # [[uint8 [S, S, 3] × 4]], S: the run's size

Every method here runs TensorFlow or h5py: the server calls them from its one worker thread only
(tools/serve/batcher.py), never from the event loop. Captions in the cache reuse their stored vectors,
new text goes through the cache's own encoder (tools/generation.encode_texts), and recently encoded texts
are kept in memory (never on disk) so a caption asked for again is not re-encoded.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.serve.limits import GenerateJob

MEMO_TEXTS = 4096  # encoded new captions kept in memory (1.5 MB of 384-d vectors)
MEMO_BYTES = 64 << 20  # and at most this much: a dfgan-words row holds its token states too (~50 KB at L 32)
EXAMPLES = 8  # example captions offered on the page


@dataclass
class BatchStats:
    images: int  # rows in the generator call
    encoded: int  # captions the encoder computed for this batch
    reused: int  # captions whose vector came from the cache file or the in-memory memo
    encode_ms: float
    generate_ms: float


def bucket(rows: int) -> int:
    """The padded batch size the generator runs for `rows` images: the next power of two. A server sees any size
    from 1 to max_batch; a graph traced for one exact size runs 10-20 % faster on CPU than the shape-generic one,
    and powers of two keep the traced graphs few (7 up to 64) and the padding under half a batch."""
    return 1 << max(0, rows - 1).bit_length()


class Engine:
    def __init__(self, gen, cfg, cache, run_dir: Path):
        self.gen, self.cfg, self.cache, self.run_dir = gen, cfg, cache, run_dir
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()  # text -> float32 [D], oldest first
        self.examples = self._examples()

    @classmethod
    def load(cls, run_dir, checkpoint=None) -> "Engine":
        from gan.inference import load_generator
        from tools.generation import open_run_cache

        run_dir = Path(run_dir)
        gen, cfg = load_generator(run_dir, checkpoint)
        return cls(gen, cfg, open_run_cache(cfg, run_dir), run_dir)

    def _examples(self) -> list[str]:
        """Example captions: the cache's held-out test captions (else its training captions), spread out."""
        if self.cache is None:
            return []
        texts = self.cache.test_texts() or self.cache.texts()
        picks = np.unique(np.linspace(0, len(texts) - 1, min(EXAMPLES, len(texts))).astype(int))
        return [" ".join(texts[i].split()) for i in picks]

    def info(self) -> dict:
        cfg = self.cfg
        return dict(run=self.run_dir.name, dataset=self.cache.dataset_name if self.cache else "",
                    encoder=cfg.cache.encoder, encoder_dim=cfg.cache.dim, arch=cfg.arch, step=self.gen.step,
                    checkpoint=Path(self.gen.checkpoint).name, z_dim=self.gen.z_dim, image_size=cfg.image_size,
                    examples=self.examples)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """float32 [T, D] for distinct texts in one encoder call (packed rows for an arch that reads words:
        gan/words.py); returns (vectors, how many were reused)."""
        from tools.generation import encode_texts

        new = [t for t in texts if t not in self._memo]
        if new:
            vectors = encode_texts(self.cfg, self.cache, new)
            for t, v in zip(new, vectors.vectors):
                self._memo[t] = v
        out = np.stack([self._memo[t] for t in texts]) if texts else np.zeros((0, self.cfg.cache.dim), np.float32)
        for t in texts:
            self._memo.move_to_end(t)
        row_bytes = out[0].nbytes if len(out) else 1
        while len(self._memo) > min(MEMO_TEXTS, max(1, MEMO_BYTES // row_bytes)):
            self._memo.popitem(last=False)
        reused = len(texts) - len(new) + (vectors.reused if new else 0)
        return out, reused

    def run_batch(self, jobs: list[GenerateJob]) -> tuple[list[list[np.ndarray]], BatchStats]:
        """One encoder call for the batch's distinct captions, one generator call for all its images.
        Job j's k-th image of caption i uses row i*n + k of sample_z(T*n, seed, truncation), exactly as
        generate.py --n-per-caption n draws it, so an image does not depend on what it was batched with."""
        from tools.generation import sample_z

        t0 = time.perf_counter()
        distinct = list(dict.fromkeys(t for job in jobs for t in job.texts))
        if self.gen.needs == "texts":  # ta80: the run's own GRU reads the words
            vectors, reused = distinct, 0
        else:
            vectors, reused = self.encode(distinct)
        index = {t: i for i, t in enumerate(distinct)}
        t1 = time.perf_counter()
        rows, zs = [], []
        for job in jobs:
            rows += [index[t] for t in job.texts for _ in range(job.n)]
            zs.append(sample_z(job.images, self.gen.z_dim, job.seed, job.truncation))  # [T*n, Z]
        cond = [vectors[r] for r in rows] if self.gen.needs == "texts" else vectors[np.array(rows)]
        images = self.gen(cond, np.concatenate(zs), pad_to=bucket(len(rows)))  # uint8 [B, S, S, 3]
        t2 = time.perf_counter()
        out, lo = [], 0
        for job in jobs:
            out.append(list(images[lo : lo + job.images]))
            lo += job.images
        stats = BatchStats(images=len(rows), encoded=len(distinct) - reused, reused=reused,
                           encode_ms=1e3 * (t1 - t0), generate_ms=1e3 * (t2 - t1))
        return out, stats

    def warm_up(self, max_batch: int) -> None:
        """Trace the generator's graphs for the page's 8 images and a full batch (other sizes are traced on first
        use, once each: bucket() allows a handful) and build the encoder on a caption that is not in the cache."""
        probe = "warm-up caption that no dataset holds, 12345"
        self.run_batch([GenerateJob((probe,), n=min(8, max_batch))])
        self.run_batch([GenerateJob((probe,), n=min(max_batch, 16))] * max(1, max_batch // 16))
        self._memo.pop(probe, None)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

