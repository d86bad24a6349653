"""`python -m app import-labelapi` against a real LabelAPI-shaped database: the tables, columns and enums of its
migrations (8c4eddde7535 .. 413212592e9b, without the optional PostGIS column), in a schema of its own in a
second database of the test server, with its blobs in Azurite."""
from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
from datetime import datetime

import bcrypt
import httpx
import psycopg
import pytest

from app.labelapi.legacy_schema import create_labelapi_schema
from tests import images
from tests.helpers import env_for, wait_until


SECRETS = {"admin-key": "admin secret of LabelAPI", "partner-key": "partner secret of LabelAPI",
           "old-key": "a disabled partner's secret"}
JPEG_A, JPEG_B = images.jpeg(64, 48, seed=1), images.jpeg(80, 60, seed=2)
STORED = datetime(2021, 3, 4, 5, 6, 7)


def _hash(secret: str) -> bytes:
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=4))


@pytest.fixture
def labelapi(empty_database, flask_app):
    """A LabelAPI database; its blobs (all but image 9's) in the container this service reads."""
    from app.state import app_state

    storage = app_state(flask_app).storage
    c = storage.container
    for path, data in (("uploads/drone-2020/a.jpg", JPEG_A), ("uploads/drone-2020/b.jpg", JPEG_B),
                       ("uploads/drone-2020/c.png", images.png(seed=3)), ("uploads/beach-2021/a-again.jpg", JPEG_A)):
        storage.upload_bytes(path, data)
    url = empty_database.replace("postgresql+psycopg2://", "postgresql://")
    with psycopg.connect(url) as conn:
        create_labelapi_schema(conn, "labelapi")
        conn.execute("""INSERT INTO "user" (id, email, "API_KEY", "API_SECRET", enabled) VALUES
            (1, 'Admin@TheOceanCleanup.com', 'admin-key', %s, true), (2, 'labeler@partner.org', 'partner-key', %s, true),
            (3, 'gone@partner.org', 'old-key', %s, false), (4, 'nokey@theoceancleanup.com', NULL, NULL, true)""",
                     (_hash(SECRETS["admin-key"]), _hash(SECRETS["partner-key"]), _hash(SECRETS["old-key"])))
        conn.execute(f"""INSERT INTO imageset (id, title, status, metadata, blobstorage_path, date_created, date_finished,
                                               created_by) VALUES
            (1, 'drone-2020', 'finished', '{{"country": "NL"}}', '{c}/uploads/drone-2020', '2020-10-01', '2020-10-02', 1),
            (2, 'beach-2021', 'finished', NULL, '{c}/uploads/beach-2021', '2021-01-01', '2021-01-02', 1)""")
        conn.execute(f"""INSERT INTO image (id, blobstorage_path, imageset_id, filetype, filesize, width, height, lat,
                                            lon, location_description, date_added) VALUES
            (5, '{c}/uploads/drone-2020/a.jpg', 1, 'JPEG', {len(JPEG_A)}, 64, 48, 52.1, 4.3, 'Rotterdam', '2020-10-02'),
            (6, '{c}/uploads/drone-2020/b.jpg', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2020-10-02'),
            (7, '{c}/uploads/drone-2020/c.png', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2020-10-02'),
            (8, '{c}/uploads/beach-2021/a-again.jpg', 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2021-01-02'),
            (9, '{c}/uploads/beach-2021/lost.jpg', 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2021-01-02')""")
        conn.execute("""INSERT INTO campaign (id, title, status, label_translations, date_created, date_started,
                                              date_completed, date_finished, created_by) VALUES
            (1, 'new one', 'created', NULL, '2021-02-01', NULL, NULL, NULL, 1),
            (2, 'running', 'active', '{"PET": "plastic"}', '2021-02-01', '2021-02-02', NULL, NULL, 1),
            (3, 'labelled', 'completed', NULL, '2021-02-01', '2021-02-02', '2021-02-03', NULL, 1),
            (4, 'done', 'finished', NULL, '2021-02-01', '2021-02-02', '2021-02-03', '2021-02-04', 1)""")
        conn.execute("""INSERT INTO roles (role, user_id, subject_id, subject_type) VALUES
            ('image-admin', 1, NULL, NULL), ('labeler', 2, 2, 'campaign'), ('labeler', 2, 4, 'campaign'),
            ('labeler', 3, 3, 'campaign')""")
        conn.execute("""INSERT INTO campaign_image (id, campaign_id, image_id, labeled) VALUES
            (1, 1, 6, false), (2, 2, 7, true), (3, 2, 8, false), (4, 3, 6, true), (5, 4, 5, true), (6, 4, 6, true)""")
        conn.execute("""INSERT INTO object (id, campaign_image_id, label_translated, label_original, confidence,
                                            date_added, x_min, x_max, y_min, y_max) VALUES
            (11, 2, 'plastic', 'PET', NULL, %(d)s, 1, 20, 2, 30),
            (12, 2, 'wood', NULL, 0.5, %(d)s, 5, 5, 2, 30),
            (13, 5, 'bottle', NULL, 0.9, %(d)s, 10, 60, 8, 40),
            (14, 5, 'net', NULL, 1, '2021-03-05', 0, 64, 0, 48),
            (15, 6, 'bottle', NULL, NULL, %(d)s, 3, 9, 4, 12)""", {"d": STORED})
    return url


def _import(flask_app, source, dry_run=False) -> tuple[int, str]:
    from app.labelapi.command import import_labelapi

    out, err = io.StringIO(), io.StringIO()
    status = import_labelapi(flask_app, source=source, schema="labelapi", dry_run=dry_run, out=out, err=err)
    return status, out.getvalue() + err.getvalue()


def _snapshot(flask_app) -> dict:
    """Every row the import writes, in a comparable form."""
    from sqlalchemy import text

    from app.extensions import db

    tables = {"principals": "name", "api_keys": "key_id", "image_sets": "id", "images": "id",
              "image_set_members": "image_id", "labelapi_images": "image_id", "campaigns": "id",
              "api_key_campaigns": "campaign_id", "campaign_images": "campaign_id, image_id",
              "label_revisions": "id", "objects": "id"}
    with flask_app.app_context(), db.engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY {order}"))]
                for t, order in tables.items()}


def _pair(key_id: str) -> dict:
    return {"Authentication-Key": key_id, "Authentication-Secret": SECRETS[key_id]}


def test_import_keeps_keys_ids_labels_and_backfills_the_blob_facts(client, flask_app, labelapi):
    # --dry-run: the counts of a real run, and nothing changed
    status, output = _import(flask_app, labelapi, dry_run=True)
    assert "would create" in output and "dry run: nothing was changed" in output
    assert _snapshot(flask_app)["images"] == []

    status, output = _import(flask_app, labelapi)
    assert status == 1, output  # one object LabelAPI stored with an empty box cannot be kept: reported
    assert "problem: objects: object 12: empty bounding box 5..5 x 2..30" in output
    counts = _counts(output)  # read, created, already present, problems
    assert counts["images"] == [5, 5, 0, 0] and counts["objects"] == [5, 4, 0, 1] and counts["keys"] == [3, 3, 0, 0]

    # The old key pairs work; the first request checks bcrypt once and stores our HMAC instead
    checks = []
    original = bcrypt.checkpw
    bcrypt.checkpw = lambda *args: checks.append(1) or original(*args)
    try:
        me = client.get("/api/v1/me", headers=_pair("partner-key"))
        assert me.status_code == 200, me.text
        assert me.json()["roles"] == ["labeler"] and me.json()["campaign_ids"] == [2, 4]
        assert client.get("/api/v1/campaigns/2/images", headers=_pair("partner-key")).status_code == 200
        assert len(checks) == 1
    finally:
        bcrypt.checkpw = original
    assert client.get("/api/v1/me", headers={**_pair("partner-key"), "Authentication-Secret": "wrong"}).status_code == 401
    assert client.get("/api/v1/me", headers=_pair("old-key")).status_code == 401  # disabled in LabelAPI: revoked
    admin = _pair("admin-key")
    assert client.get("/api/v1/me", headers=admin).json()["roles"] == ["image-admin"]

    # Ids, paths and labels as LabelAPI had them; blobs read where they are
    image = client.get("/api/v1/images/5/metadata", headers=admin).json()
    assert image["blobstorage_path"] == "uploads/drone-2020/a.jpg" and image["imageset"]["imageset_id"] == 1
    assert image["location_taken"] == {"description": "Rotterdam", "lat": 52.1, "lon": 4.3}
    blob = httpx.get(client.get("/api/v1/images/5", headers=admin, follow_redirects=False).headers["Location"])
    assert blob.status_code == 200 and blob.content == JPEG_A
    objects = client.get("/api/v1/images/5/objects", headers=admin).json()  # campaign 4 is the finished one
    assert [(o["object_id"], o["label"], o["bounding_box"], o["confidence"], o["campaign_id"]) for o in objects] == [
        (13, "bottle", {"xmin": 10, "xmax": 60, "ymin": 8, "ymax": 40}, 0.9, 4),
        (14, "net", {"xmin": 0, "xmax": 64, "ymin": 0, "ymax": 48}, 1, 4)]
    (revision,) = client.get("/api/v1/campaigns/4/images/5/revisions", headers=admin).json()["revisions"]
    assert revision["revision"] == 1 and revision["submitted_by"] == "labeler@partner.org"
    assert revision["date_submitted"].startswith("2021-03-05")
    (kept,) = client.get("/api/v1/images/7/objects?campaigns=2", headers=admin).json()
    assert (kept["label"], kept["label_original"], kept["confidence"]) == ("plastic", "PET", None)
    campaigns = {c["campaign_id"]: c for c in client.get("/api/v1/campaigns", headers=admin).json()["campaigns"]}
    assert {i: c["status"] for i, c in campaigns.items()} == {1: "created", 2: "active", 3: "completed", 4: "finished"}
    assert campaigns[2]["label_translations"] == {"PET": "plastic"} and campaigns[2]["labeler_email"] == \
        "labeler@partner.org"
    assert campaigns[4]["date_finished"].startswith("2021-02-04") and campaigns[4]["progress"] == {"total": 2, "done": 2}
    assert campaigns[3]["labeler_email"] == "gone@partner.org" and campaigns[3]["progress"] == {"total": 1, "done": 1}
    # Paths as LabelAPI clients hold them (with its container, or a leading slash) still find the images
    from app.state import app_state

    c = app_state(flask_app).storage.container
    added = client.post("/api/v1/campaigns/1/images", headers=admin, json=[
        {"filepath": f"{c}/uploads/drone-2020/c.png"}, {"filepath": f"/{c}/uploads/beach-2021/lost.jpg"}])
    assert added.json() == {"added": 2}
    # Our sequences continue after the ids kept
    created = client.post("/api/v1/campaigns", json={"title": "after the move", "labeler_email": "x@example.org"},
                          headers=admin)
    assert created.status_code == 201 and created.json()["campaign_id"] == 5

    # The backfill (queued as a durable job; run here in-process) fills MD5 and dimensions; nothing is dropped
    from app.extensions import db
    from app.labelapi import backfill
    from sqlalchemy import text

    with flask_app.app_context():
        queued = db.session.execute(text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = "
                                         "'backfill_labelapi_images' AND status = 'todo'")).scalar_one()
        assert queued == 1
        assert backfill.backfill() == {"pending": 0, "done": 3, "missing": 1, "duplicate": 1, "unreadable": 0}
        states = dict(db.session.execute(text("SELECT image_id, state || coalesce(':' || duplicate_of, '') "
                                              "FROM labelapi_images")).all())
    assert states == {5: "done", 6: "done", 7: "done", 8: "duplicate:5", 9: "missing"}
    b = client.get("/api/v1/images/6/metadata", headers=admin).json()
    assert b["md5"] == hashlib.md5(JPEG_B).hexdigest() and b["file"] == {
        "filetype": "jpeg", "filesize": len(JPEG_B), "dimensions": {"width": 80, "height": 60}}
    assert client.get("/api/v1/images/9/metadata", headers=admin).json()["md5"] is None  # kept, reported missing

    # A second run changes nothing
    before = _snapshot(flask_app)
    status, output = _import(flask_app, labelapi)
    assert status == 1 and _snapshot(flask_app) == before
    assert all(created == 0 and present + problems == read for read, created, present, problems
               in _counts(output).values()), output


def _counts(output: str) -> dict[str, list[int]]:
    """The summary's rows: label -> [read, created, already present, problems]."""
    found = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 5 and words[0][0].isalpha() and all(w.replace(",", "").isdigit() for w in words[-4:]):
            found[" ".join(words[:-4])] = [int(w.replace(",", "")) for w in words[-4:]]
    return found


def test_an_import_killed_half_way_and_run_again_ends_exact(flask_app, labelapi, settings_overrides):
    """SIGKILL while the import waits on the campaigns table (held by this test), then run it again: the same
    rows as one uninterrupted run, each once."""
    from app.extensions import db
    from sqlalchemy import text

    env = env_for(settings_overrides)
    with flask_app.app_context(), db.engine.connect() as holder:
        holder.execute(text("LOCK TABLE campaigns IN ACCESS EXCLUSIVE MODE"))
        process = subprocess.Popen([sys.executable, "-m", "app", "import-labelapi", "--source", labelapi,
                                    "--schema", "labelapi"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            with flask_app.app_context(), db.engine.connect() as watcher:
                wait_until(lambda: watcher.execute(text("SELECT count(*) FROM images")).scalar_one() == 5,
                           timeout=60, message="the images step to commit")
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        holder.rollback()
    half = _snapshot(flask_app)
    assert len(half["images"]) == 5 and half["campaigns"] == [] and half["objects"] == []
    rerun = subprocess.run([sys.executable, "-m", "app", "import-labelapi", "--source", labelapi, "--schema",
                            "labelapi"], env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr  # the one bad object, as in an uninterrupted run
    after = _snapshot(flask_app)
    assert [len(after[t]) for t in ("principals", "api_keys", "images", "campaigns", "label_revisions", "objects")] == \
        [4, 3, 5, 4, 4, 4]
    assert _counts(rerun.stdout)["images"][1] == 0 and _counts(rerun.stdout)["objects"][1] == 4


def test_blobs_in_another_container_stop_the_import_before_anything_moves(client, flask_app, labelapi):
    with psycopg.connect(labelapi) as conn:
        conn.execute("UPDATE labelapi.image SET blobstorage_path = 'tss/' || blobstorage_path WHERE id = 5")
    status, output = _import(flask_app, labelapi)
    assert status == 2 and "'tss' (1 images)" in output and "AZURE_STORAGE_IMAGESET_CONTAINER" in output
    assert _snapshot(flask_app)["principals"] == []


def test_rotating_an_imported_key_ends_its_legacy_secret(client, flask_app, labelapi, make_key):
    _import(flask_app, labelapi)
    rotated = client.post("/api/v1/keys/admin-key/rotate?grace_seconds=3600", headers=make_key("admin"))
    assert rotated.status_code == 200, rotated.text
    assert client.get("/api/v1/me", headers=_pair("admin-key")).status_code == 401  # no grace for a bcrypt hash
    assert client.get("/api/v1/me", headers={"Authentication-Key": "admin-key",
                                             "Authentication-Secret": rotated.json()["apisecret"]}).status_code == 200
