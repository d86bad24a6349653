"""`import-labelapi` of a LabelAPI database of 100,000 images and 1,000,000 objects: time and peak RSS, against
a floor measured in the same run: reading the same rows from the source (COPY of each table, discarded).

Run: make bench, or .venv/bin/python bench/import_labelapi.py [--images 100000 --objects-per-image 10]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Each measured run is a child process, so its peak RSS (VmHWM) is its own.
CHILD = """
import sys, time
import psycopg
from app.labelapi.importer import SOURCE_TABLES, run_import
source, target, mode = sys.argv[1:4]
started = time.perf_counter()
if mode == "floor":
    with psycopg.connect(source) as conn:
        conn.execute("SET search_path TO labelapi")
        rows = 0
        for _, _, query in SOURCE_TABLES:
            with conn.cursor().copy(f"COPY ({query}) TO STDOUT") as out:
                for data in out:
                    rows += bytes(data).count(b"\\n")
    detail = f"{rows} rows"
else:
    summary = run_import(source_url=source, target_url=target, container="images", folder="imagesets",
                         schema="labelapi", progress_out=open("/dev/null", "w"))
    detail = f"{summary.counts['images'].created} images, {summary.counts['objects'].created} objects created"
elapsed = time.perf_counter() - started
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(elapsed, hwm, detail)
"""


def fill_source(url: str, images: int, per_image: int) -> None:
    """A LabelAPI database: 100 image sets, 10 campaigns over all images, every image labelled."""
    import psycopg

    from app.labelapi.legacy_schema import create_labelapi_schema

    sets, campaigns = 100, 10
    with psycopg.connect(url) as conn:
        create_labelapi_schema(conn, "labelapi")
        conn.execute("""INSERT INTO "user" (id, email, "API_KEY", "API_SECRET", enabled) VALUES
            (1, 'admin@example.org', 'admin-key', '\\x00', true), (2, 'partner@example.org', 'partner-key', '\\x00', true)""")
        conn.execute("INSERT INTO roles (role, user_id) VALUES ('image-admin', 1)")
        conn.execute("INSERT INTO imageset (id, title, status, blobstorage_path, created_by) SELECT s, 'set ' || s, "
                     "'finished', 'images/uploads/set-' || s, 1 FROM generate_series(1, %s) s", (sets,))
        conn.execute("INSERT INTO image (id, blobstorage_path, imageset_id, filetype, filesize, width, height) "
                     "SELECT i, 'images/uploads/set-' || (i %% %s + 1) || '/' || i || '.jpg', i %% %s + 1, 'JPEG', "
                     "100000, 1920, 1080 FROM generate_series(1, %s) i", (sets, sets, images))
        conn.execute("INSERT INTO campaign (id, title, status, created_by) SELECT c, 'campaign ' || c, 'finished', 1 "
                     "FROM generate_series(1, %s) c", (campaigns,))
        conn.execute("INSERT INTO roles (role, user_id, subject_id, subject_type) SELECT 'labeler', 2, c, 'campaign' "
                     "FROM generate_series(1, %s) c", (campaigns,))
        conn.execute("INSERT INTO campaign_image (id, campaign_id, image_id, labeled) "
                     "SELECT i, i %% %s + 1, i, true FROM generate_series(1, %s) i", (campaigns, images))
        conn.execute("INSERT INTO object (id, campaign_image_id, label_translated, confidence, x_min, x_max, y_min, "
                     "y_max) SELECT (i - 1) * %s + n, i, 'label ' || n %% 7, 0.5, n, n + 50, n, n + 40 "
                     "FROM generate_series(1, %s) i, generate_series(1, %s) n", (per_image, images, per_image))
        conn.execute("ANALYZE")


def measure(source: str, target: str, mode: str) -> tuple[float, float, str]:
    out = subprocess.run([sys.executable, "-c", CHILD, source, target, mode], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split(maxsplit=2)
    return float(out[0]), int(out[1]) / 1024, out[2].strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--objects-per-image", type=int, default=10)
    args = parser.parse_args()

    from app.embedded.azurite import Azurite
    from app.embedded.postgres import EmbeddedPostgres
    from app.settings import load

    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg").start()  # durable settings, as in production
        azurite = Azurite(Path(tmp) / "azurite").start()
        try:
            from app.factory import create_app
            from app.migrate import migrate_database

            target = pg.create_database("bench")
            migrate_database(create_app(load(db_connection_string=target, log_level="WARNING",
                                             azure_storage_connection_string=azurite.connection_string,
                                             api_key_pepper="bench-pepper-0123456789")).app)
            source = pg.create_database("labelapi").replace("postgresql+psycopg2://", "postgresql://")
            fill_source(source, args.images, args.objects_per_image)
            floor_t, floor_mb, floor_detail = measure(source, target, "floor")
            import_t, import_mb, import_detail = measure(source, target, "import")
            again_t, again_mb, _ = measure(source, target, "import")
        finally:
            azurite.stop()
            pg.stop()

    objects = args.images * args.objects_per_image
    print(f"LabelAPI database: {args.images:,} images, {objects:,} objects")
    print(f"floor (read the same rows from the source): {floor_t:6.1f} s, peak RSS {floor_mb:5.0f} MB ({floor_detail})")
    print(f"import-labelapi:                            {import_t:6.1f} s, peak RSS {import_mb:5.0f} MB "
          f"({import_detail}; goal under 120 s and 300 MB)")
    print(f"import-labelapi again (nothing to create):  {again_t:6.1f} s, peak RSS {again_mb:5.0f} MB")
    print(f"ratio import/floor: {import_t / floor_t:5.1f}x time")


if __name__ == "__main__":
    main()
