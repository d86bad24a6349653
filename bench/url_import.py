"""URL import end to end: images/second from POST .../imports to status finished, against a fetch-only floor.

N distinct small PNGs (64x48) served by tests/url_server.py in a child process on loopback; the API (one
uvicorn process) and one worker process (`python -m app worker`, default settings but private networks allowed)
on PostgreSQL and Azurite of their own. Measured in the same run:
  floor  the same URLs fetched by one httpx.AsyncClient, bodies read into memory, nothing else
         (bench/url_fetch.py's floor), with as many requests in flight as the worker may send to one host
         (WORKER_CONCURRENCY chunk jobs x URL_IMPORT_PER_HOST); run before and after ours, the mean taken;
  ours   POST the N URLs, then poll GET /imports/{id} until finished: every body fetched, judged, stored in
         Azurite, de-duplicated, catalogued and reported;
  store  (a ceiling) the floor's fetching, each body then stored in the same Azurite by BlobStorage.put_image
         (the worker's way, STORE_THREADS threads) and nothing else: no judging, no catalogue, no report.
Goal: >= 100 images/s and >= 0.6 of the floor. On a 2-core machine Azurite's CPU per stored blob shares the
cores with everything else, and `store` shows how much of the floor storing alone leaves.
Run: .venv/bin/python bench/url_import.py [--count 2000]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from _harness import ROOT, served_api  # noqa: E402
from url_fetch import floor  # noqa: E402
from app.ingest.url_imports import STORE_THREADS  # noqa: E402
from app.storage import BlobStorage  # noqa: E402
from app.settings import load  # noqa: E402
from tests.url_server import image_path, spawned  # noqa: E402

WARM_UP = 50


def run_import(api, urls: list[str], title: str) -> tuple[float, dict]:
    with httpx.Client(base_url=api.base_url + "/api/v1", headers=api.admin, timeout=60) as client:
        made = client.post("/image_sets", json={"title": title})
        assert made.status_code == 201, made.text
        started = time.perf_counter()
        created = client.post(f"/image_sets/{made.json()['imageset_id']}/imports", json={"urls": urls})
        assert created.status_code == 202, created.text
        while True:
            current = client.get(f"/imports/{created.json()['import_id']}").json()
            if current["status"] in ("finished", "failed"):
                return time.perf_counter() - started, current
            time.sleep(0.05)


def fetch_and_store(urls: list[str], in_flight: int, storage: BlobStorage) -> float:
    """The ceiling: the floor's fetching, each body then stored (Content-MD5 and type as the worker sets them)."""
    with ThreadPoolExecutor(STORE_THREADS) as pool:
        async def store(n: int, body: bytes) -> None:
            await asyncio.get_running_loop().run_in_executor(pool, lambda: storage.put_image(
                f"bench-ceiling/{n}.png", io.BytesIO(body), length=len(body), content_type="image/png",
                md5_hex=hashlib.md5(body).hexdigest()))

        return floor(urls, in_flight, then=store)


def settle(database_url: str) -> None:
    """Wait until the workers have no job left (the imported images' renditions, mostly)."""
    import psycopg
    with psycopg.connect(database_url, autocommit=True) as connection:
        while connection.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
                                 ).fetchone()[0]:
            time.sleep(0.2)


def print_timeline(database_url: str, import_id: int) -> None:
    """Each chunk job's start and end, in seconds from the first start (from procrastinate's events)."""
    import psycopg
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("""
            SELECT (j.args->>'first')::int, min(e.at) FILTER (WHERE e.type = 'started'),
                   max(e.at) FILTER (WHERE e.type = 'succeeded')
            FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id
            WHERE j.task_name LIKE '%%import_urls_chunk' AND (j.args->>'import_id')::int = %s
            GROUP BY 1 ORDER BY 2""", (import_id,)).fetchall()
        others = connection.execute("""
            SELECT j.task_name, min(e.at) FILTER (WHERE e.type = 'started'),
                   max(e.at) FILTER (WHERE e.type IN ('succeeded', 'failed'))
            FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id
            WHERE j.task_name NOT LIKE '%%import_urls_chunk' GROUP BY j.id ORDER BY 2""").fetchall()
    zero, end = rows[0][1], max(row[2] for row in rows)
    for first, started, ended in rows:
        print(f"  chunk at {first:6d}: {(started - zero).total_seconds():6.2f} s -> {(ended - zero).total_seconds():6.2f} s")
    for name, started, ended in others:  # other jobs that ran while the import did
        if started and started < end and (ended is None or ended > zero):
            print(f"  {name.rsplit('.', 1)[-1]}: {(started - zero).total_seconds():6.2f} s -> "
                  f"{((ended or end) - zero).total_seconds():6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (python -m app worker)")
    parser.add_argument("--timeline", action="store_true", help="print when each chunk job ran")
    parser.add_argument("--py-spy", metavar="FILE", help="sample the worker with py-spy (if installed) during the "
                        "measured import, only while it holds the GIL, into FILE (raw, collapsed stacks)")
    arguments = parser.parse_args()
    count, timeline, processes = arguments.count, arguments.timeline, arguments.workers
    settings = load()
    in_flight = settings.worker_concurrency * min(settings.url_import_concurrency, settings.url_import_per_host)
    with spawned(images=count + WARM_UP) as base_url, served_api("--log-level", "warning") as api:
        workers = [subprocess.Popen([sys.executable, "-m", "app", "worker"], cwd=ROOT, env={
            **api.env, "URL_IMPORT_ALLOW_PRIVATE_NETWORKS": "true"}) for _ in range(processes)]
        try:
            urls = [base_url + image_path(i) for i in range(count)]
            warm = [base_url + image_path(i) for i in range(count, count + WARM_UP)]
            floor(warm, in_flight)
            _, warmed = run_import(api, warm, "bench warm-up")  # the worker's imports, connections, first job
            assert warmed["status"] == "finished", warmed
            before = floor(urls, in_flight)
            spy = arguments.py_spy and subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(workers[0].pid), "--gil",
                 "--rate", "200", "--format", "raw", "--output", arguments.py_spy, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            mine, result = run_import(api, urls, "bench url import")
            if spy:
                spy.send_signal(2)  # py-spy writes what it sampled on SIGINT
                spy.wait()
            if timeline:
                print_timeline(api.database_url, result["import_id"])
            settle(api.database_url)  # the renditions the import queued would slow the second floor
            after = floor(urls, in_flight)
            store = fetch_and_store(urls, in_flight, BlobStorage(
                connection_string=api.env["AZURE_STORAGE_CONNECTION_STRING"], container=settings.azure_storage_imageset_container))
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait()
    assert result["status"] == "finished" and result["progress"]["accepted"] == count, result
    base = (before + after) / 2
    ours_rate, floor_rate = count / mine, count / base
    print(f"{count} images of 64x48 PNG from a loopback server; one worker, WORKER_CONCURRENCY="
          f"{settings.worker_concurrency}, URL_IMPORT_CHUNK_SIZE={settings.url_import_chunk_size}, "
          f"{in_flight} requests in flight to the host at most")
    print(f"  floor (httpx AsyncClient, {in_flight} at a time, bodies in memory): {floor_rate:7.0f} images/s  "
          f"(before {count / before:.0f}, after {count / after:.0f})")
    print(f"  ours (POST -> finished: fetch, judge, store, catalogue, report): {ours_rate:7.0f} images/s  "
          f"({mine:.2f} s)")
    print(f"  store (the floor's fetching + BlobStorage.put_image, nothing else): {count / store:7.0f} images/s  "
          f"(ratio to the floor {count / store / floor_rate:.2f}; ours reach {store / mine:.2f} of it)")
    print(f"  ratio ours/floor: {ours_rate / floor_rate:.2f} (goal >= 0.6); goal >= 100 images/s: "
          f"{'met' if ours_rate >= 100 else 'NOT met'}")


if __name__ == "__main__":
    main()
