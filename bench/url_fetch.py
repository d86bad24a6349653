"""URL fetching: images/second of app.ingest.fetch.fetch_many against a floor of plain httpx, same run.

N distinct small PNGs (64x48) served by tests/url_server.py in a child process on loopback (so the server does
not share the GIL with the client measured), fetched by:
  floor  one httpx.AsyncClient, the same URLs with the same concurrency (what reaches one host: URL import's
         per-host limit), each body read into memory, nothing else; run before and after ours, the mean taken;
  ours   fetch_many with the default settings (URL_IMPORT_CONCURRENCY, URL_IMPORT_PER_HOST), private networks
         allowed: the SSRF guard's resolution, each body streamed to a temp file with its MD5, the results handed
         to this thread one by one (which deletes each file, as the import would after using it).
Prints images/second and the ratio ours/floor (the URL import as a whole aims at >= 0.6 of the floor).
Run: .venv/bin/python bench/url_fetch.py [--count 2000]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from app.ingest.fetch import fetch_many, options_from  # noqa: E402
from app.settings import load  # noqa: E402
from tests.url_server import image_path, spawned  # noqa: E402


async def _floor(urls: list[str], concurrency: int, then=None) -> None:
    """Each URL fetched, its body read into memory; with `then`, `await then(n, body)` once the request's slot
    is free (bench/url_import.py's ceiling stores each body so)."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(n: int, url: str) -> None:
            async with limit:
                response = await client.get(url)
                assert response.status_code == 200 and response.content, url
            if then is not None:
                await then(n, response.content)

        await asyncio.gather(*(one(n, url) for n, url in enumerate(urls)))


def floor(urls: list[str], concurrency: int, then=None) -> float:
    started = time.perf_counter()
    asyncio.run(_floor(urls, concurrency, then))
    return time.perf_counter() - started


def ours(urls: list[str], options) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        for _, got in fetch_many(list(enumerate(urls)), options, Path(scratch)):
            assert got.outcome is None, got
            got.path.unlink()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    count = parser.parse_args().count
    options = options_from(load(url_import_allow_private_networks=True))
    concurrency = min(options.concurrency, options.per_host)
    with spawned(images=count) as base_url:
        urls = [base_url + image_path(i) for i in range(count)]
        floor(urls[:50], concurrency)  # warm up both sides (imports, the server's threads)
        ours(urls[:50], options)
        before = floor(urls, concurrency)
        mine = ours(urls, options)
        after = floor(urls, concurrency)
    base = (before + after) / 2
    print(f"{count} images from a loopback server, {concurrency} at a time on one host")
    print(f"  floor (httpx AsyncClient, bodies in memory): {count / base:8.0f} images/s  "
          f"(before {count / before:.0f}, after {count / after:.0f})")
    print(f"  fetch_many (guard, temp files, MD5):         {count / mine:8.0f} images/s")
    print(f"  ratio ours/floor: {base / mine:.2f}")


if __name__ == "__main__":
    main()
