"""Speaking LabelAPI: the calls of its full-flow example (examples/full_flow_examples.md) and the answers its
tests assert, replayed against this service as a LabelAPI client (requests-style) makes them.

Deliberate differences, each harmless to a client that calls `raise_for_status()` and reads the documented
fields (README, "Coming from LabelAPI"):
- creating an image set or a campaign answers 201 (LabelAPI: 200);
- finishing an image set answers 202 with the set, its other status changes and additions answer the changed
  thing as an object (LabelAPI: the string "ok");
- a role that may not act gets 403 (LabelAPI: 401); a missing or wrong key pair is 401 in both;
- errors are problem+json, with LabelAPI's `error` member beside `detail`;
- dates carry their offset (`+00:00`; LabelAPI wrote naive UTC with `Z`);
- an image set shows `finishing` and `failed` besides `created` and `finished`;
- bodies with members the spec does not know are refused with 400 (LabelAPI ignored them).
"""
from __future__ import annotations

import uuid

import httpx
import pytest

from tests import images
from tests.helpers import assert_problem, box, pair, submit, upload_all, wait_until

LABELS_1_2 = [
    {"image_id": 1, "objects": [
        {"label": "Plastic", "confidence": 1, "bounding_box": {"xmin": 13, "xmax": 57, "ymin": 23, "ymax": 40}},
        {"label": "Organic", "confidence": 0.56, "bounding_box": {"xmin": 26, "xmax": 60, "ymin": 12, "ymax": 44}}]},
    {"image_id": 2, "objects": [
        {"label": "Wood", "confidence": 0.12, "bounding_box": {"xmin": 4, "xmax": 62, "ymin": 1, "ymax": 12}},
        {"label": "Plastic", "confidence": 0.93, "bounding_box": {"xmin": 8, "xmax": 24, "ymin": 6, "ymax": 28}}]},
]


def test_full_flow_example_as_a_labelapi_client(client, admin, start_worker):
    """LabelAPI's full flow, call by call, with what a client of it reads from each answer."""
    start_worker()
    # Create imageset: the client reads imageset_id and dropbox_url
    r = client.post("/api/v1/image_sets", json={"title": "imageset-22-10-2020", "metadata": {"country": "Nederland"}},
                    headers=admin)
    r.raise_for_status()
    image_set_id, dropbox_url = r.json()["imageset_id"], r.json()["dropbox_url"]
    upload_all(dropbox_url, {f"img{i:05}.jpg": images.jpeg(seed=i) for i in range(1, 5)})
    # Finish the image set: LabelAPI answered "ok"; the client only prints it
    r = client.put(f"/api/v1/image_sets/{image_set_id}", json={"new_status": "finished"}, headers=admin)
    r.raise_for_status()
    wait_until(lambda: client.get(f"/api/v1/image_sets/{image_set_id}", headers=admin).json()["status"] == "finished",
               message="the set to finish")
    # Create a labeling campaign: the labeler's pair comes back in access_token
    r = client.post("/api/v1/campaigns", headers=admin, json={
        "title": "campaign-22-10-2020", "metadata": {"to_be_used_for": "New train set"},
        "labeler_email": "user@example.com"})
    r.raise_for_status()
    campaign_id = r.json()["campaign_id"]
    user_headers = pair(r.json()["access_token"])
    # Add images 1 to 4 (the ids the example hard-codes are the ids finishing gave)
    r = client.get("/api/v1/images", headers=admin)
    r.raise_for_status()
    assert [i["image_id"] for i in r.json()["images"]] == [1, 2, 3, 4]
    r = client.post(f"/api/v1/campaigns/{campaign_id}/images", json=[{"id": i} for i in (1, 2, 3, 4)], headers=admin)
    r.raise_for_status()
    # The example sends its last body along with this GET; it is ignored
    r = client.request("GET", f"/api/v1/campaigns/{campaign_id}", json=[{"id": 1}], headers=admin)
    r.raise_for_status()
    assert r.json()["status"] == "created" and r.json()["progress"] == {"total": 4, "done": 0}
    client.put(f"/api/v1/campaigns/{campaign_id}", json={"new_status": "active"}, headers=admin).raise_for_status()
    # The labeler lists the campaign's images (without paging) and fetches one by its relative url
    r = client.get(f"/api/v1/campaigns/{campaign_id}/images", headers=user_headers)
    r.raise_for_status()
    assert [(i["image_id"], i["url"]) for i in r.json()["images"]] == [(i, f"/images/{i}") for i in (1, 2, 3, 4)]
    r = client.get("/api/v1" + r.json()["images"][0]["url"], headers=user_headers, follow_redirects=False)
    assert r.status_code == 303 and httpx.get(r.headers["Location"]).content == images.jpeg(seed=1)
    # Labels for two images, then progress 2 of 4
    submit(client, user_headers, campaign_id, LABELS_1_2).raise_for_status()
    assert client.get(f"/api/v1/campaigns/{campaign_id}", headers=admin).json()["progress"] == {"total": 4, "done": 2}
    submit(client, user_headers, campaign_id, [
        {"image_id": 3, "objects": [{"label": "Plastic", "confidence": 0.433,
                                     "bounding_box": {"xmin": 3, "xmax": 53, "ymin": 1, "ymax": 45}}]},
        {"image_id": 4, "objects": []}]).raise_for_status()
    r = client.get(f"/api/v1/campaigns/{campaign_id}", headers=admin)
    assert r.json()["status"] == "completed" and r.json()["progress"] == {"total": 4, "done": 4}
    client.put(f"/api/v1/campaigns/{campaign_id}", json={"new_status": "finished"}, headers=admin).raise_for_status()
    # Reading the labels back: a JSON array of LabelAPI's Object, the label being the translated one
    r = client.get("/api/v1/images/1/objects", headers=admin)
    r.raise_for_status()
    assert [(o["label"], o["campaign_id"], o["bounding_box"], o["confidence"]) for o in r.json()] == [
        ("Plastic", campaign_id, {"xmin": 13, "xmax": 57, "ymin": 23, "ymax": 40}, 1),
        ("Organic", campaign_id, {"xmin": 26, "xmax": 60, "ymin": 12, "ymax": 44}, 0.56)]
    assert {"object_id", "image_id", "campaign_id", "label", "bounding_box", "confidence", "date_added"} <= \
        r.json()[0].keys()


@pytest.fixture
def two_campaigns(client, admin, make_campaign, stored_images):
    """Image stored_images[0] labelled in two campaigns: `first` says bottle, `second` says net."""
    found = {}
    for name, label in (("first", "bottle"), ("second", "net")):
        campaign = make_campaign(stored_images[:2], title=f"{name} {uuid.uuid4().hex[:6]}")
        submit(client, admin, campaign["campaign_id"], [
            {"image_id": stored_images[0], "objects": [{"bounding_box": box(), "label": label}]}]).raise_for_status()
        found[name] = campaign["campaign_id"]
    return found


def test_image_objects_take_campaigns_repeated_or_comma_separated_in_order(client, admin, stored_images,
                                                                            two_campaigns):
    first, second = two_campaigns["first"], two_campaigns["second"]
    url = f"/api/v1/images/{stored_images[0]}/objects"
    labels = lambda response: [o["label"] for o in response.json()]  # noqa: E731
    assert labels(client.get(url, params={"campaigns": [second, first]}, headers=admin)) == ["net"]
    assert labels(client.get(url, params={"campaigns": [first, second]}, headers=admin)) == ["bottle"]
    assert labels(client.get(f"{url}?campaigns={second},{first}", headers=admin)) == ["net"]
    assert labels(client.get(f"{url}?campaigns={first}", headers=admin)) == ["bottle"]
    # Neither campaign is finished: by default nothing, as an empty array
    assert client.get(url, headers=admin).json() == []
    # An unknown campaign is 404, as in LabelAPI; a malformed one 400
    assert_problem(client.get(url, params={"campaigns": [first, 999]}, headers=admin), 404)
    assert_problem(client.get(f"{url}?campaigns=one", headers=admin), 400)


def test_location_taken_is_always_an_object(client, admin, stored_images):
    image = client.get(f"/api/v1/images/{stored_images[0]}/metadata", headers=admin).json()
    assert image["location_taken"] == {"description": None, "lat": None, "lon": None}
    listed = client.get("/api/v1/images", headers=admin).json()["images"]
    assert all(i["location_taken"] == {"description": None, "lat": None, "lon": None} for i in listed)


def test_null_confidence_and_label_translated_are_accepted(client, admin, make_campaign, stored_images):
    campaign = make_campaign(stored_images[:1])
    r = submit(client, admin, campaign["campaign_id"], [{"image_id": stored_images[0], "objects": [
        {"label": "PET", "label_translated": None, "confidence": None, "bounding_box": box()}]}])
    r.raise_for_status()
    (obj,) = client.get(f"/api/v1/images/{stored_images[0]}/objects", params={"campaigns": campaign["campaign_id"]},
                        headers=admin).json()
    assert obj["confidence"] is None and obj["label"] == "PET"


def test_campaign_lists_default_to_labelapis_1000_per_page(client, admin, make_campaign, stored_images):
    campaign = make_campaign(stored_images)
    for path in ("images", "objects"):
        page = client.get(f"/api/v1/campaigns/{campaign['campaign_id']}/{path}", headers=admin).json()
        assert page["pagination"]["per_page"] == 1000 and len(page["images"]) == len(stored_images)
    assert client.get("/api/v1/images", headers=admin).json()["pagination"]["per_page"] == 50


def test_a_labelapi_client_paging_until_404_ends(client, admin, stored_images):
    """LabelAPI's clients loop page=1,2,... until a 404; every image is seen once and the loop ends."""
    seen, page = [], 1
    while True:
        r = client.get("/api/v1/images", params={"page": page, "per_page": 3}, headers=admin)
        if r.status_code == 404:
            assert_problem(r, 404)
            break
        r.raise_for_status()
        seen += [i["image_id"] for i in r.json()["images"]]
        page += 1
    assert seen == stored_images and page == 5
    # Page 1 of an empty list is still there
    empty = client.get("/api/v1/campaigns", headers=admin)
    assert empty.status_code == 200 and empty.json()["campaigns"] == []


@pytest.mark.parametrize("key_id", ["label-key", "LabelAPI.key_with-dots~", "k" * 100])
def test_any_printable_key_id_up_to_100_characters_works_in_every_keys_operation(client, admin, make_key, key_id):
    make_key("reader", email="partner@example.org", key_id=key_id, secret="s" * 32)
    assert client.get(f"/api/v1/keys/{key_id}", headers=admin).json()["key_id"] == key_id
    rotated = client.post(f"/api/v1/keys/{key_id}/rotate", headers=admin)
    assert rotated.status_code == 200, rotated.text
    assert client.get("/api/v1/me", headers=pair(rotated.json())).json()["key_id"] == key_id
    assert client.delete(f"/api/v1/keys/{key_id}", headers=admin).json()["revoked_at"] is not None
    assert_problem(client.get(f"/api/v1/keys/{'k' * 101}", headers=admin), 400)
