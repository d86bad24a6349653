"""The Python client and the `labelstore` command (client/, installed into the test environment by make test),
against the real service: uvicorn serving the test app, a worker finishing sets, Azurite behind the dropbox.
The command runs as a subprocess, as a user runs it (no terminal: no progress bars)."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import ContainerClient
from click.testing import CliRunner

from labelstore_client import Client, LabelStoreError
from labelstore_client.cli import cli
from app.state import app_state
from tests import images
from tests.helpers import box, wait_until

LABELSTORE = str(Path(sys.executable).parent / "labelstore")


@pytest.fixture
def env(live_server, admin, tmp_path):
    """The command's environment: the live server and an admin key, and a config file of the test's own."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LABELSTORE_")},
            "LABELSTORE_URL": live_server, "LABELSTORE_KEY": admin["Authentication-Key"],
            "LABELSTORE_SECRET": admin["Authentication-Secret"], "LABELSTORE_CONFIG": str(tmp_path / "config.json")}


@pytest.fixture
def api(live_server, admin):
    with Client(live_server, admin["Authentication-Key"], admin["Authentication-Secret"]) as client:
        yield client


def run(env, *args, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([LABELSTORE, *args], env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def command(env, *args, check=True):
    """The command in this process (click's runner, the same code as the console script, without a start-up).
    The served app's log lines, which would land in the runner's stdout, are held back meanwhile."""
    logging.disable(logging.CRITICAL)
    try:
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    finally:
        logging.disable(logging.NOTSET)
    if check:
        assert result.exit_code == 0, result.stderr
    return result


def write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def etags(api: Client, imageset_id: int) -> dict[str, str]:
    """name -> etag of every blob in the set's dropbox, listed through a fresh SAS (LIST is allowed)."""
    with ContainerClient.from_container_url(api.new_dropbox_url(imageset_id).dropbox_url) as area:
        return {blob.name: blob.etag for blob in area.list_blobs()}


# --- upload ------------------------------------------------------------------------------------------------

def test_upload_killed_part_way_then_run_again_sends_each_file_once(env, api, start_worker, processes, tmp_path):
    start_worker()
    good = {f"day{i // 60}/img_{i:03d}.jpg": images.jpeg(seed=i) for i in range(180)}
    files = {**good, "z_copies/img_000.jpg": good["day0/img_000.jpg"], "z_copies/IMG_001.JPG": good["day0/img_001.jpg"],
             "broken/cut.jpg": images.truncated(images.jpeg(seed=999, width=400, height=300)),
             "broken/notes.jpg": images.text_as_jpeg(), "broken/empty.png": images.empty()}
    folder = tmp_path / "photos"
    write(folder, {**files, "notes.txt": b"not an image", ".hidden/x.jpg": images.jpeg(seed=5000)})

    first = processes.start([LABELSTORE, "upload", str(folder), "--title", "beach", "--concurrency", "1"], env=env,
                            stderr=subprocess.PIPE, text=True)
    announced = first.stderr.readline()  # the set's id comes first, for a re-run
    imageset_id = int(announced.split()[2])
    assert f"--set {imageset_id}" in announced
    wait_until(lambda: len(etags(api, imageset_id)) >= 20, timeout=30, interval=0.01, message="20 blobs uploaded")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.3)  # whatever the killed process had in flight has landed or never will
    before = etags(api, imageset_id)
    assert 20 <= len(before) < len(files), "the kill came after the upload had finished"
    assert api.get_image_set(imageset_id).status == "created"

    rerun = run(env, "--json", "upload", str(folder), "--set", str(imageset_id), "--no-finish")
    assert "%|" not in rerun.stderr and "uploading" not in rerun.stderr  # no progress bar without a terminal
    again = json.loads(rerun.stdout)
    assert (again["files"], again["uploaded"], again["skipped"]) == (len(files), len(files) - len(before), len(before))
    after = etags(api, imageset_id)
    assert after.keys() == files.keys()  # every image file, by its relative path; no .txt, nothing hidden
    assert {name: after[name] for name in before} == before  # nothing uploaded twice
    assert again["status"] == "created"

    done = json.loads(run(env, "upload", str(folder), "--set", str(imageset_id), "--json").stdout)
    assert (done["uploaded"], done["skipped"], done["status"]) == (0, len(files), "finished")
    assert done["progress"] == {"total": 185, "done": 185, "accepted": 180, "duplicates": 2, "rejected": 3,
                                "failed": 0}
    assert done["report"].endswith(f"/api/v1/image_sets/{imageset_id}/report")
    report = {f.name: f for f in api.image_set_report(imageset_id)}
    assert {n for n, f in report.items() if f.outcome == "rejected"} == {"broken/cut.jpg", "broken/notes.jpg",
                                                                        "broken/empty.png"}
    assert {n for n, f in report.items() if f.outcome == "duplicate"} == {"z_copies/img_000.jpg", "z_copies/IMG_001.JPG"}
    late = json.loads(command(env, "--json", "upload", str(folder), "--set", str(imageset_id)).stdout)
    assert (late["already"], late["uploaded"], late["status"]) == ("finished", 0, "finished")  # says so, sends none

    # An image comes back byte for byte through `images get`.
    listed = [json.loads(line) for line in run(env, "--json", "images", "list", "--set", str(imageset_id),
                                               "--limit", "3").stdout.splitlines()]
    assert len(listed) == 3
    target = tmp_path / "back.jpg"
    run(env, "images", "get", str(listed[0]["image_id"]), "-o", str(target))
    original = next(data for name, data in good.items() if listed[0]["blobstorage_path"].endswith(name))
    assert target.read_bytes() == original


def test_an_expired_dropbox_url_is_replaced_by_a_fresh_one(api, flask_app, tmp_path):
    write(tmp_path, {f"{i}.png": images.png(seed=i) for i in range(3)})
    created = api.create_image_set("expired")
    container = created.dropbox_url.split("?")[0].rsplit("/", 1)[1]
    storage = app_state(flask_app).storage
    created.dropbox_url = storage.upload_area_url(container, timedelta(minutes=-5)).url  # expired 5 minutes ago
    with pytest.raises(HttpResponseError) as refused:
        with ContainerClient.from_container_url(created.dropbox_url) as area:
            list(area.list_blobs())
    assert refused.value.status_code == 403  # storage itself refuses the old URL

    summary = api.upload_directory(tmp_path, created, finish=False)
    assert (summary.uploaded, summary.skipped, summary.refreshed_dropbox_url) == (3, 0, 1)
    assert sorted(etags(api, created.imageset_id)) == ["0.png", "1.png", "2.png"]


# --- labels and exports ------------------------------------------------------------------------------------

def test_labels_submitted_read_back_and_exported_as_the_api_exports(env, live_server, admin, stored_images, tmp_path):
    created = json.loads(command(env, "--json", "campaigns", "create", "--title", "Beach/Litter",
                             "--labeler-email", "partner@example.org", "--labels", "bottle,net").stdout)
    campaign_id = created["campaign_id"]
    assert created["access_token"]["apisecret"]  # shown once, to whoever created the campaign
    added = json.loads(command(env, "--json", "campaigns", "add-images", str(campaign_id),
                           *map(str, stored_images[:3])).stdout)
    assert added["added"] == 3
    assert "active" in command(env, "campaigns", "status", str(campaign_id), "active").stdout

    submitted = [{"image_id": stored_images[0], "objects": [{"bounding_box": box(10, 60, 8, 40), "label": "bottle"}]},
                 {"image_id": stored_images[1], "objects": [{"bounding_box": box(0, 100, 0, 80), "label": "net"},
                                                            {"bounding_box": box(25, 50, 20, 60), "label": "bottle"}]}]
    (tmp_path / "labels.json").write_text(json.dumps(submitted))
    stored = json.loads(command(env, "--json", "labels", "submit", "--campaign", str(campaign_id),
                            str(tmp_path / "labels.json")).stdout)
    assert (stored["images"], stored["objects"], stored["progress"]) == (2, 3, {"total": 3, "done": 2})

    read = json.loads(command(env, "labels", "get", "--campaign", str(campaign_id)).stdout)
    as_sent = {i["image_id"]: sorted((o["label"], tuple(o["bounding_box"].values())) for o in i["objects"])
               for i in submitted}
    as_read = {i["image_id"]: sorted((o["label"], tuple(o["bounding_box"].values())) for o in i["objects"])
               for i in read if i["objects"]}
    assert as_read == as_sent
    assert json.loads(command(env, "--json", "campaigns", "show", str(campaign_id)).stdout)["progress"]["done"] == 2

    exported = tmp_path / "out" / "coco.json"
    exported.parent.mkdir()
    command(env, "export", "--campaign", str(campaign_id), "--format", "coco", "-o", str(exported))
    direct = httpx.get(f"{live_server}/api/v1/campaigns/{campaign_id}/coco", headers=admin)
    assert direct.status_code == 200 and exported.read_bytes() == direct.content
    assert len(json.loads(direct.content)["annotations"]) == 3
    assert [p.name for p in exported.parent.iterdir()] == ["coco.json"]  # no partial file left behind


# --- failures, configuration, secrets ----------------------------------------------------------------------

def test_a_failed_call_exits_non_zero_with_the_problem_detail(env, live_server, admin):
    direct = httpx.get(f"{live_server}/api/v1/image_sets/999999", headers=admin)
    failed = run(env, "sets", "show", "999999", check=False)  # the installed console script, its exit status
    assert failed.returncode == 1 and failed.stdout == ""
    assert direct.json()["detail"] in failed.stderr and "404" in failed.stderr
    assert "request " in failed.stderr

    wrong = command({**env, "LABELSTORE_SECRET": "not-the-secret-0123456789"}, "sets", "list", check=False)
    assert wrong.exit_code == 1 and "401" in wrong.stderr
    assert "not-the-secret" not in wrong.output

    unconfigured = {"LABELSTORE_URL": None, "LABELSTORE_KEY": None, "LABELSTORE_SECRET": None,
                    "LABELSTORE_CONFIG": env["LABELSTORE_CONFIG"]}
    missing = command(unconfigured, "sets", "list", check=False)
    assert missing.exit_code == 1 and "labelstore login" in missing.stderr


def test_login_writes_a_private_profile_that_later_commands_use(env, admin, tmp_path):
    secret = admin["Authentication-Secret"]
    plain = {k: v for k, v in env.items() if k not in ("LABELSTORE_KEY", "LABELSTORE_SECRET")}
    login = subprocess.run([LABELSTORE, "login", "--key", admin["Authentication-Key"], "--secret-stdin"],
                           env=plain, input=secret + "\n", capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    assert secret not in login.stdout + login.stderr
    config = Path(env["LABELSTORE_CONFIG"])
    assert config.stat().st_mode & 0o777 == 0o600
    whoami = command({"LABELSTORE_URL": None, "LABELSTORE_KEY": None, "LABELSTORE_SECRET": None,
                      "LABELSTORE_CONFIG": env["LABELSTORE_CONFIG"]}, "--json", "whoami")
    assert json.loads(whoami.stdout)["key_id"] == admin["Authentication-Key"]
    assert secret not in whoami.stdout


def test_secrets_stay_out_of_reprs_and_errors(api, admin):
    assert admin["Authentication-Secret"] not in repr(api)
    created = api.create_image_set("private")
    assert "sig=" not in repr(created) and created.dropbox_url.count("sig=") == 1
    key = api.create_key(["reader"], email="reader@example.org")
    assert key.apisecret and key.apisecret not in repr(key)
    with pytest.raises(LabelStoreError) as refused:
        api.get_image_set(999999)
    assert refused.value.status == 404 and refused.value.request_id and refused.value.detail
    assert admin["Authentication-Secret"] not in str(refused.value) + repr(refused.value)


# --- retries ------------------------------------------------------------------------------------------------

@pytest.fixture
def flaky_server():
    """A loopback server: for each path, a script of answers (status, or "drop" to close without answering),
    the last one repeated; records each request it gets."""
    import http.server
    import socketserver
    import threading

    scripts, seen = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            seen.append((self.command, self.path))
            script = scripts[self.path.split("?")[0]]
            step = script.pop(0) if len(script) > 1 else script[0]
            if step == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            body = json.dumps({"key_id": "k", "owner": {"kind": "user", "name": "a@example.org"}, "roles": [],
                               "campaign_ids": [], "imageset_ids": []} if step == 200 else
                              {"type": "about:blank", "title": "Busy", "status": step, "detail": "try later"})
            self.send_response(step)
            self.send_header("Content-Type", "application/json" if step == 200 else "application/problem+json")
            self.send_header("Retry-After", "0")
            self.send_header("X-Request-ID", f"req-{len(seen)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", scripts, seen
    server.shutdown()
    server.server_close()


def test_429_and_503_are_retried_other_failures_are_not(flaky_server):
    url, scripts, seen = flaky_server
    client = Client(url, "k", "s", backoff=0.01, max_retries=3)
    scripts["/api/v1/me"] = [503, 429, 200]
    assert client.me().key_id == "k" and len(seen) == 3

    seen.clear()
    scripts["/api/v1/image_sets/1"] = [503]  # still busy after every retry: the last problem is raised
    with pytest.raises(LabelStoreError) as busy:
        client.get_image_set(1)
    assert len(seen) == 4 and busy.value.status == 503 and busy.value.request_id == "req-4"

    seen.clear()
    scripts["/api/v1/image_sets/2"] = [400]
    with pytest.raises(LabelStoreError):
        client.get_image_set(2)
    assert len(seen) == 1

    # An answer lost after the request was sent: a GET is sent again, a POST is not (it may have been done).
    seen.clear()
    scripts["/api/v1/image_sets/3"] = ["drop", 200]
    scripts["/api/v1/campaigns/3/datasets"] = ["drop", 202]
    client.get_image_set(3)
    with pytest.raises(LabelStoreError) as lost:
        client.create_dataset_version(3)
    assert seen == [("GET", "/api/v1/image_sets/3"), ("GET", "/api/v1/image_sets/3"),
                    ("POST", "/api/v1/campaigns/3/datasets")]
    assert lost.value.status is None and "connection" in lost.value.title


def test_upload_files_straight_into_a_set_with_labels_and_the_ingest_histogram(api, admin, tmp_path, make_campaign):
    image_set = api.create_image_set("client direct")
    campaign = make_campaign(labels=["bottle"])
    write(tmp_path, {"a.jpg": images.jpeg(seed=71), "notes.jpg": b"not an image"})
    by_path = api.upload_files(image_set.imageset_id, [tmp_path / "a.jpg", tmp_path / "notes.jpg"])
    assert [(r.name, r.outcome) for r in by_path] == [("a.jpg", "accepted"), ("notes.jpg", "rejected")]
    labelled = api.upload_files(image_set.imageset_id, [
        {"name": "b.jpg", "content": images.jpeg(seed=72, width=100, height=80), "campaign_id": campaign["campaign_id"],
         "objects": [{"bounding_box": box(10, 60, 8, 40), "label": "bottle"}]},
        {"name": "again.jpg", "content": images.jpeg(seed=71)}])
    assert [(r.outcome, r.objects) for r in labelled] == [("accepted", 1), ("duplicate", None)]
    assert labelled[1].duplicate_of == by_path[0].image_id
    minutes = api.ingest_histogram(minutes=5)
    assert (sum(b.accepted for b in minutes), sum(b.duplicate for b in minutes), sum(b.rejected for b in minutes)) == (
        2, 1, 1)
    assert minutes[-1].by_source["upload"]["accepted"] >= 1
    with pytest.raises(LabelStoreError) as refused:
        api.upload_files(999999, [tmp_path / "a.jpg"])
    assert refused.value.status == 404


def test_import_urls_from_a_file_waits_and_reports(env, api, start_worker, tmp_path):
    from tests.url_server import UrlServer

    start_worker(url_import_allow_private_networks=True)
    image_set = api.create_image_set("client urls")
    with UrlServer() as server:
        good = server.add("/a.png", images.png(seed=81))
        copy = server.add("/copy.png", images.png(seed=81))
        (tmp_path / "urls.txt").write_text(f"# from the survey\n{good}\n\n{copy}\n{server.url('/missing.png')}\n")
        done = json.loads(run(env, "--json", "import-urls", str(tmp_path / "urls.txt"), "--set",
                              str(image_set.imageset_id), "--wait").stdout)
    assert done["status"] == "finished"
    assert {k: done["progress"][k] for k in ("total", "accepted", "duplicates", "failed")} == {
        "total": 3, "accepted": 1, "duplicates": 1, "failed": 1}
    report = {r.url: (r.outcome, r.http_status) for r in api.import_report(done["import_id"])}
    assert report[server.url("/missing.png")] == ("failed", 404)
