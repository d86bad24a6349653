"""Deleting images and image sets, retiring held images and archiving campaigns, end to end: sets finished
through the dropbox by a real worker, renditions made, then what Azurite and the tables hold afterwards."""
from __future__ import annotations

import os
import signal
import uuid

import pytest
from sqlalchemy import text

from app.state import app_state
from tests import images
from tests.helpers import (QUICK_RECOVERY, assert_problem, box, finish, submit, upload_all, wait_for_version,
                           wait_until)


@pytest.fixture
def storage(flask_app):
    return app_state(flask_app).storage


@pytest.fixture
def finished_set(client, admin, make_image_set):
    """finished_set(n) -> (the set, its image ids in name order), once every image has its renditions."""

    def make(n: int, size: int = 24) -> tuple[dict, list[int]]:
        image_set = make_image_set(f"deletes {uuid.uuid4().hex[:8]}")
        upload_all(image_set["dropbox_url"], {f"{i:04d}.png": images.png(seed=i, width=size, height=size)
                                              for i in range(n)})
        assert finish(client, admin, image_set["imageset_id"])["status"] == "finished"
        listed = client.get(f"/api/v1/images?imageset_id={image_set['imageset_id']}&per_page=1000",
                            headers=admin).json()["images"]
        wait_until(lambda: all(client.get(f"/api/v1/images/{i['image_id']}/metadata", headers=admin)
                               .json()["renditions"] == ["grayscale", "thumbnail"] for i in listed),
                   timeout=60, message="renditions")
        ids = [i["image_id"] for i in sorted(listed, key=lambda i: i["blobstorage_path"])]
        return image_set, ids

    return make


def blobs_of(storage, image_set: dict) -> set[str]:
    """Every blob of this set's folder in the image container, and of its renditions."""
    folder = image_set["blobstorage_path"]
    return {name for prefix in (f"{folder}/", f"renditions/grayscale/{folder}/", f"renditions/thumbnail/{folder}/")
            for name in storage.image_paths(prefix)}


def blobs_for(path: str) -> set[str]:
    return {path, f"renditions/grayscale/{path}.png", f"renditions/thumbnail/{path}.jpg"}


def upload_area_exists(storage, image_set: dict) -> bool:
    container = image_set["dropbox_url"].split("?")[0].rsplit("/", 1)[1]
    return storage.service.get_container_client(container).exists()


def rows(flask_app, sql: str) -> list[tuple]:
    from app.extensions import db

    with flask_app.app_context(), db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def gone(client, admin, path: str) -> bool:
    return client.get(path, headers=admin).status_code == 404


def test_deleting_an_image_removes_its_blob_renditions_and_rows(client, admin, start_worker, finished_set, storage,
                                                                flask_app):
    start_worker()
    image_set, (doomed, kept) = finished_set(2)
    path = client.get(f"/api/v1/images/{doomed}/metadata", headers=admin).json()["blobstorage_path"]
    assert blobs_for(path) <= blobs_of(storage, image_set)

    answer = client.delete(f"/api/v1/images/{doomed}", headers=admin)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "deleting"
    assert [i["image_id"] for i in client.get("/api/v1/images", headers=admin).json()["images"]] == [kept]
    wait_until(lambda: gone(client, admin, f"/api/v1/images/{doomed}/metadata"), message="the image to go")

    kept_path = client.get(f"/api/v1/images/{kept}/metadata", headers=admin).json()["blobstorage_path"]
    assert blobs_of(storage, image_set) == blobs_for(kept_path)
    assert rows(flask_app, "SELECT image_id FROM image_set_members") == [(kept,)]
    assert rows(flask_app, f"SELECT count(*) FROM images WHERE id = {doomed}") == [(0,)]
    entries = client.get(f"/api/v1/audit?entity=image&entity_id={doomed}", headers=admin).json()["entries"]
    assert [(e["action"], e["after"]) for e in entries] == [("delete", {"status": "deleting"})]
    assert_problem(client.delete(f"/api/v1/images/{doomed}", headers=admin), 404)


def test_deleting_a_set_takes_its_own_images_and_leaves_shared_ones(client, admin, start_worker, finished_set,
                                                                     make_image_set, storage, flask_app):
    start_worker()
    image_set, ids = finished_set(3)
    other = make_image_set(f"other {uuid.uuid4().hex[:8]}")
    shared = ids[1]
    assert client.post(f"/api/v1/image_sets/{other['imageset_id']}/images", json=[{"id": shared}],
                       headers=admin).json() == {"added": 1}
    shared_path = client.get(f"/api/v1/images/{shared}/metadata", headers=admin).json()["blobstorage_path"]
    sid = image_set["imageset_id"]
    storage.upload_bytes(f"{image_set['blobstorage_path']}/left by a finishing run.png", b"no image names me")

    answer = client.delete(f"/api/v1/image_sets/{sid}", headers=admin)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "deleting"
    assert client.delete(f"/api/v1/image_sets/{sid}", headers=admin).status_code == 202  # asked again: the same
    wait_until(lambda: gone(client, admin, f"/api/v1/image_sets/{sid}"), message="the set to go")

    assert blobs_of(storage, image_set) == blobs_for(shared_path)  # only the shared image and its renditions
    assert not upload_area_exists(storage, image_set)
    assert rows(flask_app, "SELECT id, imageset_id FROM images") == [(shared, None)]
    assert rows(flask_app, "SELECT imageset_id, image_id FROM image_set_members") == [(other["imageset_id"], shared)]
    assert rows(flask_app, "SELECT count(*) FROM finish_reports") == [(0,)]
    assert rows(flask_app, "SELECT id FROM image_sets") == [(other["imageset_id"],)]
    listed = client.get(f"/api/v1/image_sets/{other['imageset_id']}/images", headers=admin).json()["images"]
    assert [i["image_id"] for i in listed] == [shared]


def test_held_images_are_refused_retired_with_force_and_released_by_archiving(
        client, admin, make_key, start_worker, finished_set, make_campaign, storage, flask_app):
    start_worker()
    image_set, (in_active, in_dataset, free) = finished_set(3)
    sid = image_set["imageset_id"]
    active = make_campaign([in_active], title="still labelling")
    done = make_campaign([in_dataset], title="published")
    assert submit(client, admin, done["campaign_id"], [
        {"image_id": in_dataset, "objects": [{"bounding_box": box(1, 10, 1, 10), "label": "net"}]}]).status_code == 200
    assert client.put(f"/api/v1/campaigns/{done['campaign_id']}", json={"new_status": "finished"},
                      headers=admin).status_code == 200
    assert wait_for_version(client, admin, done["campaign_id"], 1)["status"] == "exported"

    refused = assert_problem(client.delete(f"/api/v1/images/{in_active}", headers=admin), 409)
    assert refused["campaigns"] == [{"campaign_id": active["campaign_id"], "title": "still labelling",
                                     "status": "active"}] and refused["dataset_versions"] == []
    assert "still labelling" in refused["detail"]
    refused = assert_problem(client.delete(f"/api/v1/images/{in_dataset}", headers=admin), 409)
    assert refused["campaigns"] == [] and refused["dataset_versions"] == [
        {"campaign_id": done["campaign_id"], "title": "published", "version": 1, "status": "exported"}]
    refused = assert_problem(client.delete(f"/api/v1/image_sets/{sid}", headers=admin), 409)
    assert [c["title"] for c in refused["campaigns"]] == ["still labelling"]
    assert [v["title"] for v in refused["dataset_versions"]] == ["published"]
    assert_problem(client.delete(f"/api/v1/image_sets/{sid}?force=true", headers=make_key("image-admin")), 403)
    assert client.get(f"/api/v1/image_sets/{sid}", headers=admin).json()["status"] == "finished"  # nothing changed

    # Forced: the held images are retired (hidden, blobs kept); the free one and the set go.
    before = blobs_of(storage, image_set)
    assert client.delete(f"/api/v1/image_sets/{sid}?force=true", headers=admin).status_code == 202
    wait_until(lambda: gone(client, admin, f"/api/v1/image_sets/{sid}"), message="the set to go")
    retired = client.get(f"/api/v1/images/{in_dataset}/metadata", headers=admin).json()
    assert retired["status"] == "retired" and retired["retired_at"] and retired["imageset"] is None
    assert gone(client, admin, f"/api/v1/images/{free}/metadata")
    paths = {i: client.get(f"/api/v1/images/{i}/metadata", headers=admin).json()["blobstorage_path"]
             for i in (in_active, in_dataset)}
    assert blobs_of(storage, image_set) == blobs_for(paths[in_active]) | blobs_for(paths[in_dataset]) < before
    assert client.get("/api/v1/images", headers=admin).json()["images"] == []
    assert client.get(f"/api/v1/campaigns/{active['campaign_id']}/images", headers=admin).json()["images"] == []
    assert not upload_area_exists(storage, image_set)
    actions = {(e["action"], e["entity"], e["entity_id"]) for e in
               client.get("/api/v1/audit", headers=admin).json()["entries"]}
    assert {("delete", "image_set", str(sid)), ("retire", "image", str(in_dataset))} <= actions

    # Archiving: only from finished; hidden from the default listing; releases what it alone held.
    assert_problem(client.post(f"/api/v1/campaigns/{active['campaign_id']}/archive", headers=admin), 409)
    archived = client.post(f"/api/v1/campaigns/{done['campaign_id']}/archive", headers=admin)
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    listed = client.get("/api/v1/campaigns", headers=admin).json()["campaigns"]
    assert [c["campaign_id"] for c in listed] == [active["campaign_id"]]
    listed = client.get("/api/v1/campaigns?status=archived", headers=admin).json()["campaigns"]
    assert [c["campaign_id"] for c in listed] == [done["campaign_id"]]
    wait_until(lambda: gone(client, admin, f"/api/v1/images/{in_dataset}/metadata"), message="the release")
    assert blobs_of(storage, image_set) == blobs_for(paths[in_active])  # still held by the active campaign
    assert rows(flask_app, "SELECT id, status FROM images") == [(in_active, "retired")]
    assert rows(flask_app, "SELECT count(*) FROM dataset_images") == [(0,)]


def test_a_delete_killed_mid_way_completes_on_the_next_run(client, admin, start_worker, finished_set, storage,
                                                          flask_app):
    doomed = start_worker()
    image_set, ids = finished_set(150, size=16)
    sid, everything = image_set["imageset_id"], blobs_of(storage, image_set)
    assert len(everything) == 450

    assert client.delete(f"/api/v1/image_sets/{sid}", headers=admin).status_code == 202
    wait_until(lambda: len(blobs_of(storage, image_set)) < 450, interval=0.02, message="blobs to go")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    assert client.get(f"/api/v1/image_sets/{sid}", headers=admin).json()["status"] == "deleting"  # mid-way
    assert rows(flask_app, "SELECT count(*) FROM images")[0][0] > 0

    start_worker(**QUICK_RECOVERY)  # notices the dead worker's silence sooner
    wait_until(lambda: gone(client, admin, f"/api/v1/image_sets/{sid}"), timeout=60, message="the resumed delete")
    assert blobs_of(storage, image_set) == set()
    assert not upload_area_exists(storage, image_set)
    for table in ("images", "image_sets", "image_set_members", "finish_reports", "finish_chunks"):
        assert rows(flask_app, f"SELECT count(*) FROM {table}") == [(0,)], table
