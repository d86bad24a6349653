"""The dashboard at /dashboard in a real browser (Playwright driving Debian's Chromium) against the real
service, a worker, PostgreSQL and Azurite: what people do with it, each page saved as a screenshot under
test-artifacts/dashboard/ for a person to look at. Every page is checked for console errors and for requests
to any host other than the service and the storage account's blob host."""
from __future__ import annotations

import base64
import os
import re
import shutil
import signal
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from app.state import app_state
from tests import images
from tests.helpers import ROOT, box, defer_check_storage, job_row, pair, put, submit, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "test-artifacts" / "dashboard"
pytestmark = pytest.mark.browser
# Operations other branches are building (they answer 500 until they land): the dashboard shows their error
# and falls back, and the browser logs the failed load; nothing else may fail.
# /info/status answers 503 (with its checks, which the page shows) while no worker has sent a heartbeat yet.
EXPECTED_FAILURES = re.compile(r"/info/status$")  # red: no worker beside some pages


class Browser:
    def __init__(self, playwright, live_server: str, blob_origin: str):
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        self.base = live_server
        self.allowed = {urlsplit(live_server).netloc, urlsplit(blob_origin).netloc}
        self.errors: list[str] = []
        self.foreign: list[str] = []

    def page(self, width=1366, height=900):
        page = self.browser.new_page(viewport={"width": width, "height": height})
        page.on("console", lambda m: self._console(m))
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("request", lambda r: None if urlsplit(r.url).scheme in ("data", "blob") or urlsplit(r.url).netloc in self.allowed
                else self.foreign.append(r.url))
        return page

    def _console(self, message):
        if message.type != "error":
            return
        where = (message.location or {}).get("url", "")
        if "Failed to load resource" in message.text and EXPECTED_FAILURES.search(where):
            return
        self.errors.append(f"{message.text} ({where})")

    def sign_in(self, page, headers):
        page.goto(f"{self.base}/dashboard/")
        page.get_by_label("Authentication-Key").fill(headers["Authentication-Key"])
        page.get_by_label("Authentication-Secret").fill(headers["Authentication-Secret"])
        page.get_by_role("button", name="Sign in").click()
        page.locator("nav.nav").wait_for()

    def shot(self, page, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def check(self):
        assert self.errors == [], self.errors
        assert self.foreign == [], self.foreign


@contextmanager
def browser_for(live_server, flask_app):
    from playwright.sync_api import sync_playwright

    blob = app_state(flask_app).storage.service.url
    with sync_playwright() as p:
        browser = Browser(p, live_server, blob)
        try:
            yield browser
        finally:
            browser.browser.close()
    browser.check()


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_admin_finishes_a_set_reads_the_report_filters_the_grid_and_sees_boxes(live_server, flask_app, client, admin,
                                                                               start_worker):
    start_worker()
    with browser_for(live_server, flask_app) as b:
        page = b.page()
        b.sign_in(page, admin)
        page.locator("h1", has_text="Overview").wait_for()
        page.locator(".chart").wait_for()  # the histogram (or its fallback) drew, whatever the ingest operation said
        page.locator(".checks .check").first.wait_for()
        b.shot(page, "overview")

        # Create a set in the dashboard; its upload URL is shown once.
        page.locator("nav.nav").get_by_role("link", name="Image sets").click()
        page.get_by_placeholder("New image set title").fill("Dashboard beach")
        page.get_by_role("button", name="Create image set").click()
        dropbox = page.locator(".secret input").input_value()
        files = {"canon-1.jpg": images.jpeg(seed=1, exif={"make": "Canon", "model": "EOS 5D"}),
                 "canon-2.jpg": images.jpeg(seed=2, width=320, height=240, exif={"make": "Canon", "model": "EOS 5D"}),
                 "nikon.jpg": images.jpeg(seed=3, exif={"make": "Nikon", "model": "D850"}),
                 "notes.jpg": images.text_as_jpeg()}
        for name, data in files.items():  # as azcopy would: plain PUTs with the SAS
            assert put(dropbox, name, data).status_code == 201
        b.shot(page, "image-sets")

        # Finish it and watch the progress reach the end.
        page.locator("table").get_by_role("link", name="Dashboard beach").click()
        page.get_by_role("button", name="Finish", exact=True).click()
        page.locator("h1 .badge", has_text="finished").wait_for(timeout=60_000)
        assert "4 / 4" in page.locator(".progress-text").first.inner_text()
        b.shot(page, "image-set")

        # Every rejected file and why.
        page.locator('[data-outcome="rejected"]').click()
        rows = page.locator("table tbody tr")
        wait_until(lambda: rows.count() == 1 and "notes.jpg" in rows.first.inner_text(), timeout=10,
                   message="the rejected file listed")
        assert rows.first.locator("td").nth(3).inner_text().strip()  # the reason
        b.shot(page, "image-set-rejected")

        # The grid, filtered by camera.
        page.locator("nav.nav").get_by_role("link", name="Images", exact=True).click()
        page.locator(".grid .tile").first.wait_for()
        assert page.locator(".grid .tile").count() == 3
        page.get_by_label("Camera make").fill("Canon")
        page.get_by_role("button", name="Apply").click()
        expect(page.locator(".grid .tile")).to_have_count(2)
        assert sorted(page.locator(".tile-title").all_inner_texts()) == ["canon-1.jpg", "canon-2.jpg"]
        page.locator(".tile-frame.has-image").nth(1).wait_for()  # pictures, not only placeholders
        b.shot(page, "images")

        # Boxes submitted through the API, drawn on the image with their labels.
        listed = client.get("/api/v1/images?camera_make=Canon&camera_model=EOS%205D", headers=admin).json()["images"]
        big = next(i["image_id"] for i in listed if i["file"]["dimensions"]["width"] == 320)
        campaign = client.post("/api/v1/campaigns", json={"title": "Dashboard litter", "labeler_email": "l@example.org"},
                               headers=admin).json()
        cid = campaign["campaign_id"]
        client.post(f"/api/v1/campaigns/{cid}/images", json=[{"id": i["image_id"]} for i in listed], headers=admin)
        client.put(f"/api/v1/campaigns/{cid}", json={"new_status": "active"}, headers=admin)
        assert submit(client, admin, cid, [{"image_id": big, "objects": [
            {"bounding_box": box(20, 140, 30, 120), "label": "bottle"},
            {"bounding_box": box(160, 300, 100, 220), "label": "net"}]}]).status_code == 200
        page.goto(f"{live_server}/dashboard/#/images/{big}?campaign={cid}")
        page.locator(".figure img").wait_for()
        expect(page.locator(".figure .boxes .box")).to_have_count(2)
        assert sorted(page.locator(".figure .boxes .box-label").all_text_contents()) == ["bottle", "net"]
        page.locator("table td", has_text="bottle, net").wait_for()  # the revision
        b.shot(page, "image")

        page.goto(f"{live_server}/dashboard/#/campaigns/{cid}")
        page.get_by_role("button", name="Mark completed").wait_for()
        expect(page.locator(".grid .tile-frame.has-image")).to_have_count(2)
        b.shot(page, "campaign")

        # Keys: a new key's secret is shown once, with its copy button.
        page.locator("nav.nav").get_by_role("link", name="Keys").click()
        page.get_by_label("Email or device name").fill("new.reader@example.org")
        page.get_by_label("reader").check()
        page.get_by_role("button", name="Create key").click()
        secret = page.locator(".secret input").nth(1).input_value()
        assert len(secret) >= 24
        page.locator('[data-key-id]', has_text="new.reader@example.org").wait_for()
        b.shot(page, "keys")
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("button", name="Sign in").wait_for()
        assert page.evaluate("sessionStorage.length") == 0


def test_a_failed_job_shows_its_traceback_and_retry_makes_it_succeed(live_server, flask_app, admin, start_worker,
                                                                     storage_connection_string, app_context):
    from app.extensions import db

    job_id = defer_check_storage(flask_app)
    # Its last attempt (the earlier ones are not waited for: it stands as after its eighth) meets a storage account whose key was rotated.
    db.session.execute(text("UPDATE procrastinate_jobs SET attempts = 8 WHERE id = :id"), {"id": job_id})
    db.session.commit()
    wrong_key = base64.b64encode(b"rotated-away-account-key-0123456789abcdef").decode()
    refused = start_worker(azure_storage_connection_string=re.sub(r"AccountKey=[^;]+", f"AccountKey={wrong_key}",
                                                                  storage_connection_string))
    wait_until(lambda: job_row(flask_app, job_id)["status"] == "failed", timeout=60, message="the job to fail")
    os.killpg(refused.pid, signal.SIGKILL)
    refused.wait()
    start_worker()

    with browser_for(live_server, flask_app) as b:
        page = b.page()
        b.sign_in(page, admin)
        page.locator("nav.nav").get_by_role("link", name="Jobs").click()
        row = page.locator(f'tr[data-job-id="{job_id}"]')
        row.wait_for()
        assert "check_storage" in row.inner_text() and "failed" in row.inner_text()
        page.locator("table td", has_text="alive").first.wait_for()  # the worker and its heartbeat
        row.get_by_role("button", name="Details").click()
        page.locator("pre.traceback").first.wait_for()
        assert page.locator("pre.traceback").first.inner_text().startswith("Traceback")
        assert "AuthorizationFailure" in page.locator(".failure").first.inner_text()
        assert wrong_key not in page.content()
        b.shot(page, "jobs")
        row.get_by_role("button", name="Retry").click()
        wait_until(lambda: job_row(flask_app, job_id)["status"] == "succeeded", timeout=60, message="the re-run")
        page.goto(f"{live_server}/dashboard/#/jobs?status=succeeded")
        page.locator(f'tr[data-job-id="{job_id}"][data-status="succeeded"]').wait_for()
        b.shot(page, "jobs-retried")


def test_a_labeler_sees_only_its_campaign_and_a_reader_no_write_buttons(live_server, flask_app, client, admin,
                                                                         make_campaign, stored_images, make_key):
    mine = client.post("/api/v1/campaigns", json={"title": "Partner A batch", "labeler_email": "a@partner.example"},
                       headers=admin).json()
    make_campaign(stored_images[:2], title="Partner B batch", labeler_email="b@partner.example")
    client.post(f"/api/v1/campaigns/{mine['campaign_id']}/images", json=[{"id": stored_images[3]}], headers=admin)
    app_state(flask_app).storage.upload_bytes("imagesets/c/3.jpg", images.jpeg(width=100, height=80))
    with browser_for(live_server, flask_app) as b:
        page = b.page(width=1920, height=1000)
        b.sign_in(page, pair(mine["access_token"]))
        page.locator("h1", has_text="My campaigns").wait_for()
        assert page.locator("nav.nav a").all_inner_texts() == ["Campaigns"]
        assert page.locator("[data-campaign-id]").all_inner_texts()[0].startswith("Partner A batch")
        assert page.locator("[data-campaign-id]").count() == 1
        page.get_by_role("link", name="Partner A batch").click()
        page.locator(".grid .tile-frame.has-image").first.wait_for()  # its campaign's image, read through a SAS URL
        assert page.locator(".actions button").count() == 0  # no status moves for a labeler
        b.shot(page, "labeler")

        reader = b.page()
        b.sign_in(reader, make_key("reader"))
        reader.locator("nav.nav").get_by_role("link", name="Image sets").click()
        reader.locator("h1", has_text="Image sets").wait_for()
        assert reader.get_by_role("button", name="Create image set").count() == 0
        reader.locator("nav.nav").get_by_role("link", name="Campaigns").click()
        reader.get_by_role("link", name="Partner B batch").click()
        reader.locator(".kv").first.wait_for()
        assert reader.locator(".actions button").count() == 0
        assert [t.strip() for t in reader.locator("nav.nav a").all_inner_texts()] == ["Overview", "Image sets", "Images", "Campaigns"]


def test_overview_counts_every_set_and_campaign_by_status_and_links_to_each_list(live_server, flask_app, admin,
                                                                                  make_campaign):
    """The counts come from the API (?status=, per_page=1), not from the newest page of a list."""
    from app.extensions import db

    with flask_app.app_context():
        db.session.execute(text(
            "INSERT INTO image_sets (title, status, blobstorage_path, upload_container, progress_accepted, "
            "progress_duplicates, progress_rejected, progress_failed, date_created) "
            "SELECT 'counted ' || n, CASE WHEN n <= 1005 THEN 'finished' WHEN n <= 1008 THEN 'failed' ELSE 'created' END, "
            "'imagesets/counted ' || n, 'up-counted-' || n, 0, 0, 0, 0, now() FROM generate_series(1, 1010) AS n"))
        db.session.commit()
    make_campaign(title="Counted active")
    make_campaign(title="Counted created", status="created")
    with browser_for(live_server, flask_app) as b:
        page = b.page()
        b.sign_in(page, admin)
        sets = page.locator("section.card", has=page.locator("h2", has_text="Image sets"))
        expect(sets.locator(".big-number")).to_have_text("1,010")
        counts = {c.locator(".badge").inner_text().strip(): c.locator("b").inner_text() for c in
                  sets.locator(".status-count").all()}
        assert counts == {"created": "2", "finishing": "0", "finished": "1,005", "failed": "3"}
        campaigns = page.locator("section.card", has=page.locator("h2", has_text="Campaigns"))
        expect(campaigns.locator(".big-number")).to_have_text("2")
        b.shot(page, "overview-counts")

        sets.locator(".status-count", has=page.locator(".badge", has_text="failed")).click()
        page.locator("h1 .badge", has_text="failed").wait_for()
        rows = page.locator("table tbody tr")
        expect(rows).to_have_count(3)
        assert {r.get_attribute("data-status") for r in rows.all()} == {"failed"}
        b.shot(page, "image-sets-failed")
        page.get_by_role("link", name="show all").click()
        expect(page.locator("h1 .badge")).to_have_count(0)
        expect(rows).to_have_count(50)  # the first page of all 1,010
