"""A loopback HTTP server for URL import tests and benches: what each path answers is set by the test.

    with UrlServer() as server:                     # 127.0.0.1, a free port, HTTP/1.1 keep-alive, asyncio on a
        url = server.add("/a.png", png_bytes)      #   thread of its own; add/redirect return the full URL
        server.add("/copy.png", png_bytes)         # the same bytes under another URL (a duplicate)
        server.add("/flaky.png", png_bytes, fail_first=1)                    # 500 once, then the bytes
        server.add("/busy.png", png_bytes, fail_first=1, fail_status=429, retry_after=1)
        server.add("/slow.png", png_bytes, delay=2.0)                        # headers only after 2 s
        server.add("/big", b"x" * 10**6)                                      # with Content-Length
        server.add("/big-unsized", b"x" * 10**6, content_length=False)        # none: the body ends at close
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
import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
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
    trickle: float = 0.0  # seconds between the body's 64-byte pieces (a server that drips its answer)


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
        self._socket = socket.create_server((host, 0), backlog=1024)
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://{host}:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    def start(self) -> "UrlServer":
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, sock=self._socket))
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="url-server", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(close(), self._loop)
        self._thread.join(10)
        self._loop.close()

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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 GET requests on one connection, kept alive until the client or a route closes it."""
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                path = head[0].split(" ")[1].split("?", 1)[0]
                headers = {name.strip().title(): value.strip()
                           for name, _, value in (line.partition(":") for line in head[1:] if line)}
                seen = Seen(path, headers.get("Host", "").rsplit(":", 1)[0].strip("[]"), headers, time.monotonic())
                with self._lock:
                    self.hits[path] += 1
                    count = self.hits[path]
                    self.requests.append(seen)
                try:
                    keep = await self._answer(writer, self.routes.get(path), count)
                finally:
                    seen.end = time.monotonic()
                if not keep or headers.get("Connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, route: Route | None, count: int) -> bool:
        if route is None:
            return await _send(writer, 404, b"not found", "text/plain", {})
        if route.delay:
            await asyncio.sleep(route.delay)
        if count <= route.fail_first:
            extra = {"Retry-After": f"{route.retry_after:g}"} if route.retry_after is not None else {}
            return await _send(writer, route.fail_status, b"try again", "text/plain", extra)
        if route.trickle:
            return await _drip(writer, route)
        return await _send(writer, route.status, route.body, route.content_type, route.headers, route.content_length)


async def _drip(writer: asyncio.StreamWriter, route: Route) -> bool:
    """The head at once, then the body 64 bytes at a time, `route.trickle` seconds apart."""
    writer.write((f"HTTP/1.1 {route.status} {HTTPStatus(route.status).phrase}\r\nContent-Type: {route.content_type}"
                  f"\r\nContent-Length: {len(route.body)}\r\n\r\n").encode("latin-1"))
    for start in range(0, len(route.body), 64):
        writer.write(route.body[start:start + 64])
        await writer.drain()
        await asyncio.sleep(route.trickle)
    return True


async def _send(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, headers: dict,
                length: bool = True) -> bool:
    """One response, its head and first bytes in one write; whether the connection stays open."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Type: {content_type}",
             *(f"{name}: {value}" for name, value in headers.items()),
             f"Content-Length: {len(body)}" if length else "Connection: close"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body[:65536])
    for start in range(65536, len(body), 65536):
        await writer.drain()
        writer.write(body[start:start + 65536])
    await writer.drain()
    return length


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
