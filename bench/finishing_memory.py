"""Finishing memory: peak RSS of a process finishing N images (default 10,000), against one that only starts.

N tiny distinct PNGs (16x16) are uploaded to one image set (not timed, not measured). Then two fresh child
processes (multiprocessing, spawn) each report their own peak RSS: the baseline imports the app and creates
it; the other does the same and runs finishing.finish(imageset_id) to the end (listing the area into chunks,
then working every chunk itself: no other worker runs here). Prints both peaks, the difference, the difference
per image, the RSS seen in each half of the run (flat memory: the second half's peak is no higher than the
first's), and whether the finishing peak is under 300 MB (the goal is at 100,000 images: --count 100000).

The peak is VmHWM from /proc/self/status. resource.getrusage(RUSAGE_SELF).ru_maxrss is printed too but not
used: on Linux a child started by fork+exec keeps the parent's high-water mark across exec, so it reports
at least this (larger) parent's peak.
Run: .venv/bin/python bench/finishing_memory.py [--count 100000]
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LIMIT_MB = 300


def child(overrides: dict, imageset_id: int | None) -> dict:
    """Runs in a fresh interpreter: create the app, finish the set when given one, report the peak RSS."""
    import logging
    import resource

    from app.factory import create_app
    from app.settings import load

    connexion_app = create_app(load(**overrides))
    # The SDK's HTTP pool (10) is smaller than finish_concurrency (16): one warning per discarded connection.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    outcome = {}
    if imageset_id is not None:
        from app.services import finishing, image_sets

        samples, running = [], threading.Event()
        running.set()

        def sample():  # (seconds since the start, VmRSS in KiB) every half second
            while running.is_set():
                samples.append((time.perf_counter() - started, _status_kib("VmRSS")))
                time.sleep(0.5)

        with connexion_app.app.app_context():
            started = time.perf_counter()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            finishing.finish(imageset_id)
            outcome["seconds"] = time.perf_counter() - started
            running.clear()
            sampler.join()
            half = outcome["seconds"] / 2
            outcome["halves_kib"] = (max((kib for t, kib in samples if t < half), default=0),
                                     max((kib for t, kib in samples if t >= half), default=0))
            image_set = image_sets.get(imageset_id)
            outcome.update(status=image_set.status, **image_sets.progress(image_set))
    return {**outcome, "peak_kib": _status_kib("VmHWM"), "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _status_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith(f"{field}:")).split()[1])


def in_fresh_process(*args) -> dict:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(child, *args).result()


def upload(url: str, n: int) -> None:
    import httpx

    from tests import images

    base, _, sas = url.partition("?")
    started = time.perf_counter()
    # A generous timeout: Azurite answers slowly at times on a busy machine with a big area.
    with httpx.Client(limits=httpx.Limits(max_connections=16), timeout=120) as client, ThreadPoolExecutor(16) as pool:
        def put(i):
            if i and i % 10_000 == 0:
                print(f"uploaded {i} of {n} ({time.perf_counter() - started:.0f} s)", flush=True)
            response = client.put(f"{base}/tiny_{i:06d}.png?{sas}", content=images.png(seed=i, width=16, height=16),
                                  headers={"x-ms-blob-type": "BlockBlob"})
            assert response.status_code == 201, (i, response.status_code, response.text)
        list(pool.map(put, range(n)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="images to finish (default 10000)")
    n = parser.parse_args().count

    from app.factory import create_app
    from app.auth.policy import Caller
    from app.migrate import migrate_database
    from app.embedded.azurite import Azurite
    from app.embedded.postgres import EmbeddedPostgres
    from app.extensions import db
    from app.services import image_sets
    from app.services.keys import create_key

    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fast=True).start()
        azurite = Azurite(Path(tmp) / "azurite").start()
        try:
            overrides = {"db_connection_string": pg.create_database("bench"),
                         "azure_storage_connection_string": azurite.connection_string,
                         "api_key_pepper": "bench-pepper-0123456789", "log_level": "WARNING"}
            from app.settings import load

            connexion_app = create_app(load(**overrides))
            migrate_database(connexion_app.app)
            with connexion_app.app.app_context():
                key, _ = create_key(roles=["admin"], email="bench@example.org")
                caller = Caller(id=key.id, key_id=key.key_id, principal_id=key.principal_id, owner_kind="user",
                                owner_name="bench@example.org", roles=frozenset({"admin"}))
                image_set, _ = image_sets.create(title="bench memory", metadata=None, created_by=caller)
                storage = connexion_app.app.extensions["label_store"].storage
                upload(storage.upload_area_url(image_set.upload_container, timedelta(hours=1)).url, n)
                image_set.status = "finishing"
                db.session.commit()
                imageset_id = image_set.id

            baseline = in_fresh_process(overrides, None)
            finishing = in_fresh_process(overrides, imageset_id)
        finally:
            azurite.stop()
            pg.stop()

    assert finishing["status"] == "finished" and finishing["done"] == n, finishing
    base_mb, peak_mb = baseline["peak_kib"] / 1024, finishing["peak_kib"] / 1024
    print(f"{n} images of 16x16 PNG finished in {finishing['seconds']:.1f} s "
          f"(accepted {finishing['accepted']}, duplicates {finishing['duplicates']}, rejected {finishing['rejected']})")
    print(f"peak RSS, app created only        {base_mb:7.1f} MB  (baseline)")
    print(f"peak RSS, app created + finishing {peak_mb:7.1f} MB  ratio {peak_mb / base_mb:4.2f}x")
    print(f"finishing adds                    {peak_mb - base_mb:7.1f} MB  ({(peak_mb - base_mb) * 1024 * 1024 / n:.0f} "
          f"bytes per image)")
    first, second = (kib / 1024 for kib in finishing["halves_kib"])
    print(f"RSS peak in the run's first half  {first:7.1f} MB, second half {second:7.1f} MB  "
          f"ratio {second / first:4.2f} (flat: about 1)")
    print(f"under {LIMIT_MB} MB: {'yes' if peak_mb < LIMIT_MB else 'NO'}")
    print(f"(ru_maxrss seen by the children, inflated by the parent's peak: baseline "
          f"{baseline['ru_maxrss_kib'] / 1024:.1f} MB, finishing {finishing['ru_maxrss_kib'] / 1024:.1f} MB)")


if __name__ == "__main__":
    main()
