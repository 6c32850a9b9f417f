"""The fetcher's journal: one JSON line per finished image, appended and fsynced, so a killed fetch resumes.

    journal = Journal.open(out / "fetch-journal.jsonl")   # reads what earlier runs finished
    journal.done                                          # image id -> its latest record
    journal.append({"id": "img1", "url": ..., "status": "ok", "file": "images/img1.png"})
    journal.close()                                       # waits until every record is on disk

A record is written with one os.write() on an O_APPEND descriptor, so a process killed at any instant
(kill -9 included) leaves whole records plus at most one cut-off last line; `open` drops such a line (and
truncates it away, so the next record starts on a line of its own). A writer thread commits records in
groups: it writes what has queued up, then fsyncs, so a slow disk costs one fsync per group rather than per
image, and an OS crash loses at most the records of the last group — images that count as in flight.
Status: "ok" (file written), "skipped" (a policy said no, e.g. X-Robots-Tag: noai) or "failed" (reason).
"""
from __future__ import annotations

import json
import os
import queue
import threading
from pathlib import Path

STATUSES = ("ok", "skipped", "failed")


class Journal:
    def __init__(self, path: Path, done: dict[str, dict], dropped_partial: bool) -> None:
        self.path = path
        self.done = done  # image id -> latest record
        self.dropped_partial = dropped_partial
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._writer, name="fetch-journal", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Journal":
        """Read the records of earlier runs (latest per id wins); cut a partial last line away."""
        path = Path(path)
        done: dict[str, dict] = {}
        dropped = False
        if path.exists():
            data = path.read_bytes()
            good = data.rfind(b"\n") + 1  # bytes up to the last complete line
            if good < len(data):
                dropped = True
                with open(path, "r+b") as f:
                    f.truncate(good)
            for line in data[:good].splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    dropped = True  # a line torn by a crash in an older format; the image is simply refetched
                    continue
                if isinstance(record, dict) and record.get("status") in STATUSES and "id" in record:
                    done[str(record["id"])] = record
        return cls(path, done, dropped)

    def append(self, record: dict) -> None:
        if self._error is not None:
            raise OSError(f"{self.path}: journal write failed ({self._error})")
        self.done[str(record["id"])] = record
        self._queue.put(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")

    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while item is not None and not self._queue.empty():
                item = self._queue.get()
                batch.append(item)
            lines = [b for b in batch if b is not None]
            try:
                for line in lines:
                    os.write(self._fd, line)  # one write per record: a kill never splits two records
                if lines:
                    os.fsync(self._fd)
            except OSError as e:
                self._error = e
            if batch[-1] is None:
                return

    def close(self) -> None:
        """Flush every queued record to disk and close."""
        self._queue.put(None)
        self._thread.join()
        os.close(self._fd)
        if self._error is not None:
            raise OSError(f"{self.path}: journal write failed ({self._error})")
