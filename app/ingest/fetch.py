"""Fetching a list of URLs for URL import: bodies streamed to temp files with their MD5, under a policy.

`fetch_many(items, options, directory)` is synchronous (a job's thread calls it); inside, one asyncio loop on a
thread of its own fetches concurrently with httpx, and results come back as they finish:

- a global and a per-host limit on requests in flight (per host name, per hop of a redirect);
- connect and read timeouts, and a limit on one try's whole time; retries with exponential backoff on timeouts, connection errors, 429 (a small
  Retry-After is honoured, capped at RETRY_AFTER_CAP_SECONDS) and 5xx; none on other 4xx;
- redirects followed by hand, up to a limit, each hop's URL checked again;
- a body larger than max_bytes is refused by its Content-Length before it is read, or once max_bytes + 1 bytes
  have arrived (decoded bytes, when a server compresses despite `Accept-Encoding: identity`); bodies go to
  files, never whole into memory;
- the SSRF guard: http and https only; the host is resolved (getaddrinfo, off the loop) and refused when ANY of
  its addresses is loopback, private, link-local, carrier-grade NAT, multicast, reserved, unspecified, an
  IPv4 address embedded in IPv6 (mapped, 6to4, NAT64, Teredo) that is one of those, or a cloud metadata address.
  The check runs inside the connection's network backend, which then connects to the very address it checked
  (no second lookup, so no DNS rebinding between check and connect); TLS still verifies the host name. Every
  new connection, so every redirect to another host, goes through it. `allow_private_networks` lets loopback,
  private, link-local and carrier-grade NAT addresses through (never metadata, multicast, reserved, unspecified).
"""
from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import ipaddress
import queue
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import httpcore
import httpx

import app

try:
    import sniffio  # noqa: F401
except ImportError:
    # httpcore imports sniffio again for every lock it makes (several per request); while it is not installed
    # each failed import searches sys.path (~0.2 ms). Recorded as absent, the import fails at once.
    sys.modules.setdefault("sniffio", None)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
USER_AGENT = f"LabelStore/{app.__version__} (+url import)"
RETRY_AFTER_CAP_SECONDS = 10.0  # a longer Retry-After is waited this long (then the try counts like any other)
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHECK_STOP_EVERY = 0.1  # seconds: should_stop is asked at most this often
_HINT = " (set URL_IMPORT_ALLOW_PRIVATE_NETWORKS to allow)"
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass
class FetchOptions:
    concurrency: int
    per_host: int
    connect_timeout: float
    read_timeout: float
    max_redirects: int
    max_bytes: int
    retries: int  # tries after the first: a URL is tried at most retries + 1 times
    backoff_seconds: float  # before retry n (1, 2, ...): backoff_seconds * 2 ** (n - 1)
    allow_private_networks: bool = False
    # One try's whole time (connect, redirects, every byte): a server dripping its answer just under the read
    # timeout would otherwise hold a fetch slot for as long as it likes.
    try_timeout: float = 120.0
    user_agent: str = USER_AGENT
    # What the guard says of an address: None to let it through, else what it is ("a loopback address ...").
    # Unset: address_refusal under allow_private_networks. Tests inject one to treat the loopback server as public.
    address_check: Callable[[IPAddress], str | None] | None = None
    ssl_context: ssl.SSLContext | None = None  # unset: httpx's (certifi's CAs); tests trust their own CA

    def refusal(self, ip: IPAddress) -> str | None:
        if self.address_check is not None:
            return self.address_check(ip)
        return address_refusal(ip, allow_private=self.allow_private_networks)


def options_from(settings) -> FetchOptions:
    return FetchOptions(
        concurrency=settings.url_import_concurrency, per_host=settings.url_import_per_host,
        connect_timeout=settings.url_import_connect_timeout_seconds,
        read_timeout=settings.url_import_read_timeout_seconds, max_redirects=settings.url_import_max_redirects,
        max_bytes=settings.max_image_bytes, retries=settings.url_import_retries,
        backoff_seconds=settings.url_import_backoff_seconds,
        allow_private_networks=settings.url_import_allow_private_networks,
        try_timeout=settings.url_import_try_timeout_seconds)


@dataclass
class Fetched:
    url: str  # as given
    final_url: str | None  # after redirects
    path: Path | None  # temp file holding the body (the caller deletes it); None when not fetched
    size: int | None
    md5: str | None  # hex, computed while the body streamed to the file
    http_status: int | None  # the last status seen
    outcome: str | None  # None: fetched; "rejected": refused by policy; "failed": could not be fetched
    reason: str | None  # in words, for the report


def address_refusal(ip: IPAddress, *, allow_private: bool = False) -> str | None:
    """None when `ip` may be fetched from; else what it is, e.g. "a loopback address (set ... to allow)"."""
    kind, allowable = _kind(ip)
    if kind is None or (allowable and allow_private):
        return None
    return kind + (_HINT if allowable else "")


def _kind(ip: IPAddress) -> tuple[str | None, bool]:
    """(what the address is, whether allow_private_networks lets it through); (None, _) for a public one."""
    if ip in _METADATA:
        return "a cloud metadata address", False
    if ip.version == 6:
        embedded = (ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
                    or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None))
        if embedded is not None:
            kind, allowable = _kind(embedded)
            return (f"an IPv6 form of {embedded}, {kind}" if kind else None), allowable
    if ip.is_unspecified:
        return "the unspecified address", False
    if ip.is_loopback:
        return "a loopback address", True
    if ip.is_link_local:
        return "a link-local address", True
    if ip.is_multicast:
        return "a multicast address", False
    if ip.is_reserved:
        return "a reserved address", False
    if ip.version == 4 and ip in _CGNAT:
        return "a carrier-grade NAT address", True
    if ip.is_private:
        return "a private address", True
    if not ip.is_global:
        return "not a public address", False
    return None, False


class _Outcome(Exception):
    """Ends a fetch with this outcome ("rejected" or "failed") and reason; raised from deep inside httpx."""

    def __init__(self, outcome: str, reason: str):
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses it by the guard, and connects to an address it checked."""

    def __init__(self, options: FetchOptions):
        self._options = options
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = await _resolve(host, port, self._options.connect_timeout)
        _refuse_any(host, addresses, self._options)
        error = None
        for ip in addresses:  # each was checked; the first that answers is used
            try:
                return await self._inner.connect_tcp(str(ip), port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise _Outcome("rejected", "refused: unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    try:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM), timeout)
    except asyncio.TimeoutError:
        raise _Outcome("failed", f"could not resolve {host}: timed out") from None
    except socket.gaierror as exc:
        raise _Outcome("failed", f"could not resolve {host}: {exc.strerror}") from None
    except (UnicodeError, ValueError):  # a label over 63 characters, a name IDNA refuses
        raise _Outcome("rejected", f"not a valid URL: {host} is not a host name") from None
    addresses = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def _refuse_any(host: str, addresses: list[IPAddress], options: FetchOptions) -> None:
    """_Outcome("rejected", why) when the guard refuses any of the host's addresses."""
    for ip in addresses:
        if refusal := options.refusal(ip):
            literal = str(ip) == host.strip("[]")
            raise _Outcome("rejected", f"refused: {ip} is {refusal}" if literal
                           else f"refused: {host} resolves to {ip}, {refusal}")
@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's (certifi's CAs), made once: loading the CA bundle costs ~30 ms, once per fetch_many otherwise."""
    return httpx.create_ssl_context(trust_env=False)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool whose connections go through the guard. httpx (pinned) keeps its
    pool in `_pool` and gives no public way to choose the network backend; the refusal tests fail if this ever
    stops taking effect."""

    def __init__(self, options: FetchOptions):
        limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
        super().__init__(trust_env=False, limits=limits)
        assert isinstance(self._pool, httpcore.AsyncConnectionPool)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=options.ssl_context or _default_ssl_context(),
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=_GuardedBackend(options))


@dataclass
class _Retry:
    """A try that may succeed another time: what happened, and what the server asked us to wait."""
    what: str
    detail: str | None = None
    status: int | None = None
    final_url: str | None = None
    retry_after: float | None = None


class _Fetcher:
    def __init__(self, options: FetchOptions, directory: Path):
        self.options, self.directory = options, Path(directory)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self.client = httpx.AsyncClient(
            transport=_GuardedTransport(options), trust_env=False, follow_redirects=False,
            headers={"User-Agent": options.user_agent, "Accept-Encoding": "identity"},
            timeout=httpx.Timeout(connect=options.connect_timeout, read=options.read_timeout,
                                  write=options.read_timeout, pool=options.connect_timeout + options.read_timeout))

    @asynccontextmanager
    async def _host_slot(self, host: str):
        slot = self._hosts.setdefault(host, asyncio.Semaphore(self.options.per_host))
        async with slot:
            yield

    async def fetch(self, url: str) -> Fetched:
        tries = self.options.retries + 1
        for attempt in range(1, tries + 1):
            try:
                result = await asyncio.wait_for(self._try(url), self.options.try_timeout)
            except asyncio.TimeoutError:  # the try's body file, host slot and connection went with its cancelling
                result = _Retry("took too long", f"more than {self.options.try_timeout:g} s for one try")
            if isinstance(result, Fetched):
                return result
            if attempt < tries:
                delay = self.options.backoff_seconds * 2 ** (attempt - 1)
                if result.retry_after is not None:
                    delay = max(delay, min(result.retry_after, RETRY_AFTER_CAP_SECONDS))
                await asyncio.sleep(delay)
        reason = result.what + (f" after {tries} tries" if tries > 1 else "") + (
            f" ({result.detail})" if result.detail else "")
        return Fetched(url, result.final_url, None, None, None, result.status, "failed", reason)

    async def _try(self, url: str) -> Fetched | _Retry:
        current, status = url, None

        def ended(outcome: str, reason: str) -> Fetched:
            if current != url and outcome == "rejected":
                reason += f" (redirected to {current})"
            return Fetched(url, current, None, None, None, status, outcome, reason)

        for _ in range(self.options.max_redirects + 1):
            try:
                target = _http_url(current)
            except _Outcome as exc:
                return ended(exc.outcome, exc.reason)
            try:
                async with self._host_slot(target.host), self.client.stream("GET", target) as response:
                    status = response.status_code
                    location = response.headers.get("location")
                    if status in REDIRECTS and location:
                        try:
                            current = str(target.join(location))
                        except (httpx.InvalidURL, ValueError) as exc:
                            return ended("failed", f"HTTP {status} to an invalid Location: {exc}")
                        continue
                    if status == 429 or status >= 500:
                        return _Retry(f"HTTP {status}", status=status, final_url=current,
                                      retry_after=_retry_after(response.headers.get("retry-after")))
                    if not 200 <= status < 300:
                        return ended("failed", f"HTTP {status}")
                    return await self._save(url, current, response)
            except _Outcome as exc:
                return ended(exc.outcome, exc.reason)
            except httpx.ConnectTimeout:
                return _Retry("connect timed out", f"connect timeout {self.options.connect_timeout:g} s",
                              status, current)
            except httpx.TimeoutException:
                return _Retry("timed out", f"read timeout {self.options.read_timeout:g} s", status, current)
            except httpx.TransportError as exc:
                if _caused_by(exc, ssl.SSLCertVerificationError):  # another try would not do better
                    return ended("failed", f"TLS: {_caused_by(exc, ssl.SSLCertVerificationError).verify_message}")
                return _Retry("connection failed", str(exc) or type(exc).__name__, status, current)
        return ended("failed", f"too many redirects (more than {self.options.max_redirects})")

    async def _save(self, url: str, final_url: str, response: httpx.Response) -> Fetched:
        limit, status = self.options.max_bytes, response.status_code
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return Fetched(url, final_url, None, None, None, status, "rejected",
                           f"too large: Content-Length {int(declared):,} is more than {limit:,} bytes")
        fd, name = tempfile.mkstemp(prefix="fetch-", suffix=".part", dir=self.directory)
        path, kept = Path(name), False
        try:
            digest, size = hashlib.md5(), 0
            # Asked for identity, some servers still compress: such a body is decoded (gzip, deflate, br), and
            # the limit counts the decoded bytes, so a small bomb cannot expand past it.
            encoded = response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")
            with open(fd, "wb") as out:
                async for chunk in (response.aiter_bytes() if encoded else response.aiter_raw()):
                    size += len(chunk)
                    if size > limit:
                        return Fetched(url, final_url, None, None, None, status, "rejected",
                                       f"too large: more than {limit:,} bytes")
                    out.write(chunk)
                    digest.update(chunk)
            kept = True
            return Fetched(url, final_url, path, size, digest.hexdigest(), status, None, None)
        except OSError as exc:  # the file: httpx raises its own errors for the network
            return Fetched(url, final_url, None, None, None, status, "failed", f"could not store the body: {exc}")
        except httpx.DecodingError as exc:
            return Fetched(url, final_url, None, None, None, status, "rejected",
                           f"a body that does not decode as its Content-Encoding says: {exc}")
        finally:
            if not kept:
                path.unlink(missing_ok=True)


def _http_url(url: str) -> httpx.URL:
    """The URL parsed, if it is an http or https URL with a host; else _Outcome("rejected", why)."""
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise _Outcome("rejected", f"not a valid URL: {exc}") from None
    if not target.scheme:
        raise _Outcome("rejected", "not a valid URL: no scheme")
    if target.scheme not in ("http", "https"):
        raise _Outcome("rejected", f"refused: scheme {target.scheme} (http and https only)")
    if not target.host:
        raise _Outcome("rejected", "not a valid URL: no host")
    return target


def _caused_by(error: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    while error is not None and not isinstance(error, kind):
        error = error.__cause__ or error.__context__
    return error


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    return None


class _Crash:
    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


async def _run(items: Iterable[tuple[int, str]], options: FetchOptions, directory: Path, out: queue.Queue,
               stop: threading.Event, loops: list) -> None:
    fetcher = _Fetcher(options, directory)
    in_flight = asyncio.Semaphore(options.concurrency)
    untaken = asyncio.Semaphore(2 * options.concurrency)  # finished, not yet taken by the caller: released there
    loops.append((asyncio.get_running_loop(), untaken))
    tasks: set[asyncio.Task] = set()

    async def one(key: int, url: str) -> None:
        try:
            out.put((key, await fetcher.fetch(url)))
        except Exception as exc:  # a bug: handed to the caller
            out.put(_Crash(exc))
        finally:
            in_flight.release()

    async def produce() -> None:
        for key, url in items:
            await untaken.acquire()
            await in_flight.acquire()
            task = asyncio.create_task(one(key, url))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.wait(set(tasks))

    async with fetcher.client:
        producer = asyncio.create_task(produce())
        while not producer.done():
            await asyncio.wait({producer}, timeout=0.05)
            if stop.is_set():
                for task in (producer, *tasks):
                    task.cancel()
                await asyncio.gather(producer, *tasks, return_exceptions=True)
        if not producer.cancelled():
            producer.result()  # a bug surfaces in the caller


def fetch_many(items: Iterable[tuple[int, str]], options: FetchOptions, directory: Path, *,
               should_stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, Fetched]]:
    """Fetch each (key, url) and yield (key, Fetched) as each finishes (not in the given order), every key once.

    `items` is read on the fetching thread (pass a list, or an iterable safe to read from another thread). A
    fetched body is a file in `directory`; once yielded, the caller owns it (and deletes it). Failed and refused
    fetches leave no file. At most 2 x concurrency results wait unread, so a slow caller slows the fetching
    rather than filling the disk. `should_stop` is asked in the caller's thread, between results and every
    0.1 s while waiting (never more often): once it says True, fetches in flight are abandoned (their partial
    files deleted), results already finished are still yielded, and the iterator ends; keys not yielded were
    not fetched. Leaving the loop early (break, an exception) stops too, and deletes the files not yet yielded.
    """
    out: queue.Queue = queue.Queue()
    stop = threading.Event()
    loops: list = []  # the fetching thread's loop and its `untaken` semaphore, once running

    def run() -> None:
        try:
            asyncio.run(_run(items, options, directory, out, stop, loops))
        except BaseException as exc:
            out.put(_Crash(exc))
        finally:
            out.put(_DONE)

    def taken() -> None:
        loop, untaken = loops[0]
        with suppress(RuntimeError):  # the loop has ended: nothing waits any more
            loop.call_soon_threadsafe(untaken.release)

    thread = threading.Thread(target=run, name="url-fetch", daemon=True)
    thread.start()
    checked = 0.0
    try:
        while True:
            if time.monotonic() - checked >= _CHECK_STOP_EVERY:
                checked = time.monotonic()
                if should_stop():
                    stop.set()
                    thread.join()
                    while (item := out.get()) is not _DONE:
                        if not isinstance(item, _Crash):
                            yield item
                    return
            try:
                item = out.get(timeout=_CHECK_STOP_EVERY)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            if isinstance(item, _Crash):
                raise item.error
            taken()
            yield item
    finally:
        stop.set()
        thread.join()
        while not out.empty():
            item = out.get()
            if isinstance(item, tuple) and item[1].path is not None:
                item[1].path.unlink(missing_ok=True)


# --- one URL, one request: what webhooks (app.webhooks) need from the same guard ---------------------------------

def check_url(url: str, options: FetchOptions) -> str | None:
    """None when the guard lets `url` through now (http or https, and every address its host resolves to may be
    reached); else why not, in words. Synchronous: runs its own event loop (call it where none runs)."""
    async def check() -> None:
        target = _http_url(url)
        port = target.port or (443 if target.scheme == "https" else 80)
        _refuse_any(target.host, await _resolve(target.host, port, options.connect_timeout), options)

    try:
        asyncio.run(check())
    except _Outcome as exc:
        return exc.reason
    return None


@dataclass
class Posted:
    status: int | None  # the answer's status; None when no answer came
    head: bytes  # the first bytes of the answer's body
    error: str | None  # why no answer came: refused by the guard, could not connect, timed out


def post_once(url: str, body: bytes, headers: dict[str, str], options: FetchOptions, *, timeout: float,
              keep: int = 1024) -> Posted:
    """POST `body` to `url` once through the guard (each connection checked as for fetches), following no
    redirect, all of it within `timeout` seconds; keeps the first `keep` bytes of the answer. Synchronous: runs
    its own event loop (call it where none runs)."""
    return asyncio.run(_post_once(url, body, headers, options, timeout, keep))


async def _post_once(url: str, body: bytes, headers: dict[str, str], options: FetchOptions, timeout: float,
                     keep: int) -> Posted:
    client = httpx.AsyncClient(transport=_GuardedTransport(replace(options, concurrency=1)), trust_env=False,
                               follow_redirects=False, timeout=httpx.Timeout(timeout),
                               headers={"User-Agent": options.user_agent, "Accept-Encoding": "identity"})

    async def send() -> Posted:
        async with client.stream("POST", _http_url(url), content=body, headers=headers) as response:
            head = b""
            async for chunk in response.aiter_raw():
                head += chunk
                if len(head) >= keep:
                    break
            return Posted(response.status_code, head[:keep], None)

    async with client:
        try:
            return await asyncio.wait_for(send(), timeout)
        except _Outcome as exc:
            return Posted(None, b"", exc.reason)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return Posted(None, b"", f"timed out: no answer within {timeout:g} s")
        except httpx.TransportError as exc:
            if verify := _caused_by(exc, ssl.SSLCertVerificationError):
                return Posted(None, b"", f"TLS: {verify.verify_message}")
            return Posted(None, b"", f"connection failed: {str(exc) or type(exc).__name__}")
