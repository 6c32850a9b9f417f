"""Download the images of a captioned URL list into a dataset the importers read (resumable).

    python tools/fetch_images.py --source data/coco/eee443_project_dataset_train.h5 --out data/coco64 --per-host 32
    python tools/fetch_images.py --source urls.csv --out data/mine --url-column photo --caption-column alt_text
    python precompute_embeddings.py --data data/coco64          # the result is a manifest dataset

Writes OUT/images/<id>.png (already centre-cropped and resized to --size the way training decodes images,
tools/images.py, so the image cache later decodes small PNGs instead of full photos), OUT/manifest.jsonl
(the fetched images and their captions, rewritten atomically at the end of every run), OUT/fetch-journal.jsonl
(one record per finished image: tools/datasets/fetch_journal.py) and OUT/fetch-report.json. Kill it at any
time (Ctrl-C, kill -9): the same command fetches only the images that have no record yet, so a kill costs at
most the images in flight (downloading, or downloaded and waiting for a decoder: 2 x --connections at most);
--retry-failed also retries the failures.

Per image: GET with redirects (at most 5), --timeout per attempt, counted from when its host has a free
slot; timeouts, connection errors and HTTP 408/429/5xx are retried --retries times with exponential backoff
(Retry-After honoured, up to 30 s); other HTTP errors fail at once. Refused without downloading the body: an
`X-Robots-Tag` with noai or noimageai for all agents or for ours (skipped; --ignore-robots turns this off), a
content type that is not image/* (or octet-stream, which some stores send for images), a Content-Length over
--max-bytes; a body that grows past --max-bytes is cut off and failed. The bytes must then decode (Pillow,
same checks as training).

HTTP client: aiohttp (pinned for bench/serve.py). Downloads are waits, not work, so one event loop keeps
--connections requests open on one thread, and aiohttp's connector bounds both the total and the connections
per host (`limit`, `limit_per_host`); one semaphore per host in front of it only makes a request wait for
its slot before its timeout starts. aiohttp costs less CPU per request than httpx's async client, which
matters on two cores that also decode; requests would need a thread per connection and a home-made
per-host limit. Decoding and resizing run in worker processes, one per core, overlapping the next downloads:
in threads of this process they would hold the GIL that the event loop needs back after every socket call
(measured: 5 ms per send, the GIL switch interval, and 67 images/s at 32 connections). Proxies from the
environment are not used (trust_env off): a fetch goes exactly where its URL says.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tools.errors import UserError, run_cli

USER_AGENT = "t2i-fetch/1.0"
ROBOTS_TOKEN = "t2i-fetch"  # the agent name an X-Robots-Tag may address ("t2i-fetch: noai")
ROBOTS_DIRECTIVES = ("noai", "noimageai")
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
OCTET_TYPES = ("application/octet-stream", "binary/octet-stream")
MAX_REDIRECTS = 5


@dataclass
class FetchOptions:
    size: int = 64  # side of the saved square image (0: keep the original size, still re-encoded as PNG)
    connections: int = 32  # requests open at once, all hosts together
    per_host: int = 16  # requests open at once to one host
    timeout: float = 10.0  # seconds per attempt (connect + headers + body)
    retries: int = 2  # extra attempts after a timeout, connection error or HTTP 408/429/5xx
    backoff: float = 0.5  # seconds before the first retry; doubles each time (plus up to 25 % jitter)
    max_bytes: int = 16 * 2**20  # body size cap
    robots: bool = True  # honour X-Robots-Tag noai / noimageai
    retry_failed: bool = False  # also retry images an earlier run recorded as failed
    progress_every: float = 5.0  # seconds between progress lines (0: none)
    decode_processes: int | None = None  # decode + resize processes (None: one per core; 0: a thread of this one)


class Refused(Exception):
    """A final answer for one image: status "failed" or "skipped" with a short reason."""

    def __init__(self, reason: str, status: str = "failed", http: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status, self.http = reason, status, http


class Transient(Exception):
    """Worth another attempt: timeout, connection error, 408/429/5xx (retry_after: seconds the server asked)."""

    def __init__(self, reason: str, http: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.http, self.retry_after = reason, http, retry_after


def robots_forbid(values: list[str]) -> bool:
    """True when an X-Robots-Tag value says noai/noimageai to every agent or to ours (img2dataset's rule)."""
    for value in values:
        agent, sep, rest = value.partition(":")
        directives = rest if sep else value
        if sep and agent.strip().lower() not in (ROBOTS_TOKEN, "*"):
            continue  # addressed to another agent
        if any(d.strip().lower() in ROBOTS_DIRECTIVES for d in directives.split(",")):
            return True
    return False


async def download(session, url: str, opt: FetchOptions) -> bytes:
    """The body of one GET, or Refused / Transient."""
    import aiohttp

    try:
        async with asyncio.timeout(opt.timeout), \
                session.get(url, allow_redirects=True, max_redirects=MAX_REDIRECTS) as resp:
            if resp.status in RETRY_STATUS:
                after = resp.headers.get("Retry-After", "")
                raise Transient(f"HTTP {resp.status}", resp.status, float(after) if after.isdigit() else None)
            if resp.status != 200:
                raise Refused(f"HTTP {resp.status}", http=resp.status)
            if opt.robots and robots_forbid(resp.headers.getall("X-Robots-Tag", [])):
                raise Refused("X-Robots-Tag noai/noimageai", "skipped", resp.status)
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype and not ctype.startswith("image/") and ctype not in OCTET_TYPES:
                raise Refused(f"content type {ctype}", http=resp.status)
            if resp.content_length is not None and resp.content_length > opt.max_bytes:
                raise Refused("larger than --max-bytes", http=resp.status)
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > opt.max_bytes:
                    raise Refused("larger than --max-bytes", http=resp.status)
            return bytes(body)
    except (Refused, Transient):
        raise
    except aiohttp.TooManyRedirects:
        raise Refused(f"more than {MAX_REDIRECTS} redirects") from None
    except aiohttp.InvalidURL:
        raise Refused("invalid URL") from None
    except asyncio.TimeoutError:
        raise Transient("timeout") from None
    except (aiohttp.ClientError, OSError) as e:
        raise Transient(f"connection error ({type(e).__name__})") from None


def save_image(data: bytes, path: Path, size: int, url: str) -> None:
    """Decode (tools/images.py: EXIF, alpha on white, centre square, Lanczos), save PNG atomically."""
    from PIL import Image

    from tools.images import ImageError, decode_bytes

    try:
        rgb = decode_bytes(data, size or None, url)  # uint8 [size, size, 3]
    except ImageError as e:
        raise Refused("not a decodable image") from e
    tmp = path.with_name(path.name + ".partial")
    Image.fromarray(rgb, "RGB").save(tmp, format="PNG", compress_level=1)  # lossless; level 1: 3x faster than 6
    os.replace(tmp, path)


async def download_item(session, item, opt: FetchOptions, slot: asyncio.Semaphore) -> tuple[dict, bytes | None]:
    """(journal record so far, body) of one image with retries, each attempt inside its host's `slot` (not the
    backoff); body None when the record is final."""
    record = {"id": item.id, "url": item.url}
    start = time.perf_counter()
    attempt, data = 0, None
    while True:
        attempt += 1
        try:
            if not item.url.lower().startswith(("http://", "https://")):
                raise Refused("not an http(s) URL")
            async with slot:
                data = await download(session, item.url, opt)
            break
        except Refused as e:
            record.update(status=e.status, reason=e.reason, **({"http": e.http} if e.http else {}))
            break
        except Transient as e:
            if attempt > opt.retries:
                record.update(status="failed", reason=e.reason, **({"http": e.http} if e.http else {}))
                break
            wait = opt.backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
            await asyncio.sleep(min(e.retry_after, 30.0) if e.retry_after is not None else wait)
    record.update(attempts=attempt, seconds=round(time.perf_counter() - start, 3))
    return record, data


async def decode_item(pool, item, data: bytes, record: dict, out: Path, opt: FetchOptions) -> dict:
    """Decode, resize and save a downloaded body in the pool; the finished record."""
    file = f"images/{item.file_stem}.png"
    try:
        await asyncio.get_running_loop().run_in_executor(pool, save_image, data, out / file, opt.size, item.url)
        record.update(status="ok", file=file, size=opt.size, bytes=len(data))
    except Refused as e:
        record.update(status=e.status, reason=e.reason, bytes=len(data))
    return record


def _loop_factory():
    """uvloop's event loop when installed (pinned for the web demo): less CPU per request than asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _warm_up() -> None:
    import tools.images  # noqa: F401


def _decode_pool(opt: FetchOptions):
    """Processes for decode + resize + save (spawned: this process has threads); 0 -> one thread here."""
    if opt.decode_processes == 0:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
    import multiprocessing

    return ProcessPoolExecutor(max_workers=opt.decode_processes or os.cpu_count() or 1,
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))  # Ctrl-C: ours


class Progress:
    """One fixed-format line per interval: fetch 1200/82783 | ok 1100 | skipped 20 | failed 80 | 310 img/s | eta 4 min."""

    def __init__(self, total: int, every: float) -> None:
        self.total, self.every = total, every
        self.counts = {"ok": 0, "skipped": 0, "failed": 0}
        self.start = self.last = time.perf_counter()

    def add(self, status: str) -> None:
        self.counts[status] += 1
        now = time.perf_counter()
        n = sum(self.counts.values())
        if self.every and (now - self.last >= self.every or n == self.total):
            self.last = now
            rate = n / max(now - self.start, 1e-9)
            eta = (self.total - n) / max(rate, 1e-9)
            print(f"fetch {n}/{self.total} | ok {self.counts['ok']} | skipped {self.counts['skipped']} | "
                  f"failed {self.counts['failed']} | {rate:.0f} img/s | eta {eta / 60:.1f} min", flush=True)


async def fetch_items(items, out: Path, journal, opt: FetchOptions) -> None:
    """Fetch `items` with --connections workers; every finished image is journaled at once."""
    import aiohttp

    (out / "images").mkdir(parents=True, exist_ok=True)
    todo: asyncio.Queue = asyncio.Queue()
    for item in items:
        todo.put_nowait(item)
    progress = Progress(len(items), opt.progress_every)
    # aiohttp's connector is the hard bound (redirects to other hosts included); the per-host semaphores in
    # front of it make a request wait for its host's slot *before* its --timeout clock starts (aiohttp's own
    # total timeout would count the wait in its pool as time spent on the image).
    connector = aiohttp.TCPConnector(limit=opt.connections, limit_per_host=opt.per_host, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=opt.timeout)
    host_slots: dict[str, asyncio.Semaphore] = {}

    # A connection goes on to its next URL as soon as a body is in: decoding (in the pool) overlaps the next
    # download. At most --connections bodies wait for the pool (memory; and a kill loses at most the images
    # downloading plus these).
    decode_slots = asyncio.Semaphore(opt.connections)
    decoding: set[asyncio.Task] = set()

    def finish(record: dict) -> None:
        journal.append(record)
        progress.add(record["status"])

    async def decode(item, data: bytes, record: dict) -> None:
        try:
            finish(await decode_item(pool, item, data, record, out, opt))
        finally:
            decode_slots.release()

    async def worker() -> None:
        while not todo.empty():
            item = todo.get_nowait()
            slot = host_slots.setdefault(urlsplit(item.url).netloc.lower(), asyncio.Semaphore(opt.per_host))
            record, data = await download_item(session, item, opt, slot)
            if data is None:
                finish(record)
                continue
            await decode_slots.acquire()
            task = asyncio.create_task(decode(item, data, record))
            decoding.add(task)
            task.add_done_callback(decoding.discard)

    with _decode_pool(opt) as pool:
        for _ in range(getattr(pool, "_max_workers", 1)):
            pool.submit(_warm_up)  # workers start (and import Pillow) while the first requests are in flight
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                         headers={"User-Agent": USER_AGENT}) as session:
            await asyncio.gather(*(worker() for _ in range(min(opt.connections, max(len(items), 1)))))
        await asyncio.gather(*list(decoding))


def fetch_images(items, out: str | os.PathLike, opt: FetchOptions | None = None, log=print) -> dict:
    """Fetch what the journal in `out` does not have yet; write the manifest and report; returns the report."""
    from tools.datasets.fetch_journal import Journal, build_report, format_report, plan, write_manifest

    opt = opt or FetchOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    journal = Journal.open(out / "fetch-journal.jsonl")
    if journal.dropped_partial:
        log(f"journal: dropped a cut-off last record of {journal.path} (that image is fetched again)")
    todo = plan(items, journal, out, size=opt.size, retry_failed=opt.retry_failed, robots=opt.robots)
    log(f"fetch: {len(items)} images in the source, {len(items) - len(todo)} already recorded, {len(todo)} to fetch "
        f"({opt.connections} connections, {opt.per_host} per host)")
    before = sum(1 for r in journal.done.values() if r["status"] == "ok")
    try:
        if todo:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(fetch_items(todo, out, journal, opt))
    finally:  # Ctrl-C too: what finished is journaled and listed
        journal.close()
        images, captions = write_manifest(items, journal, out)
        report = build_report(items, journal, sum(1 for r in journal.done.values() if r["status"] == "ok") - before)
        (out / "fetch-report.json.partial").write_text(json.dumps(report, indent=1) + "\n")
        os.replace(out / "fetch-report.json.partial", out / "fetch-report.json")
        log(format_report(report))
        log(f"wrote {out / 'manifest.jsonl'} ({images} images, {captions} captions); "
            f"journal {journal.path}; report {out / 'fetch-report.json'}")
    return report


EXAMPLES = """examples:
  python tools/fetch_images.py --source data/coco/eee443_project_dataset_train.h5 --out data/coco64 --per-host 32
  python tools/fetch_images.py --source urls.jsonl --out data/web --size 128 --connections 64
  python tools/fetch_images.py --source urls.csv --out data/web --retry-failed        # rerun: only the rest
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fetch_images.py", description=__doc__.split("\n")[0], epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = FetchOptions()
    src = p.add_argument_group("source")
    src.add_argument("--source", required=True, metavar="FILE",
                     help="URL list: an EEE443 .h5 (train_url), or a .csv/.jsonl with a URL column")
    src.add_argument("--url-column", metavar="NAME", help="column of the URLs (default: url, image_url, URL, ...)")
    src.add_argument("--caption-column", metavar="NAME", help="column of the captions (default: text, caption, ...)")
    src.add_argument("--id-column", metavar="NAME",
                     help="column of the image ids (default: image_id, key, id; else the URL's file name)")
    src.add_argument("--limit", type=int, metavar="N", help="only the first N images of the source")
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="DIR", help="dataset folder: images/, manifest.jsonl, journal")
    out.add_argument("--size", metavar="N", type=int, default=d.size,
                     help=f"square side images are cropped and resized to, as training does (default {d.size}; "
                          f"0 keeps the original size)")
    net = p.add_argument_group("network")
    net.add_argument("--connections", metavar="N", type=int, default=d.connections, help=f"requests at once (default {d.connections})")
    net.add_argument("--per-host", metavar="N", type=int, default=d.per_host, help=f"requests at once per host (default {d.per_host})")
    net.add_argument("--timeout", metavar="S", type=float, default=d.timeout, help=f"seconds per attempt (default {d.timeout:g})")
    net.add_argument("--retries", metavar="N", type=int, default=d.retries,
                     help=f"extra attempts after a timeout, connection error, 408/429/5xx (default {d.retries})")
    net.add_argument("--backoff", metavar="S", type=float, default=d.backoff,
                     help=f"seconds before the first retry, doubling (default {d.backoff:g})")
    net.add_argument("--max-bytes", metavar="BYTES", type=int, default=d.max_bytes, help=f"body size cap (default {d.max_bytes})")
    net.add_argument("--ignore-robots", action="store_true",
                     help="fetch even when X-Robots-Tag says noai/noimageai (default: such images are skipped)")
    net.add_argument("--retry-failed", action="store_true", help="also retry images earlier runs recorded as failed")
    net.add_argument("--no-progress", action="store_true", help="no progress lines")
    return p


def options_from_args(args) -> FetchOptions:
    for flag in ("connections", "per_host", "max_bytes"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)} must be at least 1")
    if args.size < 0 or args.retries < 0 or args.timeout <= 0 or args.backoff < 0:
        raise UserError("--size and --retries must be >= 0, --timeout > 0 and --backoff >= 0")
    return FetchOptions(size=args.size, connections=args.connections, per_host=args.per_host, timeout=args.timeout,
                        retries=args.retries, backoff=args.backoff, max_bytes=args.max_bytes,
                        robots=not args.ignore_robots, retry_failed=args.retry_failed,
                        progress_every=0 if args.no_progress else 5.0)


def main(argv: list[str] | None = None) -> int:
    from tools.datasets.url_sources import read_url_source

    args = build_parser().parse_args(argv)
    opt = options_from_args(args)
    items = read_url_source(args.source, url_column=args.url_column, caption_column=args.caption_column,
                            id_column=args.id_column)
    if args.limit is not None:
        items = items[: args.limit]
    report = fetch_images(items, args.out, opt)
    return 0 if not report["pending"] else 1


if __name__ == "__main__":
    run_cli(main)
