"""Dataset versions: snapshot, AutoML JSONL + MLTable export, COCO, without Azure ML (the embedded default)."""
from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from tests.helpers import assert_problem, submit, wait_for_version


def test_finishing_a_campaign_builds_and_exports_a_version(client, admin, labelled, start_worker, stored_images):
    cid = labelled["campaign_id"]
    assert client.get(f"/api/v1/campaigns/{cid}", headers=admin).json()["status"] == "completed"
    client.put(f"/api/v1/campaigns/{cid}", json={"new_status": "finished"}, headers=admin)
    start_worker()
    version = wait_for_version(client, admin, cid, 1)
    assert version["status"] == "exported" and version["error"] is None  # Azure ML not configured: not registered
    assert (version["image_count"], version["object_count"]) == (3, 3)
    assert version["folder"] == f"datasets/Beach_Litter_2026_{cid}/1"
    assert version["azureml"] == {"labels_asset": f"Beach_Litter_2026_{cid}_labels",
                                  "images_asset": f"Beach_Litter_2026_{cid}_images",
                                  "labels_id": None, "images_id": None}

    files = {f["name"]: httpx.get(f["url"]).content for f in version["files"]}
    assert hashlib.sha256(files["annotations.jsonl"]).hexdigest() == version["annotations_sha256"]
    lines = [json.loads(line) for line in files["annotations.jsonl"].decode().splitlines()]
    assert lines[0] == {
        "image_url": "azureml://datastores/workspaceblobstore/paths/imagesets/c/0.jpg",
        "image_details": {"format": "jpeg", "width": 100, "height": 80},
        "label": [{"label": "bottle", "topX": 0.1, "topY": 0.1, "bottomX": 0.6, "bottomY": 0.5, "isCrowd": 0}]}
    assert lines[1]["label"][0] == {"label": "net", "topX": 0.0, "topY": 0.0, "bottomX": 1.0, "bottomY": 1.0,
                                    "isCrowd": 0}
    assert lines[2]["label"] == []
    for line in lines:
        for label in line["label"]:
            assert 0 <= label["topX"] < label["bottomX"] <= 1 and 0 <= label["topY"] < label["bottomY"] <= 1
    assert b"read_json_lines" in files["MLTable"] and b"stream_info" in files["MLTable"]
    assert client.get(f"/api/v1/campaigns/{cid}/datasets", headers=admin).json()["datasets"][0]["version"] == 1


def test_a_version_is_a_snapshot_and_re_exports_byte_identical(client, admin, labelled, start_worker, flask_app,
                                                              stored_images):
    cid = labelled["campaign_id"]
    start_worker()
    first = client.post(f"/api/v1/campaigns/{cid}/datasets", headers=admin)
    assert first.status_code == 202 and first.json()["status"] == "pending"
    v1 = wait_for_version(client, admin, cid, 1)

    client.put(f"/api/v1/campaigns/{cid}", json={"new_status": "active"}, headers=admin)  # reopen, relabel
    submit(client, admin, cid, [{"image_id": stored_images[0], "objects": []}])
    client.post(f"/api/v1/campaigns/{cid}/datasets", headers=admin)
    v2 = wait_for_version(client, admin, cid, 2)
    assert (v2["object_count"], v1["object_count"]) == (2, 3)

    with flask_app.app_context():  # build version 1 again: same snapshot, same bytes
        from app.services import datasets

        before = httpx.get(client.get(f"/api/v1/campaigns/{cid}/datasets/1", headers=admin).json()["files"][0]["url"])
        datasets.build(datasets.get(cid, 1).id)
    again = client.get(f"/api/v1/campaigns/{cid}/datasets/1", headers=admin).json()
    assert again["annotations_sha256"] == v1["annotations_sha256"]
    assert httpx.get(again["files"][0]["url"]).content == before.content


def test_only_completed_or_finished_campaigns_and_failed_versions_retry(client, admin, make_campaign, labelled):
    active = make_campaign()
    assert_problem(client.post(f"/api/v1/campaigns/{active['campaign_id']}/datasets", headers=admin), 409)
    client.post(f"/api/v1/campaigns/{labelled['campaign_id']}/datasets", headers=admin)
    body = assert_problem(client.post(f"/api/v1/campaigns/{labelled['campaign_id']}/datasets/1/retry",
                                      headers=admin), 409)
    assert "pending" in body["detail"]
    assert_problem(client.get(f"/api/v1/campaigns/{labelled['campaign_id']}/datasets/9", headers=admin), 404)


def test_coco_export(client, admin, labelled, stored_images, start_worker):
    cid = labelled["campaign_id"]
    response = client.get(f"/api/v1/campaigns/{cid}/coco", headers=admin)
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    coco = response.json()
    assert [c["name"] for c in coco["categories"]] == ["bottle", "net"]
    assert [i["id"] for i in coco["images"]] == stored_images[:3]
    assert coco["images"][0] == {"id": stored_images[0], "file_name": "imagesets/c/0.jpg", "width": 100, "height": 80}
    assert coco["annotations"][0] == {"id": 1, "image_id": stored_images[0], "category_id": 1,
                                      "bbox": [10, 8, 50, 32], "area": 1600, "iscrowd": 0}
    assert len(coco["annotations"]) == 3

    start_worker()
    client.post(f"/api/v1/campaigns/{cid}/datasets", headers=admin)
    wait_for_version(client, admin, cid, 1)
    client.put(f"/api/v1/campaigns/{cid}", json={"new_status": "active"}, headers=admin)
    submit(client, admin, cid, [{"image_id": stored_images[1], "objects": []}])
    assert len(client.get(f"/api/v1/campaigns/{cid}/coco", headers=admin).json()["annotations"]) == 1
    assert len(client.get(f"/api/v1/campaigns/{cid}/coco?version=1", headers=admin).json()["annotations"]) == 3


def test_an_unexpected_build_failure_shows_a_job_reference_not_its_internals(client, admin, labelled, monkeypatch):
    from types import SimpleNamespace

    from sqlalchemy.exc import DataError

    from app.jobs.tasks import BACKOFF, build_dataset
    from app.services import datasets

    cid = labelled["campaign_id"]
    assert client.post(f"/api/v1/campaigns/{cid}/datasets", headers=admin).status_code == 202

    def broken(dataset_id, should_stop):
        raise DataError("UPDATE datasets SET error=%(error)s", {"error": "value-from-a-request"},
                        Exception("value too long for type character varying(500)"))

    monkeypatch.setattr(datasets, "build", broken)
    version_id = datasets.get(cid, 1).id
    last = SimpleNamespace(job=SimpleNamespace(attempts=BACKOFF.max_attempts - 1, id=77), should_abort=lambda: False)
    with pytest.raises(DataError):
        build_dataset(last, dataset_id=version_id)
    failed = client.get(f"/api/v1/campaigns/{cid}/datasets/1", headers=admin).json()
    assert failed["status"] == "failed" and "DataError" not in failed["error"] and "UPDATE" not in failed["error"]
    assert "job-77" in failed["error"]
