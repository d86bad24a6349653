"""Webhooks: registration behind the SSRF guard, secrets shown once and stored encrypted, the outbox written with
the change, and delivery by a real worker to loopback receivers: retried with growing waits, then failed;
timeouts; a worker killed mid-delivery; signatures checked with the README's own snippet."""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from datetime import datetime

import pytest
from sqlalchemy import text

from app.state import app_state
from tests import images
from tests.helpers import QUICK_RECOVERY, ROOT, HookReceiver, assert_problem, finish, put, wait_until

# A worker that retries within seconds instead of a day: 0.5 s doubling to 2 s, for 6 s; attempts time out at 1 s.
QUICK_RETRIES = {"webhook_first_retry_seconds": 0.5, "webhook_max_retry_seconds": 2, "webhook_retry_for_seconds": 6,
                 "webhook_timeout_seconds": 1, "worker_poll_seconds": 0.2, "url_import_allow_private_networks": True}


def readme_verify():
    """`verify` as the README gives it to receivers: the test checks signatures with exactly that code."""
    section = (ROOT / "README.md").read_text().split("### Webhooks", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    return scope["verify"]


@pytest.fixture
def private_allowed(flask_app, monkeypatch):
    """The in-process API lets loopback URLs through, as URL_IMPORT_ALLOW_PRIVATE_NETWORKS=true would."""
    monkeypatch.setattr(app_state(flask_app).settings, "url_import_allow_private_networks", True)


def register(client, admin, url, events=("key.revoked",), **body):
    response = client.post("/api/v1/webhooks", json={"url": url, "events": list(events), **body}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(client, admin, webhook_id):
    response = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=admin)
    assert response.status_code == 200, response.text
    return response.json()["deliveries"]


def settled(client, admin, webhook_id, status):
    return wait_until(lambda: (lambda d: d if d and d[0]["status"] == status else None)(
        deliveries(client, admin, webhook_id)), timeout=40, message=f"a delivery {status}")[0]


def started(start_worker, flask_app, **settings):
    """A worker, once it takes jobs: the short retry window starts when the event is queued, not when Python
    has finished importing."""
    from app.extensions import db

    before = _workers(db, flask_app)
    process = start_worker(**settings)
    wait_until(lambda: _workers(db, flask_app) > before, timeout=30, message="the worker to start")
    return process


def _workers(db, flask_app) -> int:
    with flask_app.app_context(), db.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM procrastinate_workers")).scalar_one()


def revoke(client, admin, make_key) -> str:
    key_id = make_key("reader")["Authentication-Key"]
    assert client.delete(f"/api/v1/keys/{key_id}", headers=admin).status_code == 200
    return key_id


# --- registration -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, says", [
    ("http://127.0.0.1:9/hook", "loopback"),
    ("http://localhost:9/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://169.254.169.254/latest", "metadata"),
    ("ftp://93.184.215.14/hook", "scheme ftp"),
])
def test_registration_refuses_what_the_guard_refuses(client, admin, url, says):
    body = assert_problem(client.post("/api/v1/webhooks", json={"url": url, "events": ["key.revoked"]},
                                      headers=admin), 422)
    assert body["field"] == "url" and says in body["detail"]
    assert client.get("/api/v1/webhooks", headers=admin).json()["webhooks"] == []


def test_private_networks_when_allowed_but_never_metadata(client, admin, private_allowed):
    assert register(client, admin, "http://127.0.0.1:9/hook")["url"] == "http://127.0.0.1:9/hook"
    assert_problem(client.post("/api/v1/webhooks", json={"url": "http://169.254.169.254/", "events": ["key.revoked"]},
                               headers=admin), 422)


def test_secret_is_shown_once_and_stored_encrypted(client, admin, app_context):
    from app.extensions import db

    generated = register(client, admin, "https://93.184.215.14/a", events=["key.revoked", "image_set.finished"])
    assert generated["secret"].startswith("whsec_") and len(generated["secret"]) > 40
    assert generated["events"] == ["image_set.finished", "key.revoked"]
    given = register(client, admin, "https://93.184.215.14/b", secret="my-own-secret-0123456789")
    assert given["secret"] == "my-own-secret-0123456789"

    shown = client.get(f"/api/v1/webhooks/{generated['webhook_id']}", headers=admin).json()
    listed = client.get("/api/v1/webhooks", headers=admin).json()["webhooks"]
    assert "secret" not in shown and all("secret" not in w for w in listed) and len(listed) == 2
    assert shown["created_by"].endswith("@example.org")
    stored = db.session.execute(text("SELECT secret_encrypted FROM webhooks")).scalars().all()
    dump = b"".join(bytes(s) for s in stored)
    assert b"whsec_" not in dump and b"my-own-secret" not in dump and len(stored) == 2

    assert_problem(client.post("/api/v1/webhooks", json={"url": "https://93.184.215.14/c", "events": ["nope"]},
                               headers=admin), 400)
    assert client.delete(f"/api/v1/webhooks/{given['webhook_id']}", headers=admin).status_code == 200
    assert_problem(client.get(f"/api/v1/webhooks/{given['webhook_id']}", headers=admin), 404)


def test_registering_and_deleting_are_in_the_audit_trail_without_the_url_path_or_secret(client, admin):
    made = register(client, admin, "https://93.184.215.14/hooks/T0KEN-in-the-path?token=abc",
                    events=["key.revoked"])
    assert client.delete(f"/api/v1/webhooks/{made['webhook_id']}", headers=admin).status_code == 200

    trail = client.get("/api/v1/audit", params={"entity": "webhook", "entity_id": str(made["webhook_id"])},
                       headers=admin).json()["entries"]
    assert [(e["action"], e["before"], e["after"]) for e in trail] == [
        ("delete", {"url": "https://93.184.215.14/…", "events": ["key.revoked"]}, None),
        ("create", None, {"url": "https://93.184.215.14/…", "events": ["key.revoked"]})]
    assert all(e["key_id"] == admin["Authentication-Key"] for e in trail)
    assert "T0KEN" not in json.dumps(trail) and "abc" not in json.dumps(trail) and made["secret"] not in json.dumps(trail)


def test_an_event_exists_exactly_when_its_change_commits(client, admin, make_key, app_context):
    from app.extensions import db

    hook = register(client, admin, "https://93.184.215.14/a")
    key_id = revoke(client, admin, make_key)
    assert_problem(client.delete(f"/api/v1/keys/{key_id}", headers=admin), 409)  # refused: no second event
    events = db.session.execute(text("SELECT type, payload FROM webhook_events")).all()
    assert [(t, p["key_id"]) for t, p in events] == [("key.revoked", key_id)]
    (delivery,) = deliveries(client, admin, hook["webhook_id"])
    assert (delivery["status"], delivery["attempts"], delivery["event_type"]) == ("pending", 0, "key.revoked")
    jobs = db.session.execute(text("SELECT args FROM procrastinate_jobs WHERE task_name = 'deliver_webhook'")).all()
    assert [j.args for j in jobs] == [{"delivery_id": delivery["delivery_id"], "attempt": 0}]


# --- delivery by a worker -------------------------------------------------------------------------------------

def test_retries_backoff_timeouts_give_up_and_redeliver(client, admin, make_key, start_worker, flask_app,
                                                        private_allowed):
    verify = readme_verify()
    flaky = HookReceiver(lambda n: 500 if n <= 2 else 200)  # fails twice, then takes it
    down = HookReceiver(lambda n: 503)  # down for good
    slow = HookReceiver(lambda n: (200, 5) if n == 1 else 200)  # first answer after the 1 s timeout
    with flaky, down, slow:
        hooks = {name: register(client, admin, r.url) for name, r in
                 (("flaky", flaky), ("down", down), ("slow", slow))}
        started(start_worker, flask_app, **QUICK_RETRIES)
        key_id = revoke(client, admin, make_key)

        delivered = settled(client, admin, hooks["flaky"]["webhook_id"], "delivered")
        assert (delivered["attempts"], delivered["last_status"], delivered["last_response"]) == (3, 200, "ok")
        assert [e["id"] for e in flaky.events()] == [delivered["event_id"]] * 3
        assert {e["type"] for e in flaky.events()} == {"key.revoked"} and flaky.events()[0]["data"]["key_id"] == key_id
        assert len({body for _, _, body in flaky.received}) == 1  # the same bytes each time
        for _, headers, body in flaky.received:
            assert verify(hooks["flaky"]["secret"], headers, body)
            assert headers["X-LabelStore-Event-Id"] == delivered["event_id"]
            assert headers["User-Agent"].startswith("LabelStore/") and "webhooks" in headers["User-Agent"]
            assert not verify("whsec_another", headers, body)
            assert not verify(hooks["flaky"]["secret"], headers, body + b" ")

        timed_out = settled(client, admin, hooks["slow"]["webhook_id"], "delivered")
        assert timed_out["attempts"] == 2 and len(slow.received) == 2
        # The 1 s timeout covers the whole try, connecting included, so it runs out less than 1 s after the
        # receiver has the request (0.33 s less once on a loaded machine); then the first wait, 0.5 s. The
        # answer, 5 s late, was not waited for.
        assert 0.5 <= slow.received[1][0] - slow.received[0][0] < 5

        failed = settled(client, admin, hooks["down"]["webhook_id"], "failed")
        times = [at for at, _, _ in down.received]
        assert failed["attempts"] == len(times) >= 3
        assert (failed["last_status"], failed["last_error"], failed["next_attempt_at"]) == (503, "HTTP 503", None)
        gaps = [b - a for a, b in zip(times, times[1:])]
        waits = [min(0.5 * 2 ** i, 2) for i in range(len(gaps))]  # 0.5, 1, 2, 2 ...: it grows, then is capped
        assert all(gap >= wait - 0.05 for gap, wait in zip(gaps, waits)), gaps
        window = datetime.fromisoformat(failed["last_attempt_at"]) - datetime.fromisoformat(failed["event_created_at"])
        assert window.total_seconds() > 6 - 2  # given up only when the next wait would pass the 6 s window
        assert all(h["X-LabelStore-Event-Id"] == failed["event_id"] for _, h, _ in down.received)

        again = client.post(f"/api/v1/webhooks/{hooks['flaky']['webhook_id']}/deliveries/"
                            f"{delivered['delivery_id']}/redeliver", headers=admin)
        assert again.status_code == 202 and again.json()["status"] == "pending"
        wait_until(lambda: len(flaky.received) == 4, timeout=20, message="the redelivery")
        assert flaky.events()[3]["id"] == delivered["event_id"]
        assert settled(client, admin, hooks["flaky"]["webhook_id"], "delivered")["attempts"] == 4


def test_killed_worker_mid_delivery_delivers_again_with_the_same_event_id(client, admin, make_key, start_worker,
                                                                         private_allowed):
    with HookReceiver(lambda n: (200, 60) if n == 1 else 200) as hook:  # the first is held until the worker dies
        webhook = register(client, admin, hook.url)
        doomed = start_worker(**{**QUICK_RETRIES, "webhook_timeout_seconds": 30})
        revoke(client, admin, make_key)
        wait_until(lambda: hook.received, timeout=30, message="the first attempt to arrive")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
        (pending,) = deliveries(client, admin, webhook["webhook_id"])
        assert (pending["status"], pending["attempts"]) == ("pending", 0)  # the attempt never came back

        start_worker(**{**QUICK_RETRIES, **QUICK_RECOVERY})  # re-runs the dead worker's job
        delivered = settled(client, admin, webhook["webhook_id"], "delivered")
        assert delivered["attempts"] == 1 and len(hook.received) == 2
        assert [e["id"] for e in hook.events()] == [delivered["event_id"]] * 2
        assert hook.received[0][2] == hook.received[1][2]
        assert readme_verify()(webhook["secret"], hook.received[1][1], hook.received[1][2])


def test_real_changes_emit_their_events(client, admin, make_key, image_set, start_worker, private_allowed):
    with HookReceiver() as hook:
        webhook = register(client, admin, hook.url, events=["image_set.finished", "key.revoked"])
        other = register(client, admin, hook.url.replace("/hook", "/other"), events=["campaign.finished"])
        start_worker(**QUICK_RETRIES)
        put(image_set["dropbox_url"], "a.png", images.png(seed=1, width=16, height=16))
        assert finish(client, admin, image_set["imageset_id"])["status"] == "finished"
        key_id = revoke(client, admin, make_key)
        wait_until(lambda: len(hook.received) == 2, timeout=30, message="two events")
        finished, revoked = sorted(hook.events(), key=lambda e: e["type"])
        assert finished["type"] == "image_set.finished"
        assert finished["data"]["imageset_id"] == image_set["imageset_id"]
        assert finished["data"]["progress"]["accepted"] == 1
        assert (revoked["type"], revoked["data"]["key_id"]) == ("key.revoked", key_id)
        # The receiver answers before the worker records the delivery: wait for the record, not just the POST.
        wait_until(lambda: {d["status"] for d in deliveries(client, admin, webhook["webhook_id"])} == {"delivered"},
                   timeout=30, message="both deliveries recorded as delivered")
        assert len(deliveries(client, admin, webhook["webhook_id"])) == 2
        assert deliveries(client, admin, other["webhook_id"]) == []  # not subscribed to these
        assert all(json.loads(body)["id"] == h["X-LabelStore-Event-Id"] for _, h, body in hook.received)
        time.sleep(0.5)
        assert len(hook.received) == 2


def test_two_overlapping_runs_of_one_delivery_send_it_once(client, admin, make_key, flask_app, private_allowed):
    """A job queued twice (or re-queued while it still runs): the second run waits for the first's lock, then
    finds the attempt recorded and sends nothing."""
    from types import SimpleNamespace

    from app.jobs.webhook_tasks import deliver_webhook

    with HookReceiver(lambda n: (200, 1)) as hook:  # slow enough for the runs to overlap
        webhook = register(client, admin, hook.url)
        revoke(client, admin, make_key)
        (delivery,) = deliveries(client, admin, webhook["webhook_id"])

        def run(job_id):
            context = SimpleNamespace(job=SimpleNamespace(id=job_id, attempts=0), should_abort=lambda: False)
            with flask_app.app_context():
                deliver_webhook.func(context, delivery_id=delivery["delivery_id"], attempt=0)

        runs = [threading.Thread(target=run, args=(n,)) for n in (1, 2)]
        for thread in runs:
            thread.start()
        for thread in runs:
            thread.join(30)
        assert len(hook.received) == 1
        (done,) = deliveries(client, admin, webhook["webhook_id"])
        assert (done["status"], done["attempts"]) == ("delivered", 1)
