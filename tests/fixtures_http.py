"""A real HTTP server on 127.0.0.1 (port 0) for the fetcher's tests: images and every way a download fails.

    with ImageServer() as server:
        server.url("/img/a.jpg")         # http://127.0.0.1:PORT/img/a.jpg
        server.counts["/img/a.jpg"]      # requests seen per path; server.peak: most requests waiting at once

Routes: /img/<name>.jpg a JPEG whose colour comes from the name (optional ?delay=s); /missing 404; /slow.jpg
answers after 2.5 s; /big.jpg declares and sends 3 MB; /bigstream.jpg sends 3 MB without a length;
/page.jpg is text/html; /corrupt.jpg is image/jpeg holding junk; /redirect/<name>.jpg 302 -> /img/<name>.jpg;
/loop 302 -> /loop; /noai.jpg and /noimageai.jpg carry X-Robots-Tag for all agents, /other-agent.jpg only for
"otherbot"; /flaky.jpg answers 503 on its first request and the image afterwards.
"""
from __future__ import annotations

import hashlib
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image


def image_bytes(name: str, size=(40, 30)) -> bytes:
    """A JPEG whose solid colour is derived from `name` (distinct names, distinct pixels)."""
    color = tuple(hashlib.sha256(name.encode()).digest()[:3])
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    server: "ImageServer._Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", ctype: str = "image/jpeg", headers=(), length=True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        owner = self.server.owner
        with owner.lock:
            owner.counts[path] = owner.counts.get(path, 0) + 1
            owner.open += 1
            owner.peak = max(owner.peak, owner.open)
            first = owner.counts[path] == 1
        delay = float(query.get("delay", [owner.delay])[0])
        if delay:
            time.sleep(delay)
        with owner.lock:  # before answering: the client cannot have started its next request yet
            owner.open -= 1
        try:
            self._route(path, first)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def _route(self, path: str, first: bool) -> None:
        if path.startswith("/img/"):
            self._send(200, image_bytes(path.rsplit("/", 1)[-1]))
        elif path.startswith("/redirect/"):
            self._send(302, ctype="text/plain", headers=[("Location", "/img/" + path.rsplit("/", 1)[-1])])
        elif path == "/loop":
            self._send(302, ctype="text/plain", headers=[("Location", "/loop")])
        elif path == "/slow.jpg":
            time.sleep(2.5)
            self._send(200, image_bytes("slow"))
        elif path == "/big.jpg":
            self._send(200, b"\xff" * 3_000_000)
        elif path == "/bigstream.jpg":
            self.protocol_version = "HTTP/1.0"  # no length: the body ends when the connection closes
            self._send(200, b"\xff" * 3_000_000, length=False)
        elif path == "/page.jpg":
            self._send(200, b"<html>not an image</html>", ctype="text/html; charset=utf-8")
        elif path == "/corrupt.jpg":
            self._send(200, b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
        elif path in ("/noai.jpg", "/noimageai.jpg"):
            self._send(200, image_bytes(path), headers=[("X-Robots-Tag", path[1:-4] + ", noindex")])
        elif path == "/other-agent.jpg":
            self._send(200, image_bytes(path), headers=[("X-Robots-Tag", "otherbot: noai")])
        elif path == "/flaky.jpg":
            if first:
                self._send(503, b"busy", ctype="text/plain", headers=[("Retry-After", "0")])
            else:
                self._send(200, image_bytes("flaky"))
        else:
            self._send(404, b"not found", ctype="text/plain")


class ImageServer:
    """ThreadingHTTPServer on 127.0.0.1:0 in a daemon thread; counts requests per path."""

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # socketserver's default backlog of 5 refuses a burst of connections
        owner: "ImageServer"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.open = self.peak = 0
        self.httpd = self._Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.peak = 0

    def __enter__(self) -> "ImageServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
