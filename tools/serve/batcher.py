"""Micro-batching: concurrent requests wait a few milliseconds in a bounded queue and share one encoder call
and one generator call.

    batcher = MicroBatcher(engine.run_batch, BatchPolicy(max_batch=64, max_wait_ms=5, max_queue_images=256))
    await batcher.start()
    images, batch = await batcher.submit(job)  # [T*n] uint8 [64, 64, 3], images in that generator call;
                                               # QueueFull when the queue is full

A job says how many rows it adds to a batch (`job.rows`): images for the web demo (GenerateJob), texts for the
embedding service (embed_engine.EmbedJob); the policy's sizes count those rows.
The collector coroutine takes the oldest job, then waits up to max_wait_ms for more until max_batch rows are
gathered (jobs are never split). TensorFlow runs in ONE worker thread (the event loop never blocks on it, and
TF/h5py see a single caller); while it computes a batch, new requests keep queueing and form the next one.
The queue is bounded in rows, counting the batch being computed: a job that does not fit is refused
at once with QueueFull (HTTP 503 with Retry-After) instead of growing memory and latency without bound.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from tools.serve.limits import MAX_IMAGES


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int = 64  # rows (images, or texts) per engine call
    max_wait_ms: float = 5.0  # how long the oldest job waits for company
    max_queue_images: int = 256  # rows queued or being computed; beyond: 503 (the name /api/info has always shown)


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"queue full; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class Counters:
    batches: int = 0
    rows: int = 0  # computed: images generated, or texts embedded
    requests: int = 0  # served
    rejected: int = 0  # refused with QueueFull
    encoded: int = 0  # captions the encoder computed
    reused: int = 0  # captions served from the cache file or memo
    busy_s: float = 0.0  # time the worker spent computing
    largest_batch: int = 0


@dataclass
class _Pending:
    job: object  # anything with .rows
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(self, run_batch: Callable, policy: BatchPolicy, max_job_rows: int = MAX_IMAGES):
        if policy.max_batch < max_job_rows:
            raise ValueError(f"max_batch {policy.max_batch} < {max_job_rows}: a full request must fit one batch")
        if policy.max_queue_images < policy.max_batch:
            raise ValueError(f"max_queue_images {policy.max_queue_images} < max_batch {policy.max_batch}")
        self.run_batch, self.policy = run_batch, policy
        self.counters = Counters()
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._running_rows = 0
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tensorflow")

    @property
    def pending_rows(self) -> int:
        return self._queued_rows + self._running_rows

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._collect(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._worker.shutdown(wait=True, cancel_futures=True)

    def _retry_after(self) -> int:
        """Seconds until what is pending has been computed: full batches ahead × the mean batch time so far
        (1 to 60)."""
        c = self.counters
        per_batch = c.busy_s / c.batches if c.batches else 0.0
        return min(60, max(1, math.ceil(math.ceil(self.pending_rows / self.policy.max_batch) * per_batch)))

    async def submit(self, job) -> tuple[object, int]:
        """(job's output, rows in the engine call that made it); QueueFull at once when it does not fit."""
        if self.pending_rows + job.rows > self.policy.max_queue_images:
            self.counters.rejected += 1
            raise QueueFull(self._retry_after())
        pending = _Pending(job, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._queued_rows += job.rows
        self._arrived.set()
        return await pending.future

    async def _gather(self) -> list[_Pending]:
        """The next batch: the oldest job plus whatever arrives within max_wait_ms, up to max_batch rows."""
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._queue[0].queued_at + self.policy.max_wait_ms / 1e3
        while self._queued_rows < self.policy.max_batch and (left := deadline - time.perf_counter()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                break
        batch, rows = [], 0
        while self._queue and rows + self._queue[0].job.rows <= self.policy.max_batch:
            p = self._queue.popleft()
            rows += p.job.rows
            if not p.future.done():  # a client that went away (cancelled future) costs nothing
                batch.append(p)
        self._queued_rows -= rows
        return batch

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            n = sum(p.job.rows for p in batch)
            self._running_rows = n
            t0 = time.perf_counter()
            try:
                outputs, stats = await loop.run_in_executor(self._worker, self.run_batch, [p.job for p in batch])
            except Exception as e:  # the worker failed: every job of the batch gets the error, the server lives on
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            finally:
                self._running_rows = 0
                self.counters.busy_s += time.perf_counter() - t0
            c = self.counters
            c.batches, c.rows, c.requests = c.batches + 1, c.rows + n, c.requests + len(batch)
            c.encoded, c.reused, c.largest_batch = c.encoded + stats.encoded, c.reused + stats.reused, max(c.largest_batch, n)
            for p, output in zip(batch, outputs):
                if not p.future.done():
                    p.future.set_result((output, n))
