"""A loopback HTTP server for URL import tests and benches: what each path answers is set by the test.

    with UrlServer() as server:                     # 127.0.0.1, a free port, HTTP/1.1 keep-alive, one thread per
        url = server.add("/a.png", png_bytes)      #   connection; add/redirect return the full URL
        server.add("/copy.png", png_bytes)         # the same bytes under another URL (a duplicate)
        server.add("/flaky.png", png_bytes, fail_first=1)                    # 500 once, then the bytes
        server.add("/busy.png", png_bytes, fail_first=1, fail_status=429, retry_after=1)
        server.add("/slow.png", png_bytes, delay=2.0)                        # headers only after 2 s
        server.add("/big", b"x" * 10**6)                                      # with Content-Length
        server.add("/big-chunked", b"x" * 10**6, content_length=False)        # none: the body ends at close
        server.add("/text", b"hello", content_type="text/plain")              # a non-image
        server.redirect("/r", "/a.png")            # 302 (relative or absolute Location)
        server.redirect_chain("/chain", 7, "/a.png")  # /chain/1 -> /chain/2 ... -> /chain/7 -> /a.png
        server.redirect("/meta", "http://169.254.169.254/latest/meta-data/")
        urls = server.add_images(2000)             # /img/000000.png ... distinct small PNGs (tests/images.py)
        server.url("/missing")                     # any path not added answers 404

What it saw:
    server.hits["/flaky.png"]            requests per path (a Counter; query strings stripped)
    server.requests                      every request: Seen(path, host, headers, start, end) in arrival order
    server.user_agents()                 the set of User-Agent headers seen
    server.peak("/slow")                 most requests in progress at once whose path starts with the prefix;
    server.peak("/slow", host="localhost")   ... and whose Host header names that host (port ignored)

In another process (a bench, so the server does not share the GIL with the client measured):
    with spawned(images=2000) as base_url: ...       # python -m tests.url_server --images 2000
    then base_url + image_path(i) for i in range(2000).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests import images

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    headers: dict = field(default_factory=dict)
    fail_first: int = 0  # the first n requests answer fail_status
    fail_status: int = 500
    retry_after: float | None = None  # sent with the failures
    delay: float = 0.0  # before the status line
    content_length: bool = True  # False: no Content-Length, the connection closes after the body


@dataclass
class Seen:
    path: str
    host: str  # the Host header without the port
    headers: dict
    start: float
    end: float | None = None


def image_path(index: int) -> str:
    return f"/img/{index:06d}.png"


class UrlServer:
    def __init__(self, host: str = "127.0.0.1"):
        self.routes: dict[str, Route] = {}
        self.hits: Counter = Counter()
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), _handler(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.port = self._server.server_address[1]
        self.base_url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> "UrlServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="url-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "UrlServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: str, body: bytes = b"", **route) -> str:
        """What `path` answers (see Route for the options); returns its URL."""
        self.routes[path] = Route(body=body, **route)
        return self.url(path)

    def redirect(self, path: str, to: str, status: int = 302) -> str:
        return self.add(path, status=status, headers={"Location": to})

    def redirect_chain(self, prefix: str, length: int, to: str) -> str:
        """prefix/1 -> prefix/2 -> ... -> prefix/length -> to: `length` redirects; returns the first URL."""
        for hop in range(1, length + 1):
            self.redirect(f"{prefix}/{hop}", f"{prefix}/{hop + 1}" if hop < length else to)
        return self.url(f"{prefix}/1")

    def add_images(self, count: int, make=None) -> list[str]:
        """`count` distinct small PNGs at image_path(0..count-1); `make(i) -> bytes` to choose them."""
        make = make or (lambda i: images.png(seed=i, width=64, height=48))
        return [self.add(image_path(i), make(i), content_type="image/png") for i in range(count)]

    def user_agents(self) -> set[str]:
        with self._lock:
            return {seen.headers.get("User-Agent", "") for seen in self.requests}

    def peak(self, prefix: str = "/", host: str | None = None) -> int:
        with self._lock:
            chosen = [s for s in self.requests if s.path.startswith(prefix) and host in (None, s.host)]
        events = sorted([(s.start, 1) for s in chosen] + [(s.end or float("inf"), -1) for s in chosen])
        most = current = 0
        for _, step in events:  # at equal times an end (-1) sorts before a start
            current += step
            most = max(most, current)
        return most


def _handler(server: UrlServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            seen = Seen(path, (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]"),
                        dict(self.headers.items()), time.monotonic())
            with server._lock:
                server.hits[path] += 1
                count = server.hits[path]
                server.requests.append(seen)
            try:
                self._answer(server.routes.get(path), count)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                seen.end = time.monotonic()

        def _answer(self, route: Route | None, count: int) -> None:
            if route is None:
                return self._send(404, b"not found", "text/plain", {})
            if route.delay:
                time.sleep(route.delay)
            if count <= route.fail_first:
                extra = {"Retry-After": f"{route.retry_after:g}"} if route.retry_after is not None else {}
                return self._send(route.fail_status, b"try again", "text/plain", extra)
            self._send(route.status, route.body, route.content_type, route.headers, route.content_length)

        def _send(self, status: int, body: bytes, content_type: str, headers: dict, length: bool = True) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in headers.items():
                self.send_header(name, value)
            if length:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            for start in range(0, len(body), 65536):
                self.wfile.write(body[start:start + 65536])

    return Handler


@contextmanager
def spawned(images: int) -> Iterator[str]:
    """A UrlServer serving `images` images (add_images) in a child process; yields its base URL."""
    child = subprocess.Popen([sys.executable, "-m", "tests.url_server", "--images", str(images)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().strip()
        if not line.startswith("http://"):
            raise RuntimeError(f"the URL server did not start: {line!r}")
        yield line
    finally:
        child.terminate()
        child.wait()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description="Serve N small PNG images on a free loopback port; print the URL")
    parser.add_argument("--images", type=int, default=2000)
    arguments = parser.parse_args()
    with UrlServer() as served:
        served.add_images(arguments.images)
        print(served.base_url, flush=True)
        threading.Event().wait()
