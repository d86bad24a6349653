"""Campaigns and labels: LabelAPI's flow end to end, validation, history, concurrency and labeler limits."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests import images
from tests.helpers import assert_problem, box, finish, pair, report, submit, upload_all


# --- the whole flow --------------------------------------------------------------------------------

def test_labelapi_flow_end_to_end(client, admin, make_image_set, start_worker):
    start_worker()
    image_set = make_image_set("flow")
    originals = {f"p{i}.jpg": images.jpeg(seed=50 + i, width=120, height=90) for i in range(3)}
    upload_all(image_set["dropbox_url"], originals)
    assert finish(client, admin, image_set["imageset_id"])["status"] == "finished"
    ids = {name: f["image_id"] for name, f in report(client, admin, image_set["imageset_id"]).items()}

    created = client.post("/api/v1/campaigns", json={
        "title": "Flow campaign", "labeler_email": "Partner@Labels.example", "metadata": {"batch": 1},
        "label_translations": {"bottle": "plastic bottle"}}, headers=admin)
    assert created.status_code == 201
    campaign = created.json()
    assert campaign["status"] == "created" and campaign["progress"] == {"total": 0, "done": 0}
    assert campaign["labeler_email"] == "partner@labels.example" and campaign["access_token"]["apisecret"]
    labeler = pair(campaign["access_token"])
    cid = campaign["campaign_id"]

    added = client.post(f"/api/v1/campaigns/{cid}/images", json=[
        {"id": ids["p0.jpg"]}, {"filepath": "imagesets/flow/p1.jpg"}, {"id": ids["p2.jpg"]}], headers=admin)
    assert added.json() == {"added": 3}
    assert_problem(submit(client, labeler, cid, [{"image_id": ids["p0.jpg"], "objects": []}]), 409)  # not active
    started = client.put(f"/api/v1/campaigns/{cid}", json={"new_status": "active"}, headers=admin).json()
    assert started["status"] == "active" and started["date_started"]

    mine = client.get("/api/v1/campaigns", headers=labeler).json()
    assert [c["campaign_id"] for c in mine["campaigns"]] == [cid]
    listed = client.get(f"/api/v1/campaigns/{cid}/images", headers=labeler).json()
    assert listed["images"] == [{"image_id": ids[n], "url": f"/images/{ids[n]}"} for n in ("p0.jpg", "p1.jpg", "p2.jpg")]
    redirect = client.get(f"/api/v1{listed['images'][0]['url']}", headers=labeler, follow_redirects=False)
    assert redirect.status_code == 303 and httpx.get(redirect.headers["Location"]).content == originals["p0.jpg"]

    first = submit(client, labeler, cid, [
        {"image_id": ids["p0.jpg"], "objects": [{"bounding_box": box(), "label": "bottle", "confidence": 0.9}]},
        {"image_id": ids["p1.jpg"], "objects": []}])
    assert first.json() == {"images": 2, "objects": 1, "status": "active", "progress": {"total": 3, "done": 2}}
    last = submit(client, labeler, cid, [{"image_id": ids["p2.jpg"], "objects": [
        {"bounding_box": box(0, 120, 0, 90), "label": "net", "label_translated": "fishing net"}]}])
    assert last.json()["status"] == "completed"
    done = client.get(f"/api/v1/campaigns/{cid}", headers=admin).json()
    assert done["status"] == "completed" and done["date_completed"] and done["progress"] == {"total": 3, "done": 3}

    finished = client.put(f"/api/v1/campaigns/{cid}", json={"new_status": "finished"}, headers=admin).json()
    assert finished["status"] == "finished" and finished["date_finished"]
    assert_problem(client.post(f"/api/v1/campaigns/{cid}/images", json=[{"id": ids["p0.jpg"]}], headers=admin), 409)

    [obj] = client.get(f"/api/v1/images/{ids['p0.jpg']}/objects", headers=admin).json()
    assert obj["campaign_id"] == cid
    assert (obj["label"], obj["label_original"], obj["confidence"]) == ("plastic bottle", "bottle", 0.9)
    assert obj["bounding_box"] == box() and obj["added_by"] == "partner@labels.example"
    net = client.get(f"/api/v1/campaigns/{cid}/objects", headers=admin).json()["images"][2]["objects"][0]
    assert (net["label"], net["label_original"]) == ("fishing net", "net")


def test_a_labeler_with_a_key_gets_no_new_one(client, admin, make_campaign):
    first = make_campaign(status="created", labeler_email="same@example.org")
    second = make_campaign(status="created", labeler_email="same@example.org")
    assert second["access_token"] == {"apikey": first["access_token"]["apikey"], "apisecret": None}
    me = client.get("/api/v1/me", headers=pair(first["access_token"])).json()
    assert me["campaign_ids"] == [first["campaign_id"], second["campaign_id"]] and me["roles"] == ["labeler"]
    rotated = client.post(f"/api/v1/keys/{first['access_token']['apikey']}/rotate", headers=admin).json()
    assert client.get("/api/v1/me", headers=pair(rotated)).status_code == 200  # how an admin issues a fresh one


@pytest.mark.parametrize("holder_roles, holder", [(("admin",), "email"), (("image-admin",), "email"),
                                                  (("reader", "labeler"), "email"), (("uploader",), "device")])
def test_a_campaign_key_is_never_made_in_the_name_of_someone_with_other_roles(client, admin, make_key, image_set,
                                                                            holder_roles, holder):
    # An image-admin naming an admin as labeler got a labeler key in the admin's name: labels then showed the
    # admin as their author, submitted by whoever created the campaign.
    name = "Boss@Example.org" if holder == "email" else "boss@example.org"
    make_key(*holder_roles, **({"email": name.lower()} if holder == "email" else {"device": name, "email": None}),
             imageset_ids=[image_set["imageset_id"]] if "uploader" in holder_roles else None)
    image_admin = make_key("image-admin")
    refused = client.post("/api/v1/campaigns", json={"title": "impostor", "labeler_email": name},
                          headers=image_admin)
    assert assert_problem(refused, 409)["field"] == "labeler_email"
    assert client.get("/api/v1/campaigns", headers=admin).json()["campaigns"] == []
    held = client.get("/api/v1/keys", headers=admin).json()["keys"]
    assert [k["roles"] for k in held if k["owner"]["name"] == name.lower()] == [sorted(holder_roles)]


def test_revisions_name_the_key_and_who_minted_it(client, admin, make_key, stored_images):
    image_admin = make_key("image-admin", email="curator@example.org")
    created = client.post("/api/v1/campaigns", json={"title": "partner run", "labeler_email": "partner@example.org"},
                          headers=image_admin).json()
    cid, token = created["campaign_id"], created["access_token"]
    client.post(f"/api/v1/campaigns/{cid}/images", json=[{"id": stored_images[0]}], headers=image_admin)
    client.put(f"/api/v1/campaigns/{cid}", json={"new_status": "active"}, headers=image_admin)
    submit(client, pair(token), cid, [{"image_id": stored_images[0], "objects": []}])

    [revision] = client.get(f"/api/v1/campaigns/{cid}/images/{stored_images[0]}/revisions",
                            headers=admin).json()["revisions"]
    assert (revision["submitted_by"], revision["key_id"], revision["key_created_by"]) == (
        "partner@example.org", token["apikey"], "curator@example.org")
    assert client.get(f"/api/v1/keys/{token['apikey']}", headers=admin).json()["created_by"] == "curator@example.org"
    minted = client.post("/api/v1/keys", json={"roles": ["reader"], "email": "r@example.org"}, headers=admin).json()
    assert minted["created_by"] == client.get("/api/v1/me", headers=admin).json()["owner"]["name"]
    assert client.get("/api/v1/me", headers=pair(minted)).status_code == 200


@pytest.mark.parametrize("path, to, allowed", [
    (["created"], "completed", False), (["created"], "finished", False), (["created"], "active", True),
    (["created", "active"], "finished", False), (["created", "active"], "completed", True),
    (["created", "active", "completed"], "active", True), (["created", "active", "completed"], "finished", True),
    (["created", "active", "completed", "finished"], "active", False),
])
def test_status_moves(client, admin, make_campaign, path, to, allowed):
    campaign = make_campaign(status="created")
    url = f"/api/v1/campaigns/{campaign['campaign_id']}"
    for step in path[1:]:
        assert client.put(url, json={"new_status": step}, headers=admin).status_code == 200
    response = client.put(url, json={"new_status": to}, headers=admin)
    if allowed:
        assert response.status_code == 200 and response.json()["status"] == to
    else:
        body = assert_problem(response, 409)
        assert path[-1] in body["detail"] and to in body["detail"]


# --- validation: one bad item and nothing is stored --------------------------------------------------

BAD = [
    ("inverted x", {"bounding_box": box(10, 1)}, 422, "bounding_box", "xmin must be less than xmax"),
    ("inverted y", {"bounding_box": box(ymin=30, ymax=20)}, 422, "bounding_box", "ymin must be less than ymax"),
    ("outside", {"bounding_box": box(xmax=101)}, 422, "bounding_box", "inside the image"),
    ("negative", {"bounding_box": box(xmin=-1)}, 422, "bounding_box", "inside the image"),
    ("confidence", {"confidence": 1.5}, 400, None, "confidence"),
    ("taxonomy", {"label": "whale"}, 422, "label", "not in this campaign's labels"),
    ("no label", {"label": None}, 400, None, "label"),
    ("extra field", {"colour": "red"}, 400, None, "colour"),
]


@pytest.mark.parametrize("name, change, status, field, words", BAD, ids=[b[0] for b in BAD])
def test_bad_object_is_refused_whole(client, admin, make_campaign, stored_images, name, change, status, field,
                                     words):
    campaign = make_campaign(stored_images[:2], labels=["bottle", "net"])
    good = {"bounding_box": box(), "label": "bottle"}
    bad = {k: v for k, v in {**good, **change}.items() if v is not None}
    response = submit(client, admin, campaign["campaign_id"], [
        {"image_id": stored_images[0], "objects": [good]},
        {"image_id": stored_images[1], "objects": [good, bad]}])
    body = assert_problem(response, status)
    assert words in body["detail"]
    if field:
        assert (body["index"], body["object_index"], body["field"]) == (1, 1, field)
        assert body["detail"].startswith("item 1 object 1: ")
    assert client.get(f"/api/v1/campaigns/{campaign['campaign_id']}", headers=admin).json()["progress"]["done"] == 0
    history = client.get(f"/api/v1/campaigns/{campaign['campaign_id']}/images/{stored_images[0]}/revisions",
                         headers=admin).json()
    assert history["revisions"] == []


def test_image_not_in_campaign_or_listed_twice(client, admin, make_campaign, stored_images):
    campaign = make_campaign(stored_images[:2])
    body = assert_problem(submit(client, admin, campaign["campaign_id"], [
        {"image_id": stored_images[0], "objects": []}, {"image_id": stored_images[5], "objects": []}]), 404)
    assert body["index"] == 1 and str(stored_images[5]) in body["detail"]
    body = assert_problem(submit(client, admin, campaign["campaign_id"], [
        {"image_id": stored_images[0], "objects": []}, {"image_id": stored_images[0], "objects": []}]), 422)
    assert body["index"] == 1
    assert client.get(f"/api/v1/campaigns/{campaign['campaign_id']}", headers=admin).json()["progress"]["done"] == 0


# --- history ---------------------------------------------------------------------------------------

def test_replacing_keeps_every_revision(client, admin, make_campaign, stored_images):
    campaign = make_campaign(stored_images[:2])
    cid, image_id = campaign["campaign_id"], stored_images[0]
    submit(client, admin, cid, [{"image_id": image_id, "objects": [{"bounding_box": box(), "label": "a"},
                                                                   {"bounding_box": box(), "label": "b"}]}])
    client.put(f"/api/v1/campaigns/{cid}/objects", headers={**admin, "X-Request-ID": "req-2"},
               json=[{"image_id": image_id, "objects": [{"bounding_box": box(5, 6, 7, 8), "label": "c"}]}])
    history = client.get(f"/api/v1/campaigns/{cid}/images/{image_id}/revisions", headers=admin).json()["revisions"]
    assert [(r["revision"], r["current"], [o["label"] for o in r["objects"]]) for r in history] == [
        (2, True, ["c"]), (1, False, ["a", "b"])]
    assert history[0]["request_id"] == "req-2" and history[0]["key_id"] == admin["Authentication-Key"]
    current = client.get(f"/api/v1/campaigns/{cid}/objects", headers=admin).json()["images"][0]["objects"]
    assert [o["label"] for o in current] == ["c"]
    assert client.get(f"/api/v1/campaigns/{cid}", headers=admin).json()["progress"]["done"] == 1


# --- concurrency -----------------------------------------------------------------------------------

def test_fifty_concurrent_submissions(live_server, admin, client, make_campaign, stored_images):
    campaign = make_campaign(stored_images)
    cid = campaign["campaign_id"]
    url = f"{live_server}/api/v1/campaigns/{cid}/objects"

    def body(n: int) -> list:
        chosen = stored_images[:5] if n % 2 else stored_images[n % 5:n % 5 + 6]  # overlapping subsets
        return [{"image_id": i, "objects": [{"bounding_box": box(), "label": f"sub-{n}"} for _ in range(1 + n % 3)]}
                for i in chosen]

    bodies = {n: body(n) for n in range(50)}
    with httpx.Client(timeout=60) as http, ThreadPoolExecutor(50) as pool:
        responses = dict(zip(bodies, pool.map(lambda n: http.put(url, json=bodies[n], headers=admin), bodies)))
    statuses = [r.status_code for r in responses.values()]
    assert set(statuses) <= {200, 409}, statuses
    accepted = {n for n, r in responses.items() if r.status_code == 200}
    assert accepted
    completed_by = [n for n in accepted if responses[n].json()["status"] == "completed"]
    assert len(completed_by) <= 1  # the automatic move happens once

    campaign_now = client.get(f"/api/v1/campaigns/{cid}", headers=admin).json()
    labelled = {i for n in accepted for i in (item["image_id"] for item in bodies[n])}
    assert campaign_now["progress"] == {"total": 10, "done": len(labelled)}
    assert (campaign_now["status"] == "completed") == (len(labelled) == 10) == bool(completed_by)
    for image in client.get(f"/api/v1/campaigns/{cid}/objects?per_page=10", headers=admin).json()["images"]:
        labels = {o["label"] for o in image["objects"]}
        assert len(labels) <= 1  # one submission's state, never a mix
        history = client.get(f"/api/v1/campaigns/{cid}/images/{image['image_id']}/revisions",
                             headers=admin).json()["revisions"]
        expected = sum(1 for n in accepted if any(item["image_id"] == image["image_id"] for item in bodies[n]))
        assert len(history) == expected  # no submission lost
        if history:
            assert {o["label"] for o in history[0]["objects"]} == labels


# --- what a labeler can reach ----------------------------------------------------------------------

def test_labeler_cannot_reach_or_detect_another_campaign(client, admin, make_campaign, stored_images):
    mine = make_campaign(stored_images[:3], labeler_email="a@example.org")
    theirs = make_campaign(stored_images[5:8], labeler_email="b@example.org")
    labeler = pair(mine["access_token"])
    missing_campaign, missing_image = 999999, 999999
    foreign_image = stored_images[6]

    listed = client.get("/api/v1/campaigns", headers=labeler).json()
    assert [c["campaign_id"] for c in listed["campaigns"]] == [mine["campaign_id"]]
    for cid in (theirs["campaign_id"], missing_campaign):
        for method, path, body in [("GET", "", None), ("GET", "/images", None), ("GET", "/objects", None),
                                   ("PUT", "/objects", [{"image_id": foreign_image, "objects": []}]),
                                   ("GET", f"/images/{foreign_image}/revisions", None)]:
            response = client.request(method, f"/api/v1/campaigns/{cid}{path}", json=body, headers=labeler)
            assert response.status_code == 404 and response.json()["detail"] == f"no campaign {cid}", path
    for image_id in (foreign_image, missing_image):
        for path in ("", "/url", "/metadata", "/objects"):
            response = client.get(f"/api/v1/images/{image_id}{path}", headers=labeler, follow_redirects=False)
            assert response.status_code == 404 and response.json()["detail"] == f"no image {image_id}", path
    body = assert_problem(submit(client, labeler, mine["campaign_id"], [{"image_id": foreign_image, "objects": []}]),
                          404)
    assert "not in campaign" in body["detail"]
    assert client.get(f"/api/v1/images/{stored_images[0]}/metadata", headers=labeler).status_code == 200
    assert client.get("/api/v1/images", headers=labeler).status_code == 403
    assert client.get("/api/v1/image_sets", headers=labeler).status_code == 403


def test_image_objects_picks_the_campaign(client, admin, make_campaign, stored_images):
    image_id = stored_images[0]
    older = make_campaign([image_id], title="older")
    newer = make_campaign([image_id], title="newer")
    for campaign, label in ((older, "old"), (newer, "new")):
        submit(client, admin, campaign["campaign_id"], [{"image_id": image_id,
                                                          "objects": [{"bounding_box": box(), "label": label}]}])
    url = f"/api/v1/images/{image_id}/objects"
    assert client.get(url, headers=admin).json() == []
    for campaign in (older, newer):  # newer finishes last
        client.put(f"/api/v1/campaigns/{campaign['campaign_id']}", json={"new_status": "finished"}, headers=admin)
    assert client.get(url, headers=admin).json()[0]["label"] == "new"
    picked = client.get(f"{url}?campaigns={older['campaign_id']},{newer['campaign_id']}", headers=admin).json()
    assert picked[0]["campaign_id"] == older["campaign_id"] and picked[0]["label"] == "old"


def test_large_submission_errors_are_worded_like_small_ones(client, admin, make_campaign, stored_images):
    campaign = make_campaign(stored_images)
    items = [{"image_id": stored_images[n % 10], "objects": [{"bounding_box": box(), "label": "x"}]} for n in range(60)]
    items[57]["objects"][0]["confidence"] = 1.5  # the compiled fast path refuses it; the message names it
    body = assert_problem(submit(client, admin, campaign["campaign_id"], items), 400)
    assert "1.5 is greater than the maximum of 1" in body["detail"] and "57" in body["detail"]


def test_labels_with_awkward_text_are_stored_exactly(client, admin, make_campaign, stored_images):
    campaign = make_campaign(stored_images[:1])
    awkward = 'a "quoted", label\nwith a newline, a tab\tand ünïcödé \\N'
    submit(client, admin, campaign["campaign_id"], [{"image_id": stored_images[0], "objects": [
        {"bounding_box": box(), "label": awkward}, {"bounding_box": box(), "label": "plain"}]}])
    stored = client.get(f"/api/v1/campaigns/{campaign['campaign_id']}/objects", headers=admin).json()
    objects = stored["images"][0]["objects"]
    assert [o["label"] for o in objects] == [awkward, "plain"]
    assert [o["confidence"] for o in objects] == [None, None]
