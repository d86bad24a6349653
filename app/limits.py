"""Request size limits, enforced where the bytes arrive, before anything is parsed or buffered.

Two layers:
- `HeadLimitedHttpTools`, uvicorn's httptools protocol refusing a request line and headers longer than
  HEAD_CEILING bytes while they are still arriving (httptools alone buffers a header of any size: a 120 MB one
  was read whole). `make run` names it with `--http app.limits:HeadLimitedHttpTools`; gunicorn.conf.py gives
  it to the uvicorn workers.
- `RequestLimits`, ASGI middleware: each header and all of them within the settings (431), a body's
  Content-Length refused before a byte of it is read, and a body without one counted as it streams (413);
  a path holding a control character once decoded (%0A, %00) is refused too (400): no route means it.
  The body limit is MAX_JSON_BODY_BYTES, except on paths with an allowance of their own (`body_limits`:
  path suffix -> BodyLimit, e.g. "/imports" -> MAX_IMPORT_REQUEST_BYTES).

Every refusal is problem+json with `Connection: close`: the server stops reading the rest and frees the
connection instead of draining a body nobody wants.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.errors import problem_document

HEAD_CEILING = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # bytes of request line and headers a connection may send before they are complete


def problem_bytes(status: int, detail: str) -> bytes:
    return json.dumps(problem_document(status, detail)).encode()


def _body_too_large(limit: BodyLimit) -> str:
    return f"The request body is too large: at most {limit.bytes} bytes ({limit.setting})."


def _headers_too_large(each: int, total: int) -> str:
    return f"The request's headers are too large: at most {each} bytes each and {total} in all."


class HeadLimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing with 431 a request head longer than HEAD_CEILING: counted while
    it is incomplete (bytes received) and once parsed (URL and headers), whichever shows it first."""

    _refused = False
    _head_open = False
    _head_received = 0
    _head_parsed = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open, self._head_received, self._head_parsed = True, 0, 0

    def on_url(self, url: bytes) -> None:
        self._head_parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_parsed += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open = False
        if self._head_parsed > HEAD_CEILING:
            return self._refuse_head()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._head_open and not self._refused:
            self._head_received += len(data)
            if self._head_received > HEAD_CEILING:
                self._refuse_head()

    def _refuse_head(self) -> None:
        self.logger.warning("request head over %d bytes refused", HEAD_CEILING)
        body = problem_bytes(431, f"The request line and headers are too large: at most {HEAD_CEILING} bytes in all.")
        self.transport.write(b"".join([
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            b"content-type: application/problem+json\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\n",
            b"connection: close\r\n\r\n", body]))
        self._refused, self._head_open = True, False
        self.transport.close()


@dataclass(frozen=True)
class BodyLimit:
    bytes: int
    setting: str  # named in the 413, so the operator knows what to raise


class RequestLimits:
    """ASGI middleware: headers within `max_header_bytes` each and `max_headers_total_bytes` in all (431);
    a body within `max_body_bytes` (413), or within the `body_limits` of the first path suffix it ends with,
    judged by Content-Length before reading, else counted while read."""

    def __init__(self, app, *, max_body_bytes: int, max_header_bytes: int, max_headers_total_bytes: int,
                 body_limits: dict[str, BodyLimit] | None = None):
        self.app = app
        self.max_header, self.max_headers_total = max_header_bytes, max_headers_total_bytes
        self.default_body = BodyLimit(max_body_bytes, "MAX_JSON_BODY_BYTES")
        self.body_limits = dict(body_limits or {})

    def body_limit(self, path: str) -> BodyLimit:
        return next((limit for suffix, limit in self.body_limits.items() if path.endswith(suffix)), self.default_body)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope["headers"]
        total = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        declared_length = None
        for name, value in headers:
            size = len(name) + len(value)
            total += size + 4
            if size > self.max_header:
                return await self._refuse(send, 431, _headers_too_large(self.max_header, self.max_headers_total))
            if name == b"content-length":
                declared_length = value
        body_limit = self.body_limit(scope["path"])
        if _CONTROL.search(scope["path"]):  # decoded: %0A, %00 (the router and the logs would see them raw)
            return await self._refuse(send, 400, "The path contains a control character.")
        if total > self.max_headers_total:
            return await self._refuse(send, 431, _headers_too_large(self.max_header, self.max_headers_total))
        if declared_length is not None and declared_length.strip().isdigit() \
                and int(declared_length) > body_limit.bytes:
            return await self._refuse(send, 413, _body_too_large(body_limit))

        received = 0
        refused = False
        response_started = False

        async def counted_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > body_limit.bytes:
                    refused = True
                    if not response_started:
                        await self._refuse(send, 413, _body_too_large(body_limit))
                    # The app sees the client gone and stops; nothing more is read from the connection.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal response_started
            if refused:
                return  # the 413 has been sent; whatever the app answers after is dropped
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    @staticmethod
    async def _refuse(send, status: int, detail: str) -> None:
        body = problem_bytes(status, detail)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
