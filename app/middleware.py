"""ASGI middleware around the whole app: a request id on every request, response and log line;
one access log line and the request metrics per request; redirects that never name a host the client chose;
a 405's Allow naming every method of the path; CORS for the listed origins."""
from __future__ import annotations

import logging
import re
import time
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

from starlette.middleware.cors import CORSMiddleware

from app.logs import request_id_var
from app.metrics import LATENCY, REQUESTS

logger = logging.getLogger("app.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class AllowedMethods:
    """Path -> the methods the specs offer on it. Starlette's router answers 405 with the methods of the first
    route whose path matched, and Connexion makes one route per method: /keys said `GET, HEAD`, not POST."""

    def __init__(self, specs: dict[str, dict]):  # base path -> OpenAPI document
        self._routes = []
        for base, spec in specs.items():
            for template, item in spec.get("paths", {}).items():
                methods = {m.upper() for m in item if m in _METHODS}
                if "GET" in methods:
                    methods.add("HEAD")
                pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(base.rstrip("/") + template))
                self._routes.append((re.compile(f"^{pattern}$"), methods))

    def __call__(self, path: str) -> str | None:
        found = set().union(*(methods for pattern, methods in self._routes if pattern.match(path)))
        return ", ".join(sorted(found)) if found else None


def _relative(location: bytes, host: bytes | None) -> bytes:
    """A redirect the app built from the request's Host header (Starlette's trailing-slash redirect does) points
    at that host's path instead: a forged Host is never sent back."""
    parts = urlsplit(location.decode("latin-1"))
    if not parts.netloc or host is None or parts.netloc.lower() != host.decode("latin-1").lower():
        return location
    return urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment)).encode("latin-1")


class RequestContextMiddleware:
    def __init__(self, app, state=None, allowed_methods: AllowedMethods | None = None):
        self.app, self.state, self.allowed_methods = app, state, allowed_methods

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        # The header travels with the request so the Flask side (another thread) can read it.
        scope["headers"] = [h for h in scope["headers"] if h[0] != b"x-request-id"]
        scope["headers"].append((b"x-request-id", request_id.encode()))
        scope["label_store"] = self.state  # for the auth middleware, which runs outside Flask
        # Connexion's router records the operationId in scope["extensions"] of a shallow copy of the scope:
        # only a dict that already exists is shared with this one (uvicorn sends none; test clients do).
        scope.setdefault("extensions", {})
        token = request_id_var.set(request_id)
        status, counted = 500, False
        started = time.perf_counter()

        def count() -> None:
            nonlocal counted
            if not counted:
                REQUESTS.labels(scope["method"], _operation(scope), str(status)).inc()
                counted = True

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*self._tidy(status, message.get("headers", []), scope),
                                      (b"x-request-id", request_id.encode())]
                count()  # before the client can see the answer: a scrape made after it includes it
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            operation = _operation(scope)
            count()  # nothing was sent: the server answers 500
            LATENCY.labels(scope["method"], operation).observe(elapsed)
            logger.info("%s %s %s %.1fms", scope["method"], logged_path(scope["path"]), status, elapsed * 1000)
            request_id_var.reset(token)

    def _tidy(self, status: int, headers, scope) -> list:
        headers = list(headers)
        if 300 <= status < 400:
            host = dict(scope["headers"]).get(b"host")
            headers = [(k, _relative(v, host) if k.lower() == b"location" else v) for k, v in headers]
        allow = self.allowed_methods(scope["path"]) if status == 405 and self.allowed_methods else None
        if allow:
            headers = [(k, v) for k, v in headers if k.lower() != b"allow"] + [(b"allow", allow.encode())]
        return headers


def logged_path(path: str) -> str:
    """The path as it travels in a URL: percent-encoded, so %0A or %00 in it is logged as just that."""
    return quote(path, safe="/:@!$&'()*+,;=~", errors="backslashreplace")


def _operation(scope) -> str:
    """The operationId the request was routed to; never the raw path (unbounded label values)."""
    routing = (scope.get("extensions") or {}).get("connexion_routing") or {}
    return routing.get("operation_id") or "unrouted"


class ListedOriginsCORS(CORSMiddleware):
    """Starlette's CORS for CORS_ALLOW_ORIGINS only. A request from any other origin reaches the app untouched
    and its answer carries no CORS header at all (Starlette would answer its preflight 400 with the allowed
    methods and headers)."""

    METHODS = ("GET", "POST", "PUT", "DELETE")
    HEADERS = ("Authentication-Key", "Authentication-Secret", "Content-Type", "X-Request-ID")

    def __init__(self, app, origins: list[str]):
        super().__init__(app, allow_origins=origins, allow_methods=self.METHODS, allow_headers=self.HEADERS,
                         expose_headers=("X-Request-ID", "Retry-After", "Location"), max_age=600)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            origin = dict(scope["headers"]).get(b"origin")
            if origin is None or not self.is_allowed_origin(origin.decode("latin-1")):
                return await self.app(scope, receive, send)
        await super().__call__(scope, receive, send)
