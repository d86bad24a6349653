"""Export of a campaign with 100,000 images and 1,000,000 objects: the AutoML JSONL (to blob storage, as the
dataset job does) and the COCO file (streamed over HTTP), each timed with the peak RSS of the process doing it.
Baseline in the same run: reading the same object rows with a plain server-side cursor (the floor).
Targets: under 30 s each, peak RSS under 300 MB.

Run: make bench, or .venv/bin/python bench/export.py [--images 100000 --per-image 10]
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Peak RSS from VmHWM: ru_maxrss survives exec, so a child would report its parent's peak at fork time.
CHILD = """
import sys, time
from app.factory import create_app
from app.services import datasets
connexion_app = create_app()
with connexion_app.app.app_context():
    started = time.perf_counter()
    datasets.build(int(sys.argv[1]))
    elapsed = time.perf_counter() - started
    d = datasets.db.session.get(datasets.Dataset, int(sys.argv[1]))
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(elapsed, hwm, d.image_count, d.object_count)
"""


def load_rows(url: str, images: int, per_image: int) -> int:
    """A finished campaign's worth of rows, written with COPY; returns the campaign id."""
    import psycopg2

    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        def copy(table, columns, rows):
            buffer = io.StringIO()
            for row in rows:
                buffer.write("\t".join(map(str, row)) + "\n")
            buffer.seek(0)
            cur.copy_from(buffer, table, columns=columns)

        copy("images", ("id", "blobstorage_path", "md5", "filetype", "filesize", "width", "height"),
             ((i, f"imagesets/bench/{i:07d}.jpg", f"{i:032x}", "jpeg", 1000, 1920, 1080) for i in range(1, images + 1)))
        cur.execute("INSERT INTO principals (kind, name) VALUES ('user', 'bench@example.org') RETURNING id")
        principal = cur.fetchone()[0]
        cur.execute("INSERT INTO campaigns (title, status, labeler_id, progress_total, progress_done) "
                    "VALUES ('bench export', 'finished', %s, %s, %s) RETURNING id", (principal, images, images))
        campaign = cur.fetchone()[0]
        copy("campaign_images", ("campaign_id", "image_id"), ((campaign, i) for i in range(1, images + 1)))
        copy("label_revisions", ("id", "campaign_id", "image_id", "revision", "submitted_by", "key_id", "object_count"),
             ((i, campaign, i, 1, "bench", "bench", per_image) for i in range(1, images + 1)))
        copy("objects", ("revision_id", "campaign_id", "image_id", "label", "label_original", "box_xmin", "box_xmax",
                         "box_ymin", "box_ymax", "is_crowd", "added_by"),
             ((i, campaign, i, f"class{n % 12}", f"class{n % 12}", n * 10, n * 10 + 90, n * 5, n * 5 + 60, "f", "bench")
              for i in range(1, images + 1) for n in range(per_image)))
        cur.execute("UPDATE campaign_images SET current_revision_id = image_id WHERE campaign_id = %s", (campaign,))
        cur.execute("SELECT setval('images_id_seq', %s); SELECT setval('label_revisions_id_seq', %s)", (images, images))
    conn.commit()
    conn.close()
    return campaign


def floor(url: str) -> float:
    import psycopg2

    conn = psycopg2.connect(url)
    started = time.perf_counter()
    with conn.cursor(name="floor") as cur:
        cur.itersize = 10000
        cur.execute("SELECT revision_id, label, box_xmin, box_xmax, box_ymin, box_ymax FROM objects ORDER BY revision_id, id")
        for _ in cur:
            pass
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def peak_rss_while(process: subprocess.Popen, stop: threading.Event, out: list) -> None:
    import psutil

    proc, peak = psutil.Process(process.pid), 0
    while not stop.is_set():
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    out.append(peak)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--per-image", type=int, default=10)
    args = parser.parse_args()

    import httpx

    from app.embedded.azurite import Azurite
    from app.embedded.ports import free_port, wait_for_port
    from app.embedded.postgres import EmbeddedPostgres

    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fast=True).start()
        azurite = Azurite(Path(tmp) / "azurite").start()
        server = None
        try:
            url = pg.create_database("bench")
            env = {**os.environ, "DB_CONNECTION_STRING": url, "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
                   "API_KEY_PEPPER": "bench-pepper-0123456789", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
            subprocess.run([sys.executable, "-m", "app", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
            started = time.perf_counter()
            campaign = load_rows(url, args.images, args.per_image)
            print(f"loaded {args.images:,} images and {args.images * args.per_image:,} objects in "
                  f"{time.perf_counter() - started:.1f} s (setup, not measured)", flush=True)
            base = floor(url)

            import psycopg2

            conn = psycopg2.connect(url)
            with conn.cursor() as cur:  # a version snapshot, as POST /campaigns/{id}/datasets makes
                cur.execute("INSERT INTO datasets (campaign_id, version, name, status, folder) "
                            "VALUES (%s, 1, 'bench_export', 'pending', 'datasets/bench_export/1') RETURNING id",
                            (campaign,))
                dataset = cur.fetchone()[0]
                cur.execute("INSERT INTO dataset_images SELECT %s, image_id, current_revision_id FROM campaign_images "
                            "WHERE campaign_id = %s", (dataset, campaign))
            conn.commit()
            conn.close()

            result = subprocess.run([sys.executable, "-c", CHILD, str(dataset)], env=env, cwd=ROOT, check=True,
                                    capture_output=True, text=True)
            jsonl_t, jsonl_rss_kib, images, objects = result.stdout.split()
            jsonl_t, jsonl_rss = float(jsonl_t), int(jsonl_rss_kib) * 1024

            port = free_port()
            created = subprocess.run([sys.executable, "-m", "app", "create-admin", "--email", "b@example.org"],
                                     env=env, cwd=ROOT, check=True, capture_output=True, text=True)
            import json

            pair = json.loads(created.stdout.strip().splitlines()[-1])
            server = subprocess.Popen([sys.executable, "-m", "uvicorn", "main:app", "--port", str(port),
                                       "--log-level", "warning", "--no-access-log"], env=env, cwd=ROOT)
            wait_for_port("127.0.0.1", port)
            stop, peak = threading.Event(), []
            watcher = threading.Thread(target=peak_rss_while, args=(server, stop, peak))
            watcher.start()
            started, size = time.perf_counter(), 0
            with httpx.stream("GET", f"http://127.0.0.1:{port}/api/v1/campaigns/{campaign}/coco", timeout=300,
                              headers={"Authentication-Key": pair["apikey"], "Authentication-Secret": pair["apisecret"]}
                              ) as response:
                assert response.status_code == 200, response.read()
                for chunk in response.iter_bytes():
                    size += len(chunk)
            coco_t = time.perf_counter() - started
            stop.set()
            watcher.join()
            coco_rss = peak[0]
        finally:
            if server:
                server.terminate()
                server.wait()
            azurite.stop()
            pg.stop()

    rows = args.images * args.per_image
    print(f"floor: reading {rows:,} object rows with a server-side cursor: {base:6.1f} s ({rows / base:,.0f} rows/s)")
    print(f"JSONL to blob storage ({images} images, {objects} objects): {jsonl_t:6.1f} s ({rows / jsonl_t:,.0f} objects/s), "
          f"{jsonl_t / base:4.1f}x the floor, peak RSS {jsonl_rss / 2**20:5.0f} MB (targets: < 30 s, < 300 MB)")
    print(f"COCO over HTTP ({size / 2**20:.0f} MB): {coco_t:6.1f} s ({rows / coco_t:,.0f} objects/s), "
          f"{coco_t / base:4.1f}x the floor, server peak RSS {coco_rss / 2**20:5.0f} MB (targets: < 30 s, < 300 MB)")


if __name__ == "__main__":
    main()
