"""Direct upload (POST /image_sets/{id}/uploads): files in the request itself, through the same pipeline as the
dropbox, catalogued before the answer; labels with the image; the set's validation rules; the ingest histogram."""
import base64
import hashlib
import os

import httpx
import pytest

from app.state import app_state
from tests import images
from tests.helpers import assert_problem, box, finish, report, upload_all


def uploads_url(imageset_id: int) -> str:
    return f"/api/v1/image_sets/{imageset_id}/uploads"


def multipart(*files: tuple[str, bytes]) -> list:
    return [("file", (name, data, "application/octet-stream")) for name, data in files]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_blobs(flask_app, image_set) -> set[str]:
    """The blobs in the set's folder of the image container."""
    storage = app_state(flask_app).storage
    return {b.name for b in storage.container_client.list_blobs(name_starts_with=image_set["blobstorage_path"] + "/")}


def test_multipart_files_are_catalogued_before_the_answer(client, admin, image_set, flask_app):
    good, other = images.jpeg(seed=1, exif={"make": "Canon", "model": "EOS"}), images.png(seed=2)
    answer = client.post(uploads_url(image_set["imageset_id"]), headers=admin, files=multipart(
        ("beach/one.jpg", good), ("two.png", other), ("again.jpg", good), ("notes.jpg", images.text_as_jpeg()),
        ("cut.jpg", images.truncated(images.jpeg(seed=3))), ("empty.jpg", images.empty())))
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [(r["name"], r["outcome"]) for r in results] == [
        ("beach/one.jpg", "accepted"), ("two.png", "accepted"), ("again.jpg", "duplicate"), ("notes.jpg", "rejected"),
        ("cut.jpg", "rejected"), ("empty.jpg", "rejected")]
    assert results[2]["duplicate_of"] == results[0]["image_id"]
    assert results[3]["reason"].startswith("not a recognised image")
    assert results[4]["reason"] == "truncated JPEG: the end-of-image marker is missing"
    assert results[5]["reason"] == "empty file"

    record = client.get(f"/api/v1/images/{results[0]['image_id']}/metadata", headers=admin).json()
    assert record["md5"] == hashlib.md5(good).hexdigest()  # computed by the service from the bytes
    assert record["file"] == {"filetype": "jpeg", "filesize": len(good), "dimensions": {"width": 64, "height": 48}}
    assert record["exif"]["Make"] == "Canon"
    assert record["imageset"]["imageset_id"] == image_set["imageset_id"]
    served = client.get(f"/api/v1/images/{results[0]['image_id']}", headers=admin, follow_redirects=False)
    stored = httpx.get(served.headers["Location"])
    assert stored.content == good and stored.headers["content-type"] == "image/jpeg"

    rows = report(client, admin, image_set["imageset_id"])
    assert {name: (row["source"], row["outcome"]) for name, row in rows.items()} == {
        "beach/one.jpg": ("upload", "accepted"), "two.png": ("upload", "accepted"), "again.jpg": ("upload", "duplicate"),
        "notes.jpg": ("upload", "rejected"), "cut.jpg": ("upload", "rejected"), "empty.jpg": ("upload", "rejected")}
    # only the two images' blobs were kept: nothing for the duplicate or the rejected files
    assert len(image_blobs(flask_app, image_set)) == 2
    assert client.get(f"/api/v1/image_sets/{image_set['imageset_id']}", headers=admin).json()["status"] == "created"

    buckets = client.get("/api/v1/monitoring/ingest?minutes=5", headers=admin).json()["minutes"]
    outcomes = ("accepted", "duplicate", "rejected", "failed")

    def total(counts_of) -> dict:  # over the minutes (the request may straddle one)
        return {k: sum(counts_of(b)[k] for b in buckets) for k in outcomes}

    assert total(lambda b: b) == {"accepted": 2, "duplicate": 1, "rejected": 3, "failed": 0}
    assert total(lambda b: b["by_source"]["upload"]) == {"accepted": 2, "duplicate": 1, "rejected": 3, "failed": 0}
    assert total(lambda b: b["by_source"]["dropbox"]) == {"accepted": 0, "duplicate": 0, "rejected": 0, "failed": 0}


def test_json_files_with_metadata_and_bad_items(client, admin, image_set):
    answer = client.post(uploads_url(image_set["imageset_id"]), headers=admin, json={"files": [
        {"name": "a.jpg", "content_base64": b64(images.jpeg(seed=5)), "metadata": {"device": "cam-7"}},
        {"name": "b.jpg", "content_base64": "not base64 at all!"},
        {"name": "../escape.jpg", "content_base64": b64(images.jpeg(seed=6))}]})
    assert answer.status_code == 200, answer.text
    a, b, escape = answer.json()["results"]
    assert a["outcome"] == "accepted"
    assert client.get(f"/api/v1/images/{a['image_id']}/metadata", headers=admin).json()["metadata"] == {"device": "cam-7"}
    assert (b["outcome"], b["reason"]) == ("rejected", "content_base64 is not valid base64")
    assert escape["outcome"] == "rejected" and escape["reason"].startswith("unsafe file name")


def test_a_multipart_request_without_a_file_part_is_refused_naming_file(client, admin, image_set):
    """Found by the fuzz test: an empty multipart body (only its closing boundary) was answered 200 with no
    results, as if files had been taken."""
    for body in (b"--edge--\r\n", b'--edge\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--edge--\r\n'):
        refused = client.post(uploads_url(image_set["imageset_id"]), headers={
            **admin, "Content-Type": "multipart/form-data; boundary=edge"}, content=body)
        problem = assert_problem(refused, 422)
        assert problem["field"] == "file" and "file" in problem["detail"]
    listed = client.get(f"/api/v1/image_sets/{image_set['imageset_id']}/images", headers=admin).json()
    assert listed["images"] == []


def test_a_file_already_catalogued_by_the_dropbox_is_a_duplicate(client, admin, image_set, make_image_set,
                                                                  start_worker):
    start_worker()
    data = images.jpeg(seed=8)
    upload_all(image_set["dropbox_url"], {"first.jpg": data})
    first = finish(client, admin, image_set["imageset_id"])
    assert first["progress"]["accepted"] == 1
    other = make_image_set()
    result = client.post(uploads_url(other["imageset_id"]), headers=admin,
                         files=multipart(("same.jpg", data))).json()["results"][0]
    image_id = report(client, admin, image_set["imageset_id"])["first.jpg"]["image_id"]
    assert (result["outcome"], result["duplicate_of"]) == ("duplicate", image_id)


def test_labels_with_the_image_become_a_revision_by_the_caller(client, admin, image_set, make_campaign):
    campaign = make_campaign(labels=["bottle", "net"])
    answer = client.post(uploads_url(image_set["imageset_id"]), headers=admin, json={"files": [
        {"name": "labelled.jpg", "content_base64": b64(images.jpeg(seed=11, width=100, height=80)),
         "campaign_id": campaign["campaign_id"],
         "objects": [{"bounding_box": box(10, 60, 8, 40), "label": "bottle"}]},
        {"name": "bad-label.jpg", "content_base64": b64(images.jpeg(seed=12, width=100, height=80)),
         "campaign_id": campaign["campaign_id"], "objects": [{"bounding_box": box(10, 60, 8, 40), "label": "tyre"}]},
        {"name": "outside.jpg", "content_base64": b64(images.jpeg(seed=13, width=100, height=80)),
         "campaign_id": campaign["campaign_id"], "objects": [{"bounding_box": box(10, 600, 8, 40), "label": "net"}]}]})
    assert answer.status_code == 200, answer.text
    labelled, bad_label, outside = answer.json()["results"]
    assert (labelled["outcome"], labelled["objects"]) == ("accepted", 1)
    revisions = client.get(f"/api/v1/campaigns/{campaign['campaign_id']}/images/{labelled['image_id']}/revisions",
                           headers=admin).json()
    me = client.get("/api/v1/me", headers=admin).json()
    assert [(r["revision"], r["key_id"], len(r["objects"])) for r in revisions["revisions"]] == [(1, me["key_id"], 1)]
    objects = client.get(f"/api/v1/images/{labelled['image_id']}/objects?campaigns={campaign['campaign_id']}",
                         headers=admin).json()
    assert [o["label"] for o in objects] == ["bottle"]
    # all or nothing per file: labels refused, so no image either
    assert bad_label["outcome"] == "rejected" and "'tyre' is not in this campaign's labels" in bad_label["reason"]
    assert outside["outcome"] == "rejected" and "bounding_box" in outside["reason"]
    md5s = {hashlib.md5(images.jpeg(seed=s, width=100, height=80)).hexdigest() for s in (12, 13)}
    for md5 in md5s:
        assert client.get(f"/api/v1/images?md5={md5}", headers=admin).json()["images"] == []
    after = client.get(f"/api/v1/campaigns/{campaign['campaign_id']}", headers=admin).json()
    assert (after["status"], after["progress"]) == ("completed", {"total": 1, "done": 1})
    # a completed campaign takes the next labelled upload: active while the image joins, complete again after
    more = client.post(uploads_url(image_set["imageset_id"]), headers=admin, json={"files": [
        {"name": "more.jpg", "content_base64": b64(images.jpeg(seed=14, width=100, height=80)),
         "campaign_id": campaign["campaign_id"], "objects": []}]}).json()["results"][0]
    assert (more["outcome"], more["objects"]) == ("accepted", 0)
    after = client.get(f"/api/v1/campaigns/{campaign['campaign_id']}", headers=admin).json()
    assert (after["status"], after["progress"]) == ("completed", {"total": 2, "done": 2})


def test_uploader_keys_fill_their_own_set_only(client, make_key, image_set, make_image_set):
    uploader = make_key("uploader", device="camera-3", email=None, imageset_ids=[image_set["imageset_id"]])
    mine = client.post(uploads_url(image_set["imageset_id"]), headers=uploader,
                       files=multipart(("device.jpg", images.jpeg(seed=21))))
    assert mine.status_code == 200 and mine.json()["results"][0]["outcome"] == "accepted"
    other = make_image_set()
    assert_problem(client.post(uploads_url(other["imageset_id"]), headers=uploader,
                               files=multipart(("device.jpg", images.jpeg(seed=22)))), 404)


def test_objects_for_a_campaign_the_caller_may_not_label_store_nothing(client, admin, make_key, image_set,
                                                                       make_campaign, flask_app):
    campaign = make_campaign()
    uploader = make_key("uploader", device="camera-4", email=None, imageset_ids=[image_set["imageset_id"]])
    before = image_blobs(flask_app, image_set)
    refused = client.post(uploads_url(image_set["imageset_id"]), headers=uploader, json={"files": [
        {"name": "a.jpg", "content_base64": b64(images.jpeg(seed=31)), "campaign_id": campaign["campaign_id"],
         "objects": [{"bounding_box": box(), "label": "bottle"}]}]})
    problem = assert_problem(refused, 404)
    assert "files[0]" in problem["detail"]
    assert client.get("/api/v1/images", headers=admin).json()["images"] == []
    assert report(client, admin, image_set["imageset_id"]) == {}
    assert image_blobs(flask_app, image_set) == before == set()
    missing = client.post(uploads_url(image_set["imageset_id"]), headers=admin, json={"files": [
        {"name": "a.jpg", "content_base64": b64(images.jpeg(seed=31)), "campaign_id": 999999, "objects": []}]})
    assert_problem(missing, 404)


def test_uploads_close_when_finishing_starts(client, admin, image_set, start_worker):
    start_worker()
    finish(client, admin, image_set["imageset_id"])
    closed = client.post(uploads_url(image_set["imageset_id"]), headers=admin,
                         files=multipart(("late.jpg", images.jpeg(seed=41))))
    assert "finished" in assert_problem(closed, 409)["detail"]


def test_every_source_applies_the_sets_validation_rules(client, admin, make_image_set, start_worker):
    rules = {"formats": ["jpeg"], "min_width": 100, "max_height": 500, "required_exif": ["gps"], "max_bytes": 200_000}
    image_set = make_image_set(validation=rules)
    assert image_set["validation"] == {**rules, "min_height": None, "max_width": None}
    files = {
        "ok.jpg": images.jpeg(seed=51, width=120, height=100, exif={"gps": (51.9, 4.4)}),
        "narrow.jpg": images.jpeg(seed=52, width=64, height=100, exif={"gps": (51.9, 4.4)}),
        "no-gps.jpg": images.jpeg(seed=53, width=120, height=100),
        "a.png": images.png(seed=54, width=120, height=100),
    }
    expected = {
        "ok.jpg": None,
        "narrow.jpg": "rule min_width: width 64 is less than 100",
        "no-gps.jpg": "rule required_exif: the file has no GPS position in its EXIF",
        "a.png": "rule formats: png is not allowed (allowed: jpeg)",
    }
    uploaded = client.post(uploads_url(image_set["imageset_id"]), headers=admin,
                           files=multipart(*files.items())).json()["results"]
    assert {r["name"]: r.get("reason") for r in uploaded} == expected

    by_dropbox = make_image_set(validation=rules)
    upload_all(by_dropbox["dropbox_url"], {f"d-{name}": data for name, data in files.items()})
    start_worker()
    finish(client, admin, by_dropbox["imageset_id"])
    rows = report(client, admin, by_dropbox["imageset_id"])
    # the dropbox's copies of the same bytes: the accepted one is a duplicate of the upload
    assert {name[2:]: row["reason"] for name, row in rows.items()} == expected
    assert rows["d-ok.jpg"]["outcome"] == "duplicate"


@pytest.mark.parametrize("rules, field", [({"min_width": 200, "max_width": 100}, "validation.min_width"),
                                          ({"max_bytes": 10 ** 12}, "validation.max_bytes")])
def test_rules_that_cannot_hold_are_refused(client, admin, rules, field):
    refused = client.post("/api/v1/image_sets", json={"title": "bad rules", "validation": rules}, headers=admin)
    assert assert_problem(refused, 422)["field"] == field
    assert client.get("/api/v1/image_sets", headers=admin).json()["image_sets"] == []


def test_a_request_over_its_limit_is_refused_before_it_is_read(settings_overrides, admin):
    from app.factory import create_app
    from app.settings import load

    small = create_app(load(**{**settings_overrides, "max_upload_request_bytes": 50_000}))
    client = small.test_client()
    headers = admin  # the same database: the key works on this app too
    image_set = client.post("/api/v1/image_sets", json={"title": "small limit"}, headers=headers).json()
    big = client.post(uploads_url(image_set["imageset_id"]), headers=headers,
                      files=multipart(("big.jpg", os.urandom(60_000))))
    assert "MAX_UPLOAD_REQUEST_BYTES" in assert_problem(big, 413)["detail"]
    fits = client.post(uploads_url(image_set["imageset_id"]), headers=headers,
                       files=multipart(("small.jpg", images.jpeg(seed=62))))
    assert fits.status_code == 200


def test_an_api_killed_mid_upload_strands_no_blob_once_swept(client, admin, image_set, flask_app, processes,
                                                             settings_overrides):
    """kill -9 of the API while it stores a request's files: nothing was catalogued (the request never
    committed), and every blob it stored is named in stray_blobs, which the sweep follows and empties."""
    import signal
    import sys
    import threading
    from datetime import timedelta

    from sqlalchemy import text

    from app.embedded.ports import free_port, wait_for_port
    from app.extensions import db
    from app.services import housekeeping
    from tests.helpers import env_for, wait_until

    port = free_port()
    api = processes.start([sys.executable, "-m", "uvicorn", "main:app", "--port", str(port), "--log-level", "warning"],
                          env=env_for({**settings_overrides, "log_level": "WARNING"}))
    wait_for_port("127.0.0.1", port)
    files = multipart(*((f"frame-{n:03d}.png", images.png(seed=5000 + n, width=32, height=24)) for n in range(300)))

    def send():
        try:
            httpx.post(f"http://127.0.0.1:{port}{uploads_url(image_set['imageset_id'])}", headers=admin, files=files,
                       timeout=60)
        except httpx.HTTPError:
            pass  # the process died under it

    sender = threading.Thread(target=send)
    sender.start()

    def strays() -> int:
        with flask_app.app_context():
            count = db.session.scalar(text("SELECT count(*) FROM stray_blobs"))
            db.session.rollback()
            return count

    wait_until(lambda: strays() >= 5, timeout=60, message="the request to store some files")
    os.killpg(api.pid, signal.SIGKILL)
    api.wait()
    sender.join(60)

    noted = strays()
    assert image_blobs(flask_app, image_set) and len(image_blobs(flask_app, image_set)) <= noted
    with flask_app.app_context():
        assert db.session.scalar(text("SELECT count(*) FROM images")) == 0  # never committed
        db.session.rollback()
        assert housekeeping.sweep_stray_blobs() == 0  # young rows: their requests may still be running
        swept = housekeeping.sweep_stray_blobs(older_than=timedelta(0))
    assert swept == noted  # every noted path, whether its blob got stored or not
    assert image_blobs(flask_app, image_set) == set() and strays() == 0


def test_an_upload_that_commits_leaves_no_stray_row_and_the_sweep_keeps_catalogued_copies(
        client, admin, image_set, flask_app, app_context):
    from datetime import timedelta

    from sqlalchemy import text

    from app.extensions import db
    from app.services import housekeeping

    answer = client.post(uploads_url(image_set["imageset_id"]), headers=admin,
                         files=multipart(("kept.png", images.png(seed=71))))
    assert answer.json()["results"][0]["outcome"] == "accepted"
    assert db.session.scalar(text("SELECT count(*) FROM stray_blobs")) == 0
    [kept] = image_blobs(flask_app, image_set)
    # A row left by a request that died after its commit could not happen; one naming a catalogued copy
    # (written by hand here) must never make the sweep delete it.
    db.session.execute(text("INSERT INTO stray_blobs (path, at) VALUES (:p, now() - interval '2 hours')"),
                       {"p": kept})
    db.session.commit()
    assert housekeeping.sweep_stray_blobs() == 0
    assert image_blobs(flask_app, image_set) == {kept}
    assert db.session.scalar(text("SELECT count(*) FROM stray_blobs")) == 0
    assert housekeeping.sweep_stray_blobs(older_than=timedelta(0)) == 0
