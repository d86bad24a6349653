"""The URL fetcher of URL import (app/ingest/fetch.py) against a loopback server (tests/url_server.py): each
outcome with its reason, the limits it keeps, and the SSRF guard refusing by default."""
from __future__ import annotations

import gzip
import hashlib
import ipaddress
import ssl
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import trustme

from app import __version__
from app.embedded.ports import free_port
from app.ingest.fetch import FetchOptions, address_refusal, fetch_many, options_from
from app.settings import load
from tests import images
from tests.https_standin import serve_https, stop
from tests.url_server import UrlServer

ALLOW = " (set URL_IMPORT_ALLOW_PRIVATE_NETWORKS to allow)"
PICTURE = images.png(seed=1, width=40, height=30)
OPTIONS = FetchOptions(concurrency=8, per_host=4, connect_timeout=1.0, read_timeout=0.3, max_redirects=3,
                       max_bytes=100_000, retries=1, backoff_seconds=0.05, allow_private_networks=True)


@pytest.fixture
def server():
    with UrlServer() as served:
        yield served


def fetch(urls: list[str], directory: Path, options: FetchOptions = OPTIONS, **kwargs) -> list:
    """The Fetched of each URL, in the given order."""
    results = dict(fetch_many(list(enumerate(urls)), options, directory, **kwargs))
    assert sorted(results) == list(range(len(urls)))  # every URL answered once
    return [results[key] for key in range(len(urls))]


def leftovers(directory: Path, *keep) -> list[Path]:
    return sorted(set(directory.iterdir()) - {f.path for f in keep})


def test_an_image_is_streamed_to_a_file_with_its_md5(server, tmp_path):
    url = server.add("/a.png", PICTURE, content_type="image/png")
    [got] = fetch([url], tmp_path)
    assert (got.outcome, got.reason, got.http_status, got.url, got.final_url) == (None, None, 200, url, url)
    assert got.path.parent == tmp_path and got.path.read_bytes() == PICTURE
    assert (got.size, got.md5) == (len(PICTURE), hashlib.md5(PICTURE).hexdigest())
    assert server.user_agents() == {f"LabelStore/{__version__} (+url import)"}


def test_the_same_bytes_under_two_urls_have_the_same_md5_and_a_non_image_is_fetched_as_is(server, tmp_path):
    one, two, text = fetch([server.add("/one.png", PICTURE), server.add("/two.png", PICTURE),
                            server.add("/notes.txt", b"not an image", content_type="text/plain")], tmp_path)
    assert one.md5 == two.md5 == hashlib.md5(PICTURE).hexdigest() and one.path != two.path
    assert (text.outcome, text.path.read_bytes()) == (None, b"not an image")  # judging the bytes is the pipeline's


def test_a_404_fails_at_once_and_a_500_is_retried(server, tmp_path):
    missing, flaky, broken = fetch([server.url("/missing"), server.add("/flaky.png", PICTURE, fail_first=1),
                                    server.add("/broken", PICTURE, fail_first=99)], tmp_path)
    assert (missing.outcome, missing.reason, missing.http_status, missing.path) == ("failed", "HTTP 404", 404, None)
    assert server.hits["/missing"] == 1
    assert (flaky.outcome, flaky.http_status, flaky.path.read_bytes()) == (None, 200, PICTURE)
    assert server.hits["/flaky.png"] == 2
    assert (broken.outcome, broken.reason, broken.http_status) == ("failed", "HTTP 500 after 2 tries", 500)
    assert server.hits["/broken"] == 2
    assert leftovers(tmp_path, flaky) == []


def test_429_waits_for_its_retry_after(server, tmp_path):
    url = server.add("/busy.png", PICTURE, fail_first=1, fail_status=429, retry_after=1)
    started = time.monotonic()
    [got] = fetch([url], tmp_path)
    assert got.outcome is None and got.md5 == hashlib.md5(PICTURE).hexdigest()
    assert server.hits["/busy.png"] == 2
    starts = [seen.start for seen in server.requests]
    assert starts[1] - starts[0] >= 0.95 and time.monotonic() - started < 5  # not the 0.05 s backoff


def test_a_slow_server_times_out_after_each_try(server, tmp_path):
    options = replace(OPTIONS, retries=2)
    [got] = fetch([server.add("/slow.png", PICTURE, delay=1.5)], tmp_path, options)
    assert (got.outcome, got.reason) == ("failed", "timed out after 3 tries (read timeout 0.3 s)")
    assert server.hits["/slow.png"] == 3
    assert leftovers(tmp_path) == []


def test_a_refused_connection_and_an_unknown_host_fail(tmp_path):
    refused, unknown = fetch([f"http://127.0.0.1:{free_port()}/x.png", "http://no-such-host.invalid/x.png"],
                             tmp_path, replace(OPTIONS, retries=0))
    assert refused.outcome == "failed" and refused.reason.startswith("connection failed (")
    assert unknown.outcome == "failed" and unknown.reason.startswith("could not resolve no-such-host.invalid")


def test_redirects_are_followed_up_to_the_limit(server, tmp_path):
    target = server.add("/a.png", PICTURE)
    short, long = fetch([server.redirect_chain("/ok", 3, "/a.png"), server.redirect_chain("/long", 4, "/a.png")],
                        tmp_path)
    assert (short.outcome, short.final_url, short.path.read_bytes()) == (None, target, PICTURE)
    assert (long.outcome, long.reason, long.http_status) == ("failed", "too many redirects (more than 3)", 302)
    assert server.hits["/long/4"] == 1 and server.hits["/a.png"] == 1


def test_a_body_over_the_limit_is_refused_by_its_length_or_while_it_streams(server, tmp_path):
    body = b"x" * 300_000
    declared, streamed, exact = fetch([server.add("/big", body), server.add("/big-unsized", body, content_length=False),
                                       server.add("/exact", body[:100_000], content_length=False)], tmp_path)
    assert (declared.outcome, declared.reason) == ("rejected", "too large: Content-Length 300,000 is more than "
                                                               "100,000 bytes")
    assert (streamed.outcome, streamed.reason) == ("rejected", "too large: more than 100,000 bytes")
    assert (exact.outcome, exact.size) == (None, 100_000)
    assert leftovers(tmp_path, exact) == []


def test_other_schemes_and_non_urls_are_refused(server, tmp_path):
    ftp, file, bare, to_ftp = fetch(["ftp://example.org/a.png", "file:///etc/passwd", "a.png",
                                     server.redirect("/to-ftp", "ftp://example.org/a.png")], tmp_path)
    assert (ftp.outcome, ftp.reason) == ("rejected", "refused: scheme ftp (http and https only)")
    assert (file.outcome, file.reason) == ("rejected", "refused: scheme file (http and https only)")
    assert (bare.outcome, bare.reason) == ("rejected", "not a valid URL: no scheme")
    assert (to_ftp.outcome, to_ftp.reason) == (
        "rejected", "refused: scheme ftp (http and https only) (redirected to ftp://example.org/a.png)")


def test_the_guard_refuses_private_addresses_by_default(server, tmp_path):
    url = server.add("/a.png", PICTURE)
    guarded = replace(OPTIONS, allow_private_networks=False)
    results = fetch([url, f"http://localhost:{server.port}/a.png", f"http://[::1]:{server.port}/a.png",
                     "http://10.0.0.1/a.png", "http://169.254.169.254/latest/meta-data/"], tmp_path, guarded)
    assert [(r.outcome, r.reason) for r in results] == [
        ("rejected", "refused: 127.0.0.1 is a loopback address" + ALLOW),
        ("rejected", "refused: localhost resolves to 127.0.0.1, a loopback address" + ALLOW),
        ("rejected", "refused: ::1 is a loopback address" + ALLOW),
        ("rejected", "refused: 10.0.0.1 is a private address" + ALLOW),
        ("rejected", "refused: 169.254.169.254 is a cloud metadata address")]
    assert server.hits["/a.png"] == 0 and leftovers(tmp_path) == []


def test_metadata_addresses_are_refused_even_when_private_networks_are_allowed(server, tmp_path):
    metadata = "http://169.254.169.254/latest/meta-data/"
    [got] = fetch([server.redirect("/meta", metadata)], tmp_path)
    assert (got.outcome, got.http_status, got.final_url) == ("rejected", 302, metadata)
    assert got.reason == f"refused: 169.254.169.254 is a cloud metadata address (redirected to {metadata})"


def test_the_guard_checks_again_after_a_redirect_from_a_public_host(server, tmp_path):
    """The loopback server stands for a public host (127.0.0.1 only); every other address is judged for real."""
    loopback = ipaddress.ip_address("127.0.0.1")
    public_here = replace(OPTIONS, allow_private_networks=False,
                          address_check=lambda ip: None if ip == loopback else address_refusal(ip))
    server.add("/a.png", PICTURE)
    good, to_private, to_v6_loopback = fetch([
        server.redirect("/fine", "/a.png"), server.redirect("/private", "http://10.0.0.1/a.png"),
        server.redirect("/v6", f"http://[::1]:{server.port}/a.png")], tmp_path, public_here)
    assert good.outcome is None and good.path.read_bytes() == PICTURE
    assert (to_private.outcome, to_private.reason) == (
        "rejected", "refused: 10.0.0.1 is a private address" + ALLOW + " (redirected to http://10.0.0.1/a.png)")
    assert to_v6_loopback.outcome == "rejected" and to_v6_loopback.reason.startswith(
        "refused: ::1 is a loopback address")
    assert server.hits["/a.png"] == 1


def test_https_verifies_the_host_name_while_connecting_to_the_checked_address(tmp_path):
    ca = trustme.CA()
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server_side)
    client_side = ssl.create_default_context()
    ca.configure_trust(client_side)

    class Picture(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PICTURE)))
            self.end_headers()
            self.wfile.write(PICTURE)

        def log_message(self, *args):
            pass

    server = serve_https(server_side, Picture, "url-fetch-tls")
    try:
        port = server.server_address[1]
        by_name, by_address = fetch([f"https://localhost:{port}/a.png", f"https://127.0.0.1:{port}/a.png"], tmp_path,
                                    replace(OPTIONS, ssl_context=client_side))
    finally:
        stop(server)
    assert (by_name.outcome, by_name.path.read_bytes()) == (None, PICTURE)
    assert (by_address.outcome, by_address.reason) == (  # the certificate names localhost only
        "failed", "TLS: IP address mismatch, certificate is not valid for '127.0.0.1'.")


@pytest.mark.parametrize("address, expected", [
    ("8.8.8.8", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None),
    ("127.0.0.2", "a loopback address" + ALLOW), ("192.168.1.10", "a private address" + ALLOW),
    ("172.16.0.1", "a private address" + ALLOW), ("fd12::1", "a private address" + ALLOW),
    ("fe80::1", "a link-local address" + ALLOW), ("169.254.1.1", "a link-local address" + ALLOW),
    ("100.64.0.1", "a carrier-grade NAT address" + ALLOW), ("100.100.100.200", "a cloud metadata address"),
    ("fd00:ec2::254", "a cloud metadata address"), ("224.0.0.1", "a multicast address"),
    ("0.0.0.0", "the unspecified address"), ("::", "the unspecified address"), ("240.0.0.1", "a reserved address"),
    ("::ffff:10.0.0.1", "an IPv6 form of 10.0.0.1, a private address" + ALLOW),
    ("::ffff:169.254.169.254", "an IPv6 form of 169.254.169.254, a cloud metadata address"),
    ("64:ff9b::7f00:1", "an IPv6 form of 127.0.0.1, a loopback address" + ALLOW),
    ("2002:a9fe:a9fe::1", "an IPv6 form of 169.254.169.254, a cloud metadata address"),
])
def test_address_classification(address, expected):
    assert address_refusal(ipaddress.ip_address(address)) == expected
    allowed = address_refusal(ipaddress.ip_address(address), allow_private=True)
    assert allowed == (None if expected is None or expected.endswith(ALLOW) else expected)


def test_concurrency_stays_within_the_global_and_per_host_limits(server, tmp_path):
    for i in range(24):
        server.add(f"/slow/{i}.png", PICTURE, delay=0.15)
    urls = [f"http://{host}:{server.port}/slow/{i}.png" for i in range(24) for host in ("127.0.0.1", "localhost")
            if (i % 2 == 0) == (host == "localhost")]
    options = replace(OPTIONS, concurrency=5, per_host=3, read_timeout=2.0)
    results = fetch(urls, tmp_path, options)
    assert all(r.outcome is None for r in results)
    assert server.peak("/slow/", host="127.0.0.1") == 3 and server.peak("/slow/", host="localhost") == 3
    assert server.peak("/slow/") == 5


def test_should_stop_abandons_fetches_in_flight_and_returns_what_finished(server, tmp_path):
    server.add("/fast.png", PICTURE)
    server.add("/slow.png", PICTURE, delay=1.5)
    items = [(0, server.url("/fast.png"))] + [(i, server.url("/slow.png")) for i in range(1, 20)]
    options = replace(OPTIONS, read_timeout=5.0)
    started, seen = time.monotonic(), []
    for key, got in fetch_many(items, options, tmp_path, should_stop=lambda: bool(seen)):
        seen.append((key, got))
    assert [key for key, _ in seen] == [0] and time.monotonic() - started < 1.2
    assert leftovers(tmp_path, seen[0][1]) == []


def test_leaving_early_deletes_the_files_not_yet_taken(server, tmp_path):
    urls = server.add_images(30)
    options = replace(OPTIONS, concurrency=2)
    for _, first in fetch_many(list(enumerate(urls)), options, tmp_path):
        time.sleep(0.3)  # others finish meanwhile
        break
    assert leftovers(tmp_path, first) == []
    assert server.hits.total() < 30  # at most 2 x concurrency waited unread: the rest was never fetched


def test_a_compressed_answer_is_decoded_and_the_limit_counts_decoded_bytes(server, tmp_path):
    """Asked for identity, a server gzips anyway: the image is the decoded bytes; a bomb stops at the limit."""
    gzipped = server.add("/gzipped.png", gzip.compress(PICTURE), headers={"Content-Encoding": "gzip"})
    bomb = server.add("/bomb.png", gzip.compress(b"\0" * 1_000_000), headers={"Content-Encoding": "gzip"})
    broken = server.add("/broken.png", b"not gzip at all", headers={"Content-Encoding": "gzip"})
    got, exploded, garbled = fetch([gzipped, bomb, broken], tmp_path)
    assert got.outcome is None and got.md5 == hashlib.md5(PICTURE).hexdigest() and got.path.read_bytes() == PICTURE
    assert (exploded.outcome, exploded.reason) == ("rejected", "too large: more than 100,000 bytes")
    assert garbled.outcome == "rejected" and "does not decode as its Content-Encoding says" in garbled.reason
    assert {p.name for p in tmp_path.iterdir()} == {got.path.name}


def test_a_server_dripping_its_answer_is_cut_off_at_the_try_limit(server, tmp_path):
    """Each 64-byte piece comes well within the read timeout, but the whole body would take 10 s."""
    options = replace(OPTIONS, read_timeout=0.5, try_timeout=0.6)
    began = time.monotonic()
    [got] = fetch([server.add("/drip.png", PICTURE[:64] * 100, trickle=0.1)], tmp_path, options)
    assert (got.outcome, got.reason) == ("failed", "took too long after 2 tries (more than 0.6 s for one try)")
    assert time.monotonic() - began < 3 and server.hits["/drip.png"] == 2
    assert list(tmp_path.iterdir()) == []  # the partial body went with the cancelled try


def test_options_come_from_settings():
    settings = load(url_import_concurrency=7, url_import_allow_private_networks=True, max_image_bytes=1234)
    options = options_from(settings)
    assert (options.concurrency, options.per_host, options.connect_timeout, options.read_timeout) == (7, 8, 5, 20)
    assert (options.max_redirects, options.retries, options.backoff_seconds, options.try_timeout) == (5, 3, 0.5, 120)
    assert (options.max_bytes, options.allow_private_networks) == (1234, True)
    assert options.user_agent == f"LabelStore/{__version__} (+url import)"
