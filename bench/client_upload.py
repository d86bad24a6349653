"""`labelstore upload` throughput: files/second of the client's upload_directory against the floor of the bare
SDK uploading the same files with the same concurrency, and the command's end-to-end time (upload + finish).

N small distinct PNGs (64x48) in a folder, one served API (uvicorn, PostgreSQL, Azurite) with a worker:
  floor  azure-storage-blob alone: per file, read it and upload_blob into a fresh set's dropbox SAS, on a pool
         of C threads sharing one connection pool of C (no listing, no MD5, no Content-Type): the least any
         client must do; run before and after ours (floor, ours, ours, floor), means taken, so drift favours
         neither side;
  ours   Client.upload_directory(folder, set, finish=False) into another fresh set: scan, list the dropbox
         (for resume), MD5 and Content-MD5 on each file, the same concurrency C;
  e2e    `labelstore upload FOLDER --title ...` as a user runs it: process start, set creation, upload,
         finishing by the worker, until the set is finished.
Prints files/second, the ratio ours/floor (goal >= 0.9) and the end-to-end seconds.
Run: .venv/bin/python bench/client_upload.py [--count 1000] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests import images  # noqa: E402


def floor(url: str, files: list[tuple[str, Path]], concurrency: int) -> float:
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import ContainerClient

    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency + 2))
    area = ContainerClient.from_container_url(url, transport=RequestsTransport(session=session, session_owner=False))
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda item: area.upload_blob(item[0], item[1].read_bytes(), overwrite=True), files))
    elapsed = time.perf_counter() - started
    assert sum(1 for _ in area.list_blob_names()) == len(files)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="files (default 1000)")
    parser.add_argument("--concurrency", type=int, default=16, help="upload threads, both sides (default 16)")
    args = parser.parse_args()
    n, c = args.count, args.concurrency

    from _harness import served_api
    from labelstore_client import Client

    with tempfile.TemporaryDirectory() as tmp, served_api("--log-level", "warning", worker=True) as api:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i in range(n):
            (folder / f"img_{i:05d}.png").write_bytes(images.png(seed=i, width=64, height=48))
        files = sorted((p.name, p) for p in folder.iterdir())
        key, secret = api.admin["Authentication-Key"], api.admin["Authentication-Secret"]
        with Client(api.base_url, key, secret) as client:
            def ours(title: str) -> float:
                image_set = client.create_image_set(title)  # not timed, as the floor's set is not
                started = time.perf_counter()
                summary = client.upload_directory(folder, image_set, finish=False, concurrency=c)
                elapsed = time.perf_counter() - started
                assert summary.uploaded == n, summary
                return elapsed

            # floor, ours, ours, floor: a machine getting busier or quieter during the run favours neither side.
            floor_1 = floor(client.create_image_set("bench floor 1").dropbox_url, files, c)
            ours_1, ours_2 = ours("bench ours 1"), ours("bench ours 2")
            floor_2 = floor(client.create_image_set("bench floor 2").dropbox_url, files, c)

        env = {**os.environ, "LABELSTORE_URL": api.base_url, "LABELSTORE_KEY": key, "LABELSTORE_SECRET": secret,
               "LABELSTORE_CONFIG": str(Path(tmp) / "config.json")}
        labelstore = str(Path(sys.executable).parent / "labelstore")
        started = time.perf_counter()
        done = subprocess.run([labelstore, "--json", "upload", str(folder), "--title", "bench e2e",
                               "--concurrency", str(c)], env=env, capture_output=True, text=True)
        e2e = time.perf_counter() - started
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["status"] == "finished" and result["progress"]["accepted"] == n, result

    floor_t, ours_t = (floor_1 + floor_2) / 2, (ours_1 + ours_2) / 2
    print(f"files: {n}, concurrency {c}")
    print(f"floor (bare SDK):        {n / floor_t:8.0f} files/s  ({floor_1:.2f} s, {floor_2:.2f} s)")
    print(f"ours (upload_directory): {n / ours_t:8.0f} files/s  ({ours_1:.2f} s, {ours_2:.2f} s)")
    print(f"ratio ours/floor: {floor_t / ours_t:.2f} (goal >= 0.9)")
    print(f"labelstore upload end to end (start, upload, finish): {e2e:.2f} s ({n / e2e:.0f} files/s)")


if __name__ == "__main__":
    main()
