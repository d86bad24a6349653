"""URL import end to end: a loopback URL server, real workers fetching from it, PostgreSQL and Azurite."""
from __future__ import annotations

import hashlib
import os
import signal

import pytest

from app.state import app_state
from tests import images
from tests.helpers import QUICK_RECOVERY, assert_problem, wait_until
from tests.url_server import UrlServer, image_path

# A worker that may fetch from the loopback server, quickly giving up on slow and broken URLs.
LOOPBACK = {"url_import_allow_private_networks": True, "url_import_read_timeout_seconds": 0.5,
            "url_import_connect_timeout_seconds": 1, "url_import_retries": 1, "url_import_backoff_seconds": 0.05,
            "max_image_bytes": 100_000}


@pytest.fixture
def server():
    with UrlServer() as running:
        yield running


def create(client, admin, imageset_id, urls=None, *, text=None):
    if text is not None:
        return client.post(f"/api/v1/image_sets/{imageset_id}/imports", content=text.encode(),
                           headers={**admin, "Content-Type": "text/plain"})
    return client.post(f"/api/v1/image_sets/{imageset_id}/imports", json={"urls": urls}, headers=admin)


def started(client, admin, imageset_id, urls=None, *, text=None) -> dict:
    response = create(client, admin, imageset_id, urls, text=text)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return response.json()


def ended(client, admin, import_id, timeout=60) -> dict:
    return wait_until(lambda: (lambda i: i if i["status"] in ("finished", "failed") else None)(
        client.get(f"/api/v1/imports/{import_id}", headers=admin).json()), timeout=timeout, message="import to end")


def whole_report(client, admin, import_id, **query) -> list[dict]:
    rows, page = [], 1
    while page:
        response = client.get(f"/api/v1/imports/{import_id}/report", params={"page": page, "per_page": 1000, **query},
                              headers=admin)
        assert response.status_code == 200, response.text
        rows += response.json()["urls"]
        page = response.json()["pagination"]["next"]
    return rows


def histogram_total(flask_app) -> int:
    from sqlalchemy import text

    from app.extensions import db

    with flask_app.app_context():
        return db.session.scalar(text("SELECT coalesce(sum(count), 0) FROM ingest_minutes WHERE source = 'url'"))


def catalogue(flask_app, imageset_id: int, data: bytes) -> int:
    """An image already in the catalogue (in another set) with these bytes."""
    from app.extensions import db
    from app.models import Image

    with flask_app.app_context():
        row = Image(imageset_id=imageset_id, blobstorage_path="imagesets/elsewhere/known.png",
                    md5=hashlib.md5(data).hexdigest(), filetype="png", filesize=len(data), width=64, height=48)
        db.session.add(row)
        db.session.commit()
        return row.id


def test_every_kind_of_url_gets_its_outcome(client, admin, image_set, make_image_set, start_worker, server,
                                            flask_app):
    a, b, c, known = (images.png(seed=seed) for seed in (1, 2, 3, 4))
    known_id = catalogue(flask_app, make_image_set()["imageset_id"], known)
    server.add("/a.png", a, content_type="image/png")
    server.add("/a-copy.png", a, content_type="image/png")
    server.add("/b.png", b, content_type="image/png")
    server.add("/known.png", known, content_type="image/png")
    server.add("/flaky.png", images.png(seed=5), fail_first=1)
    server.add("/slow.png", images.png(seed=6), delay=2.0)
    server.add("/c.png", c, content_type="image/png")
    server.redirect("/moved", "/c.png")
    server.add("/text", b"hello, not an image\n" * 10, content_type="text/plain")
    server.add("/big", b"\x89PNG" + b"x" * 150_000, content_length=False)
    urls = [server.url(p) for p in ("/a.png", "/a-copy.png", "/b.png", "/known.png", "/missing", "/flaky.png",
                                    "/slow.png", "/moved", "/text", "/big")] + ["ftp://example.org/x.png"]
    body = "# photos from the survey\r\n\r\n" + "\r\n".join(f"  {url}  " for url in urls) + "\n\n# end\n"
    start_worker(**LOOPBACK)
    created = started(client, admin, image_set["imageset_id"], text=body)
    assert created["progress"] == {"total": 11, "done": 0, "accepted": 0, "duplicates": 0, "rejected": 0,
                                   "failed": 0}

    done = ended(client, admin, created["import_id"])
    assert done["status"] == "finished" and done["error"] is None and done["date_finished"]
    assert done["progress"] == {"total": 11, "done": 11, "accepted": 4, "duplicates": 2, "rejected": 3, "failed": 2}
    rows = whole_report(client, admin, created["import_id"])
    assert [row["position"] for row in rows] == list(range(11)) and [row["url"] for row in rows] == urls
    by_path = {row["url"].replace(server.base_url, ""): row for row in rows}
    for path in ("/a.png", "/b.png", "/flaky.png", "/moved"):
        assert by_path[path]["outcome"] == "accepted" and by_path[path]["image_id"], by_path[path]
        assert by_path[path]["http_status"] == 200 and by_path[path]["reason"] is None
    assert by_path["/a-copy.png"]["outcome"] == "duplicate"
    assert by_path["/a-copy.png"]["image_id"] == by_path["/a.png"]["image_id"]
    assert by_path["/known.png"] == {**by_path["/known.png"], "outcome": "duplicate", "image_id": known_id}
    assert by_path["/missing"]["outcome"] == "failed" and by_path["/missing"]["http_status"] == 404
    assert by_path["/missing"]["reason"] == "HTTP 404"
    assert by_path["/slow.png"]["outcome"] == "failed" and "timed out after 2 tries" in by_path["/slow.png"]["reason"]
    assert server.hits["/flaky.png"] == 2 and server.hits["/slow.png"] == 2
    assert by_path["/text"]["outcome"] == "rejected" and "not a recognised image" in by_path["/text"]["reason"]
    assert by_path["/big"]["outcome"] == "rejected" and "too large" in by_path["/big"]["reason"]
    assert by_path["ftp://example.org/x.png"]["outcome"] == "rejected"
    assert "scheme ftp" in by_path["ftp://example.org/x.png"]["reason"]
    failed = whole_report(client, admin, created["import_id"], outcome="failed")
    assert [row["url"] for row in failed] == [server.url("/missing"), server.url("/slow.png")]
    assert whole_report(client, admin, created["import_id"], outcome="pending") == []

    members = client.get(f"/api/v1/image_sets/{image_set['imageset_id']}/images?per_page=100", headers=admin).json()
    assert {i["image_id"] for i in members["images"]} == {by_path[p]["image_id"] for p in (
        "/a.png", "/b.png", "/flaky.png", "/moved", "/known.png")}
    assert {i["md5"] for i in members["images"]} >= {hashlib.md5(x).hexdigest() for x in (a, b, c)}
    storage = app_state(flask_app).storage
    stored = list(storage.container_client.list_blobs(name_starts_with=f"{image_set['blobstorage_path']}/url/"))
    assert len(stored) == 4  # the accepted images, no copy of a duplicate
    assert histogram_total(flask_app) == 11
    listed = client.get(f"/api/v1/image_sets/{image_set['imageset_id']}/imports", headers=admin).json()
    assert [i["import_id"] for i in listed["imports"]] == [created["import_id"]]


def test_private_addresses_are_refused_by_default(client, admin, image_set, start_worker, server):
    server.add("/a.png", images.png(seed=1), content_type="image/png")
    start_worker()
    created = started(client, admin, image_set["imageset_id"], [
        server.url("/a.png"), f"http://localhost:{server.port}/a.png", "http://169.254.169.254/latest/meta-data/"])
    done = ended(client, admin, created["import_id"])
    assert done["status"] == "finished"
    assert done["progress"] == {"total": 3, "done": 3, "accepted": 0, "duplicates": 0, "rejected": 3, "failed": 0}
    rows = whole_report(client, admin, created["import_id"])
    assert "a loopback address" in rows[0]["reason"] and "URL_IMPORT_ALLOW_PRIVATE_NETWORKS" in rows[0]["reason"]
    assert "localhost resolves to" in rows[1]["reason"] and "loopback" in rows[1]["reason"]
    assert "cloud metadata" in rows[2]["reason"]
    assert server.hits == {}  # nothing was fetched


def test_bad_requests_conflicts_and_the_report_while_queued(client, admin, image_set, flask_app, make_key):
    imageset_id = image_set["imageset_id"]
    for body, status, words in [
        ("# only a comment\n\n", 422, "no URLs"),
        ("http://example.org/" + "a" * 2048 + "\n", 422, "line 1 is longer than 2048"),
        ("http://example.org/a\nhttp://example.org/\x00b\n", 422, "line 2 holds a control character"),
        ("http://example.org/a\n" * 100_001, 413, "at most 100,000"),
    ]:
        problem = assert_problem(create(client, admin, imageset_id, text=body), status)
        assert words in problem["detail"] and problem["field"] == "body"
    problem = assert_problem(client.post(f"/api/v1/image_sets/{imageset_id}/imports", content=b"http://\xff\n",
                                         headers={**admin, "Content-Type": "text/plain"}), 422)
    assert "not UTF-8" in problem["detail"]
    assert "urls[1] is blank" in assert_problem(create(client, admin, imageset_id, ["http://x/a", "  "]), 422)["detail"]
    assert_problem(create(client, admin, imageset_id, ["http://x/" + "a" * 2048]), 400)
    assert_problem(create(client, admin, 999999, ["http://x/a"]), 404)
    assert client.get(f"/api/v1/image_sets/{imageset_id}/imports", headers=admin).json()["imports"] == []

    urls = [f"http://example.org/{n}.png" for n in range(7)]
    created = started(client, admin, imageset_id, urls)
    import_id = created["import_id"]
    page = client.get(f"/api/v1/imports/{import_id}/report?page=2&per_page=3", headers=admin).json()
    assert page["pagination"] == {"page": 2, "pages": 3, "total": 7, "per_page": 3, "next": 3, "prev": 1}
    assert [(r["position"], r["url"], r["outcome"]) for r in page["urls"]] == [(n, urls[n], None) for n in (3, 4, 5)]
    assert [r["position"] for r in whole_report(client, admin, import_id, outcome="pending")] == list(range(7))
    assert whole_report(client, admin, import_id, outcome="accepted") == []
    assert_problem(client.get(f"/api/v1/imports/{import_id}/report?page=4&per_page=3", headers=admin), 404)
    reader = make_key("reader")
    assert client.get(f"/api/v1/imports/{import_id}", headers=reader).json()["status"] == "queued"

    problem = assert_problem(client.put(f"/api/v1/image_sets/{imageset_id}", json={"new_status": "finished"},
                                        headers=admin), 409)
    assert f"URL import {import_id}" in problem["detail"] and problem["import_id"] == import_id
    assert client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()["status"] == "created"

    from app.extensions import db
    from app.models import ImageSet

    with flask_app.app_context():
        db.session.get(ImageSet, imageset_id).status = "finished"
        db.session.commit()
    problem = assert_problem(create(client, admin, imageset_id, ["http://example.org/a.png"]), 409)
    assert "is finished" in problem["detail"] and problem["current_status"] == "finished"
    assert_problem(client.get("/api/v1/imports/999999", headers=admin), 404)
    assert_problem(client.get("/api/v1/imports/999999/report", headers=admin), 404)
    assert len(client.get(f"/api/v1/image_sets/{imageset_id}/imports", headers=admin).json()["imports"]) == 1


def test_a_list_of_100000_urls_may_exceed_the_json_body_limit(client, admin, image_set, settings):
    urls = [f"https://images.example.org/survey-2026/north-beach/camera-{n:06d}/frame-0001-original.jpg" for n in range(100_000)]
    body = "\n".join(urls) + "\n"
    assert settings.max_json_body_bytes < len(body) < settings.max_import_request_bytes
    created = started(client, admin, image_set["imageset_id"], text=body)
    assert created["progress"]["total"] == 100_000
    last = client.get(f"/api/v1/imports/{created['import_id']}/report?page=1000&per_page=100", headers=admin).json()
    assert last["urls"][-1] == {"position": 99_999, "url": urls[-1], "outcome": None, "image_id": None,
                                "reason": None, "http_status": None}
    too_big = "x" * (settings.max_import_request_bytes + 1)
    problem = assert_problem(create(client, admin, image_set["imageset_id"], text=too_big), 413)
    assert "MAX_IMPORT_REQUEST_BYTES" in problem["detail"]


def test_a_worker_killed_mid_import_loses_and_doubles_nothing(client, admin, image_set, start_worker, server,
                                                               flask_app):
    count = 400
    for n in range(count):  # a little slow each, so the import is still under way when the worker dies
        server.add(image_path(n), images.png(seed=n, width=16, height=16), content_type="image/png", delay=0.02)
    server.add("/dup.png", images.png(seed=7, width=16, height=16), content_type="image/png")
    urls = [server.url(image_path(n)) for n in range(count)] + [server.url("/dup.png")]
    quick = {**LOOPBACK, **QUICK_RECOVERY, "url_import_chunk_size": 25, "url_import_batch_size": 5,
             "url_import_concurrency": 4, "worker_concurrency": 2}
    workers = [start_worker(**quick) for _ in range(3)]
    created = started(client, admin, image_set["imageset_id"], urls)
    wait_until(lambda: client.get(f"/api/v1/imports/{created['import_id']}", headers=admin).json()[
        "progress"]["done"] >= 60, timeout=60, message="the import to be under way")
    os.killpg(workers[0].pid, signal.SIGKILL)
    workers[0].wait()
    assert client.get(f"/api/v1/imports/{created['import_id']}", headers=admin).json()["status"] == "running"

    done = ended(client, admin, created["import_id"], timeout=90)
    assert done["status"] == "finished"
    assert done["progress"] == {"total": count + 1, "done": count + 1, "accepted": count, "duplicates": 1,
                                "rejected": 0, "failed": 0}
    rows = whole_report(client, admin, created["import_id"])
    assert len(rows) == count + 1 and all(row["outcome"] for row in rows)
    assert rows[-1]["image_id"] == rows[7]["image_id"]
    assert histogram_total(flask_app) == count + 1  # each URL recorded exactly once
    members = client.get(f"/api/v1/image_sets/{image_set['imageset_id']}/images?per_page=1", headers=admin).json()
    assert members["pagination"]["total"] == count
    storage = app_state(flask_app).storage
    stored = list(storage.container_client.list_blobs(name_starts_with=f"{image_set['blobstorage_path']}/url/"))
    assert len(stored) == count


def test_a_failed_import_shows_why_and_its_job_can_be_retried(client, admin, image_set, start_worker, server,
                                                               flask_app, app_context, monkeypatch):
    from types import SimpleNamespace

    from sqlalchemy import text

    from app.extensions import db
    from app.jobs.tasks import BACKOFF, import_urls_chunk
    from app.storage import StorageError

    server.add("/a.png", images.png(seed=1), content_type="image/png")
    created = started(client, admin, image_set["imageset_id"], [server.url("/a.png")])
    state = app_state(flask_app)

    def unreachable(*args, **kwargs):
        raise StorageError("blob storage unreachable: connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(state.settings, "url_import_allow_private_networks", True)
        patch.setattr(state.storage, "put_image", unreachable)
        for attempts, status in ((0, "running"), (BACKOFF.max_attempts - 1, "failed")):
            with pytest.raises(StorageError):  # raised, so the queue retries it while attempts remain
                import_urls_chunk(SimpleNamespace(job=SimpleNamespace(attempts=attempts), should_abort=lambda: False),
                                  import_id=created["import_id"], first=0, last=0)
            assert client.get(f"/api/v1/imports/{created['import_id']}", headers=admin).json()["status"] == status
    failed = client.get(f"/api/v1/imports/{created['import_id']}", headers=admin).json()
    assert failed["error"] == "StorageError: blob storage unreachable: connection refused"
    assert failed["progress"]["done"] == 0 and histogram_total(flask_app) == 0

    job_id = db.session.scalar(text("SELECT id FROM procrastinate_jobs WHERE task_name = 'import_urls_chunk'"))
    db.session.execute(text("UPDATE procrastinate_jobs SET status = 'failed', attempts = 8 WHERE id = :id"),
                       {"id": job_id})
    db.session.commit()
    assert client.post(f"/api/v1/jobs/{job_id}/retry", headers=admin).status_code == 202
    start_worker(**LOOPBACK)
    done = wait_until(lambda: (lambda i: i if i["status"] == "finished" else None)(
        client.get(f"/api/v1/imports/{created['import_id']}", headers=admin).json()), timeout=60,
        message="the retried chunk to finish the import")
    assert done["error"] is None
    assert done["progress"] == {"total": 1, "done": 1, "accepted": 1, "duplicates": 0, "rejected": 0, "failed": 0}
