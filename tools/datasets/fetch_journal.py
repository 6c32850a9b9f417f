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
Also here, what is read from the records: which images a run still has to fetch (`plan`), the manifest of the
fetched ones (`write_manifest`) and the report by reason (`build_report`, `format_report`).
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


def plan(items, journal: Journal, out: Path, *, size: int, retry_failed: bool, robots: bool) -> list:
    """The items still to fetch: no record yet, a changed URL, an ok record at another size or whose file is
    gone or empty; with retry_failed the failures, and with robots off the images the robots rule skipped."""
    todo = []
    for item in items:
        record = journal.done.get(item.id)
        if record is None or record.get("url") != item.url:
            todo.append(item)
        elif record["status"] == "ok":
            file = out / record.get("file", "")
            if record.get("size") != size or not file.is_file() or file.stat().st_size == 0:
                todo.append(item)
        elif record["status"] == "failed" and retry_failed:
            todo.append(item)
        elif record["status"] == "skipped" and not robots:  # skipped by the X-Robots-Tag rule, now off
            todo.append(item)
    return todo


def write_manifest(items, journal, out: Path) -> tuple[int, int]:
    """OUT/manifest.jsonl of the fetched images in source order, written atomically; (images, captions)."""
    tmp = out / "manifest.jsonl.partial"
    images = captions = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for item in items:
            record = journal.done.get(item.id)
            if record and record["status"] == "ok" and record.get("url") == item.url:
                row = {"image_id": item.id, "image_path": record["file"], "captions": item.captions, "url": item.url}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                images, captions = images + 1, captions + len(item.captions)
    os.replace(tmp, out / "manifest.jsonl")
    return images, captions


def build_report(items, journal, fetched_now: int) -> dict:
    """Counts by status and reason over the whole source (this run and earlier ones), with example URLs."""
    report = {"images": len(items), "fetched": 0, "fetched_this_run": fetched_now, "skipped": {}, "failed": {},
              "pending": 0, "examples": {}}
    for item in items:
        record = journal.done.get(item.id)
        if record is None or record.get("url") != item.url:
            report["pending"] += 1
        elif record["status"] == "ok":
            report["fetched"] += 1
        else:
            reasons = report[record["status"]]
            reasons[record["reason"]] = reasons.get(record["reason"], 0) + 1
            examples = report["examples"].setdefault(record["reason"], [])
            if len(examples) < 3:
                examples.append(item.url)
    return report


def format_report(report: dict) -> str:
    """The printed report: one line per status, then one per reason with up to three example URLs."""
    skipped, failed = sum(report["skipped"].values()), sum(report["failed"].values())
    lines = [f"fetch report: {report['images']} images in the source",
             f"  fetched  {report['fetched']:>7}  ({report['fetched_this_run']} in this run)",
             f"  skipped  {skipped:>7}", f"  failed   {failed:>7}"]
    if report["pending"]:
        lines.append(f"  pending  {report['pending']:>7}  (interrupted: run the same command again)")
    for status in ("skipped", "failed"):
        for reason, n in sorted(report[status].items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    {status:<7} {n:>5}  {reason}  (e.g. {', '.join(report['examples'][reason])})")
    return "\n".join(lines)
