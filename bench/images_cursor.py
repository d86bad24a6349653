"""Deep pages of GET /api/v1/images: offset pages against the keyset cursor, on N images (default 100,000).

N rows are COPYed into the images table (one image set), then GET /api/v1/images?per_page=100 is timed
through the Connexion test client (with an admin key) for: the first offset page (page=1, the baseline),
the deepest offset page, the first cursor page (cursor=) and the deepest cursor page (its cursor found by
walking the cursor to the end once). Median of REPS requests each. Prints ms and the ratios
deepest-cursor/first-page (goal <= 1.5) and deepest-offset/first-page.
Run: .venv/bin/python bench/images_cursor.py [--count 100000]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PER_PAGE, REPS = 100, 20


def insert_images(database_url: str, imageset_id: int, n: int) -> None:
    import psycopg2

    rows = io.StringIO()
    for i in range(n):
        md5 = hashlib.md5(str(i).encode()).hexdigest()
        rows.write(f"{imageset_id}\timagesets/bench/img_{i:07d}.jpg\t{md5}\tjpeg\t{150_000 + i % 5000}\t4000\t3000\n")
    rows.seek(0)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.copy_expert("COPY images (imageset_id, blobstorage_path, md5, filetype, filesize, width, height) "
                        "FROM STDIN", rows)
        cur.execute("ANALYZE images")


def median_ms(client, url: str, headers: dict) -> float:
    client.get(url, headers=headers)  # warm up
    samples = []
    for _ in range(REPS):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200 and len(response.json()["images"]) > 0, (url, response.status_code)
    return statistics.median(samples) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="rows in the images table (default 100000)")
    n = parser.parse_args().count

    from app.factory import create_app
    from app.migrate import migrate_database
    from app.embedded.azurite import Azurite
    from app.embedded.postgres import EmbeddedPostgres
    from app.extensions import db
    from app.models import ImageSet
    from app.services.keys import create_key
    from app.settings import load

    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fast=True).start()
        azurite = Azurite(Path(tmp) / "azurite").start()  # migrate_database makes sure the image container exists
        try:
            database_url = pg.create_database("bench")
            connexion_app = create_app(load(db_connection_string=database_url,
                                 azure_storage_connection_string=azurite.connection_string,
                                 api_key_pepper="bench-pepper-0123456789", log_level="WARNING"))
            migrate_database(connexion_app.app)
            with connexion_app.app.app_context():
                key, secret = create_key(roles=["admin"], email="bench@example.org")
                headers = {"Authentication-Key": key.key_id, "Authentication-Secret": secret}
                image_set = ImageSet(title="bench", blobstorage_path="imagesets/bench", upload_container="bench-up",
                                     status="finished", created_by_id=key.principal_id)
                db.session.add(image_set)
                db.session.commit()
                imageset_id = image_set.id
            insert_images(database_url, imageset_id, n)

            client = connexion_app.test_client()
            base = f"/api/v1/images?per_page={PER_PAGE}"
            last_page = math.ceil(n / PER_PAGE)
            # Walk the cursor once to the end: the last cursor given out names the deepest page.
            cursor, deepest_cursor, pages, walked = "", None, 0, 0
            while cursor is not None:
                body = client.get(f"{base}&cursor={cursor}", headers=headers).json()
                pages, walked = pages + 1, walked + len(body["images"])
                deepest_cursor, cursor = cursor, body["next_cursor"]
            assert pages == last_page and walked == n, (pages, walked)

            first_page = median_ms(client, f"{base}&page=1", headers)
            deepest_page = median_ms(client, f"{base}&page={last_page}", headers)
            first_cursor = median_ms(client, f"{base}&cursor=", headers)
            deepest = median_ms(client, f"{base}&cursor={deepest_cursor}", headers)
        finally:
            azurite.stop()
            pg.stop()

    print(f"{n} images, per_page={PER_PAGE}, median of {REPS} requests each (Connexion test client)")
    rows = [("first page (page=1)", first_page, "baseline"),
            (f"deepest offset page (page={last_page})", deepest_page,
             f"deepest-offset/first-page {deepest_page / first_page:4.2f}"),
            ("first cursor page (cursor=)", first_cursor, f"first-cursor/first-page {first_cursor / first_page:4.2f}"),
            (f"deepest cursor page ({pages}th of the walk)", deepest,
             f"deepest-cursor/first-page {deepest / first_page:4.2f} (goal <= 1.5)")]
    for label, ms, note in rows:
        print(f"{label:40} {ms:7.2f} ms  {note}")

if __name__ == "__main__":
    main()
