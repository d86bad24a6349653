"""Edits (PATCH of images, image sets and campaigns), the audit trail that records them with key changes and
status moves, and erasing the person behind a key."""
import json

import pytest

from tests.helpers import assert_problem, box, pair, submit


@pytest.fixture
def image(image_set, app_context):
    from app.extensions import db
    from app.models import Image

    row = Image(imageset_id=image_set["imageset_id"], blobstorage_path="imagesets/audit/a.jpg", md5="a" * 32,
                filetype="jpeg", filesize=10, width=40, height=30, type="camera trap")
    db.session.add(row)
    db.session.commit()
    return row.id


def trail(client, admin, **filters) -> list[dict]:
    response = client.get("/api/v1/audit", params=filters, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["entries"]


def owner_of(client, admin) -> str:
    return client.get("/api/v1/me", headers=admin).json()["owner"]["name"]


def test_an_image_edit_answers_the_new_record_and_is_recorded_with_who_when_and_which_request(client, admin, image):
    response = client.patch(f"/api/v1/images/{image}", headers={**admin, "X-Request-ID": "edit-42"},
                            json={"type": "drone", "tss_id": "T-1", "location_description": "north gate",
                                  "metadata": {"survey": 3}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["type"], body["tss_id"], body["metadata"]) == ("drone", "T-1", {"survey": 3})
    assert body["location_taken"]["description"] == "north gate"
    assert client.get(f"/api/v1/images/{image}/metadata", headers=admin).json()["type"] == "drone"

    [entry] = trail(client, admin, entity="image", entity_id=str(image))
    assert entry["action"] == "update" and entry["request_id"] == "edit-42"
    assert entry["key_id"] == admin["Authentication-Key"] and entry["actor"] == owner_of(client, admin)
    assert entry["before"] == {"type": "camera trap", "tss_id": None, "location_description": None, "metadata": None}
    assert entry["after"] == {"type": "drone", "tss_id": "T-1", "location_description": "north gate",
                              "metadata": {"survey": 3}}

    # the same values again change nothing and record nothing; an unknown field is refused
    assert client.patch(f"/api/v1/images/{image}", headers=admin, json={"type": "drone"}).status_code == 200
    assert len(trail(client, admin, entity="image")) == 1
    assert_problem(client.patch(f"/api/v1/images/{image}", headers=admin, json={"md5": "b" * 32}), 400)
    assert_problem(client.patch("/api/v1/images/999999", headers=admin, json={"type": "x"}), 404)


def test_an_image_set_title_changes_only_while_created_and_moves_its_folder(client, admin, make_image_set,
                                                                          app_context):
    from app.extensions import db
    from app.models import ImageSet

    first, other = make_image_set(title="first title"), make_image_set(title="taken title")
    path = f"/api/v1/image_sets/{first['imageset_id']}"
    response = client.patch(path, headers=admin, json={"title": "second title", "metadata": {"site": "A"}})
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "second title"
    assert response.json()["blobstorage_path"].endswith("/second title")
    assert assert_problem(client.patch(path, headers=admin, json={"title": other["title"]}), 409)["field"] == "title"
    assert_problem(client.patch(path, headers=admin, json={"title": "a/b"}), 422)

    db.session.execute(ImageSet.__table__.update().where(ImageSet.id == first["imageset_id"]).values(status="finished"))
    db.session.commit()
    assert_problem(client.patch(path, headers=admin, json={"title": "third title"}), 409)
    response = client.patch(path, headers=admin, json={"metadata": {"site": "B"}})
    assert response.status_code == 200 and response.json()["metadata"] == {"site": "B"}

    entries = trail(client, admin, entity="image_set", entity_id=str(first["imageset_id"]))
    assert [e["after"] for e in entries] == [  # newest first; refused edits left nothing behind
        {"metadata": {"site": "B"}},
        {"title": "second title", "metadata": {"site": "A"},
         "blobstorage_path": response.json()["blobstorage_path"]}]
    assert entries[1]["before"]["title"] == "first title"


def test_a_campaign_taxonomy_changes_until_it_is_finished(client, admin):
    created = client.post("/api/v1/campaigns", headers=admin, json={
        "title": "taxonomy", "labeler_email": "t@example.org", "labels": ["deer"]}).json()
    path = f"/api/v1/campaigns/{created['campaign_id']}"
    response = client.patch(path, headers=admin, json={"labels": ["deer", "fox"], "label_translations": {"Fox": "fox"}})
    assert response.status_code == 200, response.text
    assert response.json()["labels"] == ["deer", "fox"]
    body = assert_problem(client.patch(path, headers=admin, json={"label_translations": {"Cat": "cat"}}), 422)
    assert body["field"] == "label_translations"

    for status in ("active", "completed", "finished"):
        assert client.put(path, headers=admin, json={"new_status": status}).status_code == 200
    assert_problem(client.patch(path, headers=admin, json={"labels": ["deer"]}), 409)
    assert client.patch(path, headers=admin, json={"metadata": {"note": "done"}}).status_code == 200

    entries = trail(client, admin, entity="campaign", entity_id=str(created["campaign_id"]))
    assert [(e["action"], e["after"]) for e in entries] == [
        ("update", {"metadata": {"note": "done"}}),
        ("status", {"status": "finished"}), ("status", {"status": "completed"}), ("status", {"status": "active"}),
        ("update", {"labels": ["deer", "fox"], "label_translations": {"Fox": "fox"}})]
    assert entries[-1]["before"] == {"labels": ["deer"], "label_translations": None}


def test_key_creation_rotation_and_revocation_are_recorded_without_secrets(client, admin):
    created = client.post("/api/v1/keys", headers=admin, json={"roles": ["reader"], "email": "r@example.org"}).json()
    key_id = created["key_id"]
    rotated = client.post(f"/api/v1/keys/{key_id}/rotate?grace_seconds=60", headers=admin).json()
    assert client.delete(f"/api/v1/keys/{key_id}", headers=admin).status_code == 200

    entries = trail(client, admin, entity="api_key", entity_id=key_id)
    assert [e["action"] for e in entries] == ["revoke", "rotate", "create"]
    assert entries[2]["after"]["owner"] == "r@example.org" and entries[2]["after"]["roles"] == ["reader"]
    assert entries[1]["after"]["grace_seconds"] == 60
    assert entries[0]["before"] == {"revoked_at": None} and entries[0]["after"]["revoked_at"]
    text = json.dumps(entries)
    assert created["apisecret"] not in text and rotated["apisecret"] not in text
    # by key: everything this admin did, and nothing done by others
    assert {e["entity_id"] for e in trail(client, admin, key_id=admin["Authentication-Key"])} == {key_id}


def test_the_trail_pages_newest_first_with_a_cursor(client, admin):
    for n in range(5):
        client.post("/api/v1/keys", headers=admin, json={"roles": ["reader"], "email": f"p{n}@example.org"})
    seen, cursor = [], ""
    while cursor is not None:
        page = client.get("/api/v1/audit", params={"cursor": cursor, "per_page": 2, "entity": "api_key"},
                          headers=admin).json()
        assert len(page["entries"]) <= 2
        seen += [e["after"]["owner"] for e in page["entries"]]
        cursor = page["next_cursor"]
    assert seen == [f"p{n}@example.org" for n in reversed(range(5))] + [owner_of(client, admin)]
    assert_problem(client.get("/api/v1/audit", params={"cursor": "nonsense!"}, headers=admin), 400)
    assert_problem(client.get("/api/v1/audit", params={"entity_id": "1"}, headers=admin), 422)


def test_erasing_a_labeler_keeps_the_labels_under_a_stable_pseudonym(client, admin, image, app_context):
    from sqlalchemy import text

    from app.extensions import db
    from app.services.keys import pseudonym

    email = "leaving@example.org"
    created = client.post("/api/v1/campaigns", headers=admin,
                          json={"title": "erase", "labeler_email": email}).json()
    labeler, campaign_id = pair(created["access_token"]), created["campaign_id"]
    client.post(f"/api/v1/campaigns/{campaign_id}/images", headers=admin, json=[{"id": image}])
    client.put(f"/api/v1/campaigns/{campaign_id}", headers=admin, json={"new_status": "active"})
    labels = [{"image_id": image, "objects": [{"label": "deer", "bounding_box": box()}]}]
    assert submit(client, labeler, campaign_id, labels).status_code == 200

    response = client.post(f"/api/v1/keys/{labeler['Authentication-Key']}/erase", headers=admin)
    assert response.status_code == 200, response.text
    alias = pseudonym(email)
    assert response.json()["owner"]["name"] == alias and alias.startswith("erased-") and len(alias) == 19
    assert response.json()["revoked_at"] is not None
    assert_problem(client.get("/api/v1/me", headers=labeler), 401)

    revisions = client.get(f"/api/v1/campaigns/{campaign_id}/images/{image}/revisions", headers=admin).json()
    [revision] = revisions["revisions"]
    assert revision["submitted_by"] == alias and [o["label"] for o in revision["objects"]] == ["deer"]
    assert client.get(f"/api/v1/campaigns/{campaign_id}", headers=admin).json()["labeler_email"] == alias
    stored = db.session.execute(text(
        "SELECT (SELECT count(*) FROM principals WHERE name = :e) + (SELECT count(*) FROM label_revisions "
        "WHERE submitted_by = :e) + (SELECT count(*) FROM objects WHERE added_by = :e) + (SELECT count(*) FROM "
        "audit WHERE actor = :e OR strpos(CAST(before AS text) || CAST(after AS text), :e) > 0)"),
        {"e": email}).scalar()
    assert stored == 0
    assert alias in json.dumps(trail(client, admin, entity="api_key"))
    assert_problem(client.post(f"/api/v1/keys/{labeler['Authentication-Key']}/erase", headers=admin), 409)


def test_status_moves_made_by_jobs_are_recorded_without_a_key(client, admin, image_set, start_worker):
    from tests import images
    from tests.helpers import finish, upload_all

    upload_all(image_set["dropbox_url"], {"a.jpg": images.jpeg(seed=90)})
    start_worker()
    assert finish(client, admin, image_set["imageset_id"])["status"] == "finished"
    entries = trail(client, admin, entity="image_set", entity_id=str(image_set["imageset_id"]))
    admin_key = admin["Authentication-Key"]
    assert [(e["action"], e["before"], e["after"], e["key_id"]) for e in entries] == [
        ("status", {"status": "finishing"}, {"status": "finished"}, None),  # the finishing job's move
        ("status", {"status": "created"}, {"status": "finishing"}, admin_key)]
