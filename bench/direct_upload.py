"""Direct upload: images/second and latency of POST /image_sets/{id}/uploads by concurrent clients, against the
request overhead floor of the same clients calling a cheap authenticated GET, same server, same run.

One uvicorn worker process serves main:app as in production (bench/_harness.py: its own PostgreSQL and
Azurite; no job worker, so the renditions the uploads ask for wait in the queue and take no CPU here).
  floor   C clients (threads, each with its own keep-alive connection) calling GET /api/v1/me N times in
          all: authentication and the framework, no storage, no database write; run before and after the
          uploads, and the mean taken, so drift during the run favours neither side;
  ours    the same C clients uploading N distinct small PNGs (64x48, about 200 bytes) into one open set, one
          file per request as multipart/form-data: each is checked, stored in the image container and
          catalogued before its answer, which must say `accepted`.
Prints requests/second, p50 and p99 latency of both, and the ratio ours/floor of the rates.
Run: .venv/bin/python bench/direct_upload.py [--count 1000] [--clients 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests import images  # noqa: E402


def run(base_url: str, clients: int, calls: list, call) -> tuple[float, list[float]]:
    """`call(client, item)` for every item, spread over `clients` threads each with its own connection;
    (elapsed seconds, per-request latencies)."""
    import httpx

    local, latencies, lock = threading.local(), [], threading.Lock()
    opened: list = []

    def one(item):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base_url, timeout=60)
            with lock:
                opened.append(local.client)
        started = time.perf_counter()
        call(local.client, item)
        took = time.perf_counter() - started
        with lock:
            latencies.append(took)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, calls))
    elapsed = time.perf_counter() - started
    for client in opened:
        client.close()
    return elapsed, latencies


def p(latencies: list[float], q: float) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[q - 1] if q < 100 else max(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="images, and floor requests per run (default 1000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    args = parser.parse_args()
    n, c = args.count, args.clients
    files = [(f"img_{i:05d}.png", images.png(seed=300_000 + i, width=64, height=48)) for i in range(n)]

    import httpx

    from _harness import served_api

    with served_api("--log-level", "warning") as api:
        headers = api.admin
        created = httpx.post(f"{api.base_url}/api/v1/image_sets", json={"title": "bench direct upload"},
                             headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        imageset_id = created.json()["imageset_id"]

        def me(client, _):
            response = client.get("/api/v1/me", headers=headers)
            assert response.status_code == 200, response.text

        def upload(client, item):
            name, data = item
            response = client.post(f"/api/v1/image_sets/{imageset_id}/uploads", headers=headers,
                                   files={"file": (name, data, "image/png")})
            assert response.status_code == 200, (name, response.status_code, response.text)
            result = response.json()["results"]
            assert [r["outcome"] for r in result] == ["accepted"], (name, result)

        run(api.base_url, c, [None] * 100, me)  # warm-up: connections, prepared statements
        floor_1, floor_lat_1 = run(api.base_url, c, [None] * n, me)
        ours_t, ours_lat = run(api.base_url, c, files, upload)
        floor_2, floor_lat_2 = run(api.base_url, c, [None] * n, me)
        listed = httpx.get(f"{api.base_url}/api/v1/images", params={"imageset_id": imageset_id, "per_page": 1},
                           headers=headers, timeout=30).json()
        assert listed["pagination"]["total"] == n, listed["pagination"]

    floor_t, floor_lat = (floor_1 + floor_2) / 2, floor_lat_1 + floor_lat_2
    floor_r, ours_r = n / floor_t, n / ours_t
    print(f"{n} requests each, {c} concurrent clients, one uvicorn worker process")
    print(f"{'floor: GET /api/v1/me':44} {floor_r:7.1f} requests/s  p50 {p(floor_lat, 50) * 1e3:6.1f} ms  "
          f"p99 {p(floor_lat, 99) * 1e3:6.1f} ms  baseline (mean of runs before {floor_1:.2f} s and after "
          f"{floor_2:.2f} s)")
    print(f"{'ours: POST .../uploads, one 64x48 PNG each':44} {ours_r:7.1f} images/s    p50 "
          f"{p(ours_lat, 50) * 1e3:6.1f} ms  p99 {p(ours_lat, 99) * 1e3:6.1f} ms  ratio ours/floor "
          f"{ours_r / floor_r:4.2f}")


if __name__ == "__main__":
    main()
