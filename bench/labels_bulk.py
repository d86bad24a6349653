"""One PUT of 10,000 objects over 1,000 images: server time, objects/s, and the ratio against PostgreSQL
COPY of the same rows in the same run (the floor for getting rows into the table).

Run: make bench, or .venv/bin/python bench/labels_bulk.py [--images 1000 --per-image 10]
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--per-image", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
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
            from app.extensions import db
            from app.models import Campaign, CampaignImage, Image, Principal
            from app.services.keys import create_key

            connexion_app = create_app(load(db_connection_string=pg.create_database("bench"), log_level="WARNING",
                                 azure_storage_connection_string=azurite.connection_string,
                                 api_key_pepper="bench-pepper-0123456789"))
            migrate_database(connexion_app.app)
            with connexion_app.app.app_context():
                key, secret = create_key(roles=["admin"], email="bench@example.org")
                rows = [Image(blobstorage_path=f"b/{i}.jpg", md5=f"{i:032x}", filetype="jpeg", filesize=1,
                              width=1000, height=800) for i in range(args.images)]
                db.session.add_all(rows)
                campaign = Campaign(title="bench", status="active", labeler=Principal(kind="user", name="l@x.org"),
                                    progress_total=args.images, progress_done=0)
                db.session.add(campaign)
                db.session.flush()
                db.session.add_all(CampaignImage(campaign_id=campaign.id, image_id=r.id) for r in rows)
                db.session.commit()
                image_ids, campaign_id = [r.id for r in rows], campaign.id
                headers = {"Authentication-Key": key.key_id, "Authentication-Secret": secret}
            body = [{"image_id": i, "objects": [
                {"bounding_box": {"xmin": n, "xmax": n + 50, "ymin": n, "ymax": n + 40}, "label": f"l{n % 7}",
                 "confidence": 0.5} for n in range(args.per_image)]} for i in image_ids]
            objects = args.images * args.per_image
            client = connexion_app.test_client()

            put_times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                response = client.put(f"/api/v1/campaigns/{campaign_id}/objects", json=body, headers=headers)
                put_times.append(time.perf_counter() - started)
                assert response.status_code == 200 and response.json()["objects"] == objects, response.text
                with connexion_app.app.app_context():  # stay active for the next round
                    db.session.execute(db.text("UPDATE campaigns SET status = 'active' WHERE id = :c"),
                                       {"c": campaign_id})
                    db.session.commit()

            copy_times = []
            import psycopg2

            conn = psycopg2.connect(pg.url("bench"))
            for round_ in range(args.rounds):
                buffer = io.StringIO()
                with conn.cursor() as cursor:
                    cursor.execute("INSERT INTO label_revisions (campaign_id, image_id, revision, submitted_by, "
                                   "key_id, object_count) SELECT %s, unnest(%s::int[]), %s, 'copy', 'copy', %s "
                                   "RETURNING id", (campaign_id, image_ids, 100 + round_, args.per_image))
                    revision_ids = [r[0] for r in cursor.fetchall()]
                for revision_id, image_id in zip(revision_ids, image_ids):
                    for n in range(args.per_image):
                        buffer.write(f"{revision_id}\t{campaign_id}\t{image_id}\tl{n % 7}\tl{n % 7}\t{n}\t{n + 50}\t"
                                     f"{n}\t{n + 40}\t0.5\tf\tcopy\n")
                buffer.seek(0)
                started = time.perf_counter()
                with conn.cursor() as cursor:
                    cursor.copy_from(buffer, "objects", columns=(
                        "revision_id", "campaign_id", "image_id", "label", "label_original", "box_xmin", "box_xmax",
                        "box_ymin", "box_ymax", "confidence", "is_crowd", "added_by"))
                conn.commit()
                copy_times.append(time.perf_counter() - started)
            conn.close()
        finally:
            azurite.stop()
            pg.stop()

    put_t, copy_t = statistics.median(put_times), statistics.median(copy_times)
    print(f"PUT {objects:,} objects over {args.images:,} images: median {put_t * 1e3:7.1f} ms of server time "
          f"({objects / put_t:,.0f} objects/s; target under 1 s)")
    print(f"COPY of the same {objects:,} object rows: median {copy_t * 1e3:7.1f} ms ({objects / copy_t:,.0f} rows/s)")
    print(f"ratio PUT/COPY: {put_t / copy_t:5.2f}x (the PUT also validates, translates, writes revisions, "
          "moves current pointers and counts progress)")


if __name__ == "__main__":
    main()
