"""Image sets end to end against Azurite, uploading with plain HTTP as azcopy or Storage Explorer would."""
from __future__ import annotations

import hashlib
import os
import signal
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import update

from app.state import app_state
from tests import images
from tests.helpers import QUICK_RECOVERY, assert_problem, blob_url, finish, put, report, upload_all, wait_until


# --- creating ---------------------------------------------------------------------------------------

def test_create_gives_a_set_and_its_upload_url(client, admin, make_image_set):
    created = make_image_set("Beach survey 2026", metadata={"site": "Kamilo"})
    assert created["status"] == "created" and created["metadata"] == {"site": "Kamilo"}
    assert created["blobstorage_path"] == "imagesets/Beach survey 2026"
    assert created["progress"] == {"total": None, "done": 0, "accepted": 0, "duplicates": 0, "rejected": 0, "failed": 0}
    assert created["created_by"].endswith("@example.org")
    sas = parse_qs(urlsplit(created["dropbox_url"]).query)
    assert set(sas["sp"][0]) == set("acwl")  # add, create, write, list: never read or delete
    listed = client.get("/api/v1/image_sets", headers=admin).json()
    assert listed["pagination"]["total"] == 1 and listed["image_sets"][0]["title"] == "Beach survey 2026"
    assert "dropbox_url" not in listed["image_sets"][0]


def test_create_cut_off_at_commit_leaves_no_upload_area(client, admin, flask_app):
    """The database connection is lost just as the new set commits: 503, no set, and no orphan container."""
    from sqlalchemy import event, text

    from app.extensions import db

    storage = app_state(flask_app).storage
    areas_before = {c.name for c in storage.service.list_containers(name_starts_with=f"{storage.container}-up-")}

    def cut(session):
        pid = session.connection().execute(text("SELECT pg_backend_pid()")).scalar_one()
        with db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    with flask_app.app_context():
        event.listen(db.session, "before_commit", cut)
        try:
            response = client.post("/api/v1/image_sets", json={"title": "cut off"}, headers=admin)
        finally:
            event.remove(db.session, "before_commit", cut)
    assert_problem(response, 503)
    assert response.headers["Retry-After"]
    areas_after = {c.name for c in storage.service.list_containers(name_starts_with=f"{storage.container}-up-")}
    assert areas_after == areas_before
    listed = client.get("/api/v1/image_sets", headers=admin).json()["image_sets"]
    assert "cut off" not in [s["title"] for s in listed]


def test_duplicate_title_is_409_and_bad_title_422(client, admin, make_image_set):
    make_image_set("taken")
    body = assert_problem(client.post("/api/v1/image_sets", json={"title": "taken"}, headers=admin), 409)
    assert "taken" in body["detail"]
    for title in ("a/b", "back\\slash", "trailing.", " padded "):
        response = client.post("/api/v1/image_sets", json={"title": title}, headers=admin)
        assert_problem(response, 422)
        assert response.json()["field"] == "title"
    assert_problem(client.post("/api/v1/image_sets", json={"title": "x" * 129}, headers=admin), 400)
    assert client.get("/api/v1/image_sets", headers=admin).json()["pagination"]["total"] == 1


# --- the upload URL, checked by Azurite as Azure would ------------------------------------------------

def test_dropbox_url_uploads_and_lists_but_cannot_read_or_delete(image_set):
    url = image_set["dropbox_url"]
    assert put(url, "dir/a.jpg", images.jpeg()).status_code == 201
    listing = httpx.get(url + "&restype=container&comp=list")
    assert listing.status_code == 200 and "dir/a.jpg" in listing.text
    assert httpx.get(blob_url(url, "dir/a.jpg")).status_code == 403
    assert httpx.delete(blob_url(url, "dir/a.jpg")).status_code == 403


def test_dropbox_url_cannot_write_outside_its_set(make_image_set, settings):
    mine, other = make_image_set(), make_image_set()
    base, _, sas = mine["dropbox_url"].partition("?")
    account = base.rsplit("/", 1)[0]
    other_container = other["dropbox_url"].split("?")[0].rsplit("/", 1)[1]
    for container in (other_container, settings.azure_storage_imageset_container):
        response = httpx.put(f"{account}/{container}/sneaky.jpg?{sas}", content=images.jpeg(),
                             headers={"x-ms-blob-type": "BlockBlob"})
        assert response.status_code == 403, container


def test_expired_upload_url_is_refused(flask_app, image_set):
    storage = app_state(flask_app).storage
    container = image_set["dropbox_url"].split("?")[0].rsplit("/", 1)[1]
    expired = storage.upload_area_url(container, timedelta(seconds=-1)).url
    assert put(expired, "late.jpg", images.jpeg()).status_code == 403


def test_new_dropbox_url_only_while_filling(client, admin, image_set, start_worker):
    fresh = client.post(f"/api/v1/image_sets/{image_set['imageset_id']}/dropbox_url", headers=admin)
    assert fresh.status_code == 200 and put(fresh.json()["dropbox_url"], "a.jpg", images.jpeg()).status_code == 201
    start_worker()
    finish(client, admin, image_set["imageset_id"])
    assert_problem(client.post(f"/api/v1/image_sets/{image_set['imageset_id']}/dropbox_url", headers=admin), 409)


# --- finishing ------------------------------------------------------------------------------------

def test_finishing_sorts_every_kind_of_file(client, admin, make_image_set, start_worker, flask_app):
    start_worker()
    earlier = make_image_set("earlier")
    already_stored = images.jpeg(seed=99)
    put(earlier["dropbox_url"], "old.jpg", already_stored)
    finish(client, admin, earlier["imageset_id"])

    good_jpeg, good_png = images.jpeg(seed=1), images.png(seed=2)
    sydney = images.jpeg(seed=3, exif={"gps": (-33.8688, 151.2093), "datetime_original": "2024:05:06 07:08:09",
                                       "make": "Canon", "model": "EOS 5D", "orientation": 1})
    files = {
        "good.jpg": good_jpeg, "good.png": good_png, "copy of good.jpg": good_jpeg,
        "near/good.jpg": images.near_duplicate(good_jpeg), "empty.jpg": images.empty(),
        "notes.jpg": images.text_as_jpeg(), "cut.jpg": images.truncated(images.jpeg(seed=4, width=400, height=300)),
        "bomb.png": images.bomb_png(), "sydney.jpg": sydney, "again.jpg": already_stored,
    }
    image_set = make_image_set("mixed")
    upload_all(image_set["dropbox_url"], files)
    done = finish(client, admin, image_set["imageset_id"])
    assert done["status"] == "finished" and done["date_finished"]
    assert done["progress"] == {"total": 10, "done": 10, "accepted": 4, "duplicates": 2, "rejected": 4, "failed": 0}

    outcome = report(client, admin, image_set["imageset_id"])
    # Of two identical files, the first by name is kept and the other reported as its duplicate.
    assert {n for n, f in outcome.items() if f["outcome"] == "accepted"} == {"copy of good.jpg", "good.png",
                                                                            "near/good.jpg", "sydney.jpg"}
    assert outcome["good.jpg"]["outcome"] == "duplicate"
    assert outcome["good.jpg"]["image_id"] == outcome["copy of good.jpg"]["image_id"]
    old_id = report(client, admin, earlier["imageset_id"])["old.jpg"]["image_id"]
    assert outcome["again.jpg"] == {**outcome["again.jpg"], "outcome": "duplicate", "image_id": old_id}
    assert outcome["empty.jpg"]["reason"] == "empty file"
    assert "not a recognised image" in outcome["notes.jpg"]["reason"]
    assert "truncated JPEG" in outcome["cut.jpg"]["reason"]
    assert "decompression bomb" in outcome["bomb.png"]["reason"]

    photo = client.get(f"/api/v1/images/{outcome['sydney.jpg']['image_id']}/metadata", headers=admin).json()
    assert photo["location_taken"]["lat"] == pytest.approx(-33.8688, abs=1e-4)
    assert photo["location_taken"]["lon"] == pytest.approx(151.2093, abs=1e-4)
    assert photo["date_taken"].startswith("2024-05-06T07:08:09")
    assert photo["exif"]["Make"] == "Canon" and photo["exif"]["Model"] == "EOS 5D"
    assert photo["file"] == {"filetype": "jpeg", "filesize": len(sydney), "dimensions": {"width": 64, "height": 48}}
    assert photo["md5"] == hashlib.md5(sydney).hexdigest()
    assert photo["imageset"] == {"imageset_id": image_set["imageset_id"], "title": "mixed"}
    assert photo["blobstorage_path"] == "imagesets/mixed/sydney.jpg"

    members = client.get(f"/api/v1/image_sets/{image_set['imageset_id']}/images?per_page=100", headers=admin).json()
    assert members["pagination"]["total"] == 5  # four new images and the one it already had
    container = image_set["dropbox_url"].split("?")[0].rsplit("/", 1)[1]
    storage = app_state(flask_app).storage
    assert list(storage.list_upload_area(container)) == [] and not storage.service.get_container_client(
        container).exists()


def test_status_moves(client, admin, image_set, start_worker):
    imageset_id = image_set["imageset_id"]
    assert_problem(client.put(f"/api/v1/image_sets/{imageset_id}", json={"new_status": "created"}, headers=admin), 400)
    start_worker()
    finish(client, admin, imageset_id)
    body = assert_problem(client.put(f"/api/v1/image_sets/{imageset_id}", json={"new_status": "finished"},
                                     headers=admin), 409)
    assert "finished" in body["detail"] and body["current_status"] == "finished"


def test_killed_worker_mid_finishing_loses_and_doubles_nothing(client, admin, image_set, start_worker, flask_app):
    files = {f"batch/{i:04d}.png": images.png(seed=i, width=16, height=16) for i in range(300)}
    files["batch/dup.png"] = files["batch/0007.png"]
    upload_all(image_set["dropbox_url"], files)
    imageset_id = image_set["imageset_id"]

    doomed = start_worker(finish_batch_size=10, finish_concurrency=2)
    client.put(f"/api/v1/image_sets/{imageset_id}", json={"new_status": "finished"}, headers=admin)
    wait_until(lambda: client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()["progress"]["done"] >= 60,
               timeout=60, message="finishing to be under way")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    assert client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()["status"] == "finishing"

    start_worker(**QUICK_RECOVERY)  # notices the dead worker's silence sooner
    done = wait_until(lambda: (lambda s: s if s["status"] == "finished" else None)(
        client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()), timeout=90, message="resumed finish")
    assert done["progress"] == {"total": 301, "done": 301, "accepted": 300, "duplicates": 1, "rejected": 0, "failed": 0}
    outcome = report(client, admin, imageset_id)
    assert len(outcome) == 301 and outcome["batch/dup.png"]["image_id"] == outcome["batch/0007.png"]["image_id"]
    listed = client.get(f"/api/v1/images?imageset_id={imageset_id}&per_page=1000", headers=admin).json()
    assert listed["pagination"]["total"] == 300
    assert len({i["md5"] for i in listed["images"]}) == 300
    storage = app_state(flask_app).storage
    stored = list(storage.container_client.list_blobs(name_starts_with=f"imagesets/{image_set['title']}/"))
    assert len(stored) == 300  # no orphan copies
    container = image_set["dropbox_url"].split("?")[0].rsplit("/", 1)[1]
    assert not storage.service.get_container_client(container).exists()


# --- reading images --------------------------------------------------------------------------------

def test_redirect_url_downloads_the_original_and_cannot_write(client, admin, image_set, start_worker):
    original = images.jpeg(seed=11, width=120, height=90)
    put(image_set["dropbox_url"], "photo.jpg", original)
    start_worker()
    finish(client, admin, image_set["imageset_id"])
    image_id = report(client, admin, image_set["imageset_id"])["photo.jpg"]["image_id"]

    redirect = client.get(f"/api/v1/images/{image_id}", headers=admin, follow_redirects=False)
    assert redirect.status_code == 303
    location = redirect.headers["Location"]
    assert httpx.get(location).content == original
    assert parse_qs(urlsplit(location).query)["sp"] == ["r"]
    as_json = client.get(f"/api/v1/images/{image_id}/url", headers=admin).json()
    assert httpx.get(as_json["url"]).content == original
    from datetime import datetime, timezone

    lifetime = datetime.fromisoformat(as_json["expires_at"]) - datetime.now(timezone.utc)
    assert timedelta(minutes=59) < lifetime <= timedelta(minutes=60)  # IMAGE_READ_TOKEN_VALID_MINUTES, per request
    written = httpx.put(location, content=b"overwrite", headers={"x-ms-blob-type": "BlockBlob"})
    assert written.status_code == 403
    assert httpx.get(location).content == original
    assert_problem(client.get("/api/v1/images/999999", headers=admin), 404)


@pytest.fixture
def catalogue(app_context, make_image_set):
    """25 images written straight to the catalogue, with varied fields to filter on."""
    from datetime import datetime, timezone

    from app.extensions import db
    from app.models import Image, ImageSetMember

    sets = [make_image_set(), make_image_set()]
    rows = []
    for i in range(25):
        image_set = sets[i % 2]
        rows.append(Image(imageset_id=image_set["imageset_id"], blobstorage_path=f"imagesets/t/{i}.jpg",
                          md5=f"{i:032x}", type="drone" if i % 5 == 0 else "beach", filetype="jpeg", filesize=100,
                          width=10, height=10, camera_make="Canon" if i < 10 else "Nikon", camera_model="X",
                          date_taken=datetime(2024, 1, 1 + i, tzinfo=timezone.utc)))
    db.session.add_all(rows)
    db.session.flush()
    db.session.add_all(ImageSetMember(imageset_id=r.imageset_id, image_id=r.id) for r in rows)
    db.session.commit()
    return {"sets": sets, "ids": [r.id for r in rows]}


def test_pages_and_cursor_walk_the_whole_catalogue_once(client, admin, catalogue):
    first = client.get("/api/v1/images?per_page=10", headers=admin).json()
    assert first["pagination"] == {"page": 1, "pages": 3, "total": 25, "per_page": 10, "next": 2, "prev": None}
    last = client.get("/api/v1/images?per_page=10&page=3", headers=admin).json()
    assert len(last["images"]) == 5 and last["pagination"]["next"] is None and last["next_cursor"] is None

    seen, cursor = [], ""
    while cursor is not None:
        page = client.get(f"/api/v1/images?per_page=7&cursor={cursor}", headers=admin).json()
        assert page["pagination"] is None
        seen += [i["image_id"] for i in page["images"]]
        cursor = page["next_cursor"]
    assert seen == catalogue["ids"]
    assert_problem(client.get("/api/v1/images?cursor=bogus!", headers=admin), 400)


@pytest.mark.parametrize("query, expected", [
    ("md5=" + f"{3:032x}", [3]),
    ("type=drone", [0, 5, 10, 15, 20]),
    ("camera_make=Canon&camera_model=X", list(range(10))),
    ("date_taken_from=2024-01-03T00:00:00Z&date_taken_to=2024-01-06T00:00:00Z", [2, 3, 4]),
    ("imageset_id={set1}", list(range(1, 25, 2))),
])
def test_filters(client, admin, catalogue, query, expected):
    query = query.format(set1=catalogue["sets"][1]["imageset_id"])
    found = client.get(f"/api/v1/images?per_page=100&{query}", headers=admin).json()["images"]
    assert [i["image_id"] for i in found] == [catalogue["ids"][n] for n in expected]


def test_add_existing_images_all_or_nothing(client, admin, catalogue, make_image_set):
    target = make_image_set()["imageset_id"]
    url = f"/api/v1/image_sets/{target}/images"
    body = assert_problem(client.post(url, json=[{"id": catalogue["ids"][0]}, {"filepath": "nowhere.jpg"}],
                                      headers=admin), 404)
    assert body["index"] == 1 and "nowhere.jpg" in body["detail"]
    assert client.get(url, headers=admin).json()["pagination"]["total"] == 0
    added = client.post(url, json=[{"id": catalogue["ids"][0]}, {"filepath": "imagesets/t/1.jpg"},
                                   {"id": catalogue["ids"][0]}], headers=admin)
    assert added.json() == {"added": 2}
    assert client.get(url, headers=admin).json()["pagination"]["total"] == 2


def put_in_blocks(container_url: str, name: str, data: bytes, block_size: int = 1000) -> None:
    """Put Block + Put Block List, as azcopy does for large files: the blob gets no Content-MD5."""
    import base64

    ids = []
    for n, start in enumerate(range(0, len(data), block_size)):
        block_id = base64.b64encode(f"block-{n:06d}".encode()).decode()
        ids.append(block_id)
        response = httpx.put(blob_url(container_url, name) + f"&comp=block&blockid={block_id}",
                             content=data[start:start + block_size], headers={"x-ms-version": "2021-08-06"})
        assert response.status_code == 201, response.text
    body = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(
        f"<Latest>{i}</Latest>" for i in ids) + "</BlockList>"
    response = httpx.put(blob_url(container_url, name) + "&comp=blocklist", content=body,
                         headers={"x-ms-version": "2021-08-06"})
    assert response.status_code == 201, response.text


def test_md5_is_streamed_when_storage_has_none(client, admin, image_set, start_worker, flask_app):
    data = images.jpeg(seed=21, width=300, height=200)
    put_in_blocks(image_set["dropbox_url"], "blocks.jpg", data)
    container = image_set["dropbox_url"].split("?")[0].rsplit("/", 1)[1]
    stored = app_state(flask_app).storage.service.get_blob_client(container, "blocks.jpg")
    assert stored.get_blob_properties().content_settings.content_md5 is None  # block uploads carry no MD5
    start_worker()
    finish(client, admin, image_set["imageset_id"])
    image_id = report(client, admin, image_set["imageset_id"])["blocks.jpg"]["image_id"]
    image = client.get(f"/api/v1/images/{image_id}/metadata", headers=admin).json()
    assert image["md5"] == hashlib.md5(data).hexdigest()
    assert image["file"]["dimensions"] == {"width": 300, "height": 200}


def test_failed_finishing_shows_why_and_can_be_retried(client, admin, image_set, start_worker, flask_app,
                                                      app_context, monkeypatch):
    from types import SimpleNamespace

    from app.jobs.tasks import BACKOFF, finish_image_set
    from app.storage import StorageError

    imageset_id = image_set["imageset_id"]
    put(image_set["dropbox_url"], "a.jpg", images.jpeg(seed=31))
    storage = app_state(flask_app).storage

    def unreachable(container, **listing):
        raise StorageError("blob storage unreachable: connection refused")

    from app.extensions import db
    from app.models import ImageSet

    db.session.get(ImageSet, imageset_id).status = "finishing"
    db.session.commit()
    with monkeypatch.context() as patch:
        patch.setattr(storage, "upload_area_pages", unreachable)
        for attempts, status in ((0, "finishing"), (BACKOFF.max_attempts - 1, "failed")):
            with pytest.raises(StorageError):  # raised, so the queue retries it while attempts remain
                finish_image_set(SimpleNamespace(job=SimpleNamespace(attempts=attempts), should_abort=lambda: False),
                                 imageset_id=imageset_id)
            assert client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()["status"] == status
    failed = client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()
    assert failed["error"] == "StorageError: blob storage unreachable: connection refused"

    start_worker()
    done = finish(client, admin, imageset_id)  # PUT new_status=finished again: allowed from failed
    assert done["status"] == "finished" and done["error"] is None and done["progress"]["accepted"] == 1


def test_uploader_key_fills_its_own_set(client, make_key, image_set, make_image_set):
    uploader = make_key("uploader", device="camera-3", email=None, imageset_ids=[image_set["imageset_id"]])
    fresh = client.post(f"/api/v1/image_sets/{image_set['imageset_id']}/dropbox_url", headers=uploader)
    assert fresh.status_code == 200
    assert put(fresh.json()["dropbox_url"], "from-camera.jpg", images.jpeg(seed=41)).status_code == 201
    other = make_image_set()
    assert client.post(f"/api/v1/image_sets/{other['imageset_id']}/dropbox_url", headers=uploader).status_code == 404
    assert client.get("/api/v1/images", headers=uploader).status_code == 403


def test_an_uploader_adds_only_its_own_sets_images_and_cannot_tell_others_from_absent(client, make_key, admin,
                                                                                       make_image_set, app_context):
    from app.extensions import db
    from app.models import Image

    own, second, other = (make_image_set()["imageset_id"] for _ in range(3))
    mine, theirs = (Image(imageset_id=s, blobstorage_path=f"imagesets/{s}/{name}.jpg", md5=f"{n:032x}",
                          filetype="jpeg", filesize=10, width=4, height=3)
                    for n, (s, name) in enumerate([(own, "mine"), (other, "theirs")]))
    db.session.add_all([mine, theirs])
    db.session.commit()
    uploader = make_key("uploader", device="camera-9", email=None, imageset_ids=[own, second])

    def add(ref, headers=uploader):
        return client.post(f"/api/v1/image_sets/{second}/images", json=[ref], headers=headers)

    assert add({"id": mine.id}).json() == {"added": 1}  # its own image, into its other set
    # Another set's image and one that does not exist get the same answer, by id and by path.
    by_id = [add({"id": theirs.id}), add({"id": theirs.id + 1000})]
    by_path = [add({"filepath": theirs.blobstorage_path}), add({"filepath": "imagesets/none/theirs.jpg"})]
    for (other_set, absent), named in ((by_id, (theirs.id, theirs.id + 1000)),
                                       (by_path, (theirs.blobstorage_path, "imagesets/none/theirs.jpg"))):
        answers = [assert_problem(response, 404) for response in (other_set, absent)]
        for answer, name in zip(answers, named):
            answer["detail"] = answer["error"] = answer["detail"].replace(str(name), "<ref>")
        assert answers[0] == answers[1]
    assert add({"id": theirs.id}, headers=admin).json() == {"added": 1}  # an image-admin or admin may


def test_an_unexpected_failure_shows_a_job_reference_not_database_internals(client, admin, image_set, app_context,
                                                                             flask_app, monkeypatch, caplog):
    from types import SimpleNamespace

    from sqlalchemy.exc import IntegrityError

    from app.extensions import db
    from app.jobs.tasks import BACKOFF, finish_image_set
    from app.models import ImageSet

    imageset_id = image_set["imageset_id"]
    db.session.get(ImageSet, imageset_id).status = "finishing"
    db.session.commit()

    def refused(container, **listing):
        raise IntegrityError("INSERT INTO images (md5) VALUES (%(md5)s)", {"md5": "value-from-a-request"},
                             Exception('duplicate key value violates unique constraint "uq_images_md5"'))

    monkeypatch.setattr(app_state(flask_app).storage, "upload_area_pages", refused)
    last = SimpleNamespace(job=SimpleNamespace(attempts=BACKOFF.max_attempts - 1, id=4242), should_abort=lambda: False)
    with pytest.raises(IntegrityError):
        finish_image_set(last, imageset_id=imageset_id)
    failed = client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()
    assert failed["status"] == "failed"
    assert failed["error"] == ("failed unexpectedly; the service's log has the detail under job-4242: quote it when "
                               "reporting this")


def test_sets_are_listed_by_status_with_the_count_of_that_status(client, admin, make_image_set, app_context):
    from app.extensions import db
    from app.models import ImageSet

    made = [make_image_set(f"by status {n}")["imageset_id"] for n in range(4)]
    db.session.execute(update(ImageSet).where(ImageSet.id.in_(made[:2])).values(status="failed"))
    db.session.commit()

    failed = client.get("/api/v1/image_sets", params={"status": "failed", "per_page": 1}, headers=admin).json()
    assert failed["pagination"]["total"] == 2 and [s["imageset_id"] for s in failed["image_sets"]] == made[:1]
    created = client.get("/api/v1/image_sets", params={"status": "created"}, headers=admin).json()
    assert [s["imageset_id"] for s in created["image_sets"]] == made[2:]
    assert client.get("/api/v1/image_sets", params={"status": "finishing"}, headers=admin).json()["image_sets"] == []
    assert client.get("/api/v1/image_sets", headers=admin).json()["pagination"]["total"] == 4
    assert "status" in assert_problem(client.get("/api/v1/image_sets", params={"status": "done"}, headers=admin), 400)["detail"]
