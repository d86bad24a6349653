"""Key lifecycle: created with a secret shown once, stored only as an HMAC, revoked, rotated, expired."""
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import text

from app.state import app_state
from tests.helpers import ROOT, assert_problem, env_for, pair


def create(client, admin, **body) -> dict:
    body.setdefault("roles", ["reader"])
    if "device" not in body:
        body.setdefault("email", "partner@example.org")
    response = client.post("/api/v1/keys", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def test_created_key_works_and_its_secret_is_shown_once(client, admin, app_context, image_set):
    created = create(client, admin, roles=["reader", "uploader"], email="Partner@Example.org",
                     imageset_ids=[image_set["imageset_id"]])
    assert created["apikey"] == created["key_id"] and len(created["apisecret"]) >= 22  # >= 128 bits
    me = client.get("/api/v1/me", headers=pair(created)).json()
    assert me["roles"] == ["reader", "uploader"] and me["owner"] == {"kind": "user", "name": "partner@example.org"}
    assert me["imageset_ids"] == [image_set["imageset_id"]]

    listed = client.get("/api/v1/keys", headers=admin)
    assert created["apisecret"] not in listed.text and "apisecret" not in listed.text
    fetched = client.get(f"/api/v1/keys/{created['key_id']}", headers=admin)
    assert created["apisecret"] not in fetched.text

    from app.extensions import db

    row = db.session.execute(text("SELECT * FROM api_keys WHERE key_id = :k"), {"k": created["key_id"]}).mappings().one()
    assert created["apisecret"].encode() not in b"".join(
        v if isinstance(v, bytes) else str(v).encode() for v in row.values())


def test_device_keys_and_owner_rules(client, admin, image_set):
    device = create(client, admin, device="camera-7", roles=["uploader"], imageset_ids=[image_set["imageset_id"]])
    assert device["owner"] == {"kind": "device", "name": "camera-7"}
    assert_problem(client.post("/api/v1/keys", json={"roles": ["reader"]}, headers=admin), 422)
    both = client.post("/api/v1/keys", json={"roles": ["reader"], "email": "a@example.org", "device": "d"},
                       headers=admin)
    assert_problem(both, 422)


def test_revoked_key_is_refused_from_the_next_request(client, admin):
    created = create(client, admin)
    assert client.get("/api/v1/me", headers=pair(created)).status_code == 200
    revoked = client.delete(f"/api/v1/keys/{created['key_id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    body = assert_problem(client.get("/api/v1/me", headers=pair(created)), 401)
    assert "revoked" in body["detail"]
    assert_problem(client.delete(f"/api/v1/keys/{created['key_id']}", headers=admin), 409)
    listed = client.get("/api/v1/keys", headers=admin).json()["keys"]
    assert created["key_id"] not in [k["key_id"] for k in listed]
    listed = client.get("/api/v1/keys?include_revoked=true", headers=admin).json()["keys"]
    assert created["key_id"] in [k["key_id"] for k in listed]


def test_rotation_without_grace_refuses_the_old_secret(client, admin):
    created = create(client, admin)
    rotated = client.post(f"/api/v1/keys/{created['key_id']}/rotate", headers=admin)
    assert rotated.status_code == 200
    assert rotated.json()["apisecret"] != created["apisecret"]
    assert_problem(client.get("/api/v1/me", headers=pair(created)), 401)
    assert client.get("/api/v1/me", headers=pair(rotated.json())).status_code == 200


def test_rotation_with_grace_keeps_the_old_secret_for_a_while(client, admin, app_context):
    created = create(client, admin)
    rotated = client.post(f"/api/v1/keys/{created['key_id']}/rotate?grace_seconds=3600", headers=admin)
    assert client.get("/api/v1/me", headers=pair(created)).status_code == 200
    assert client.get("/api/v1/me", headers=pair(rotated.json())).status_code == 200

    from app.extensions import db

    db.session.execute(text("UPDATE api_keys SET previous_secret_valid_until = now() - interval '1 second' "
                            "WHERE key_id = :k"), {"k": created["key_id"]})  # the hour has passed
    db.session.commit()
    assert_problem(client.get("/api/v1/me", headers=pair(created)), 401)
    assert client.get("/api/v1/me", headers=pair(rotated.json())).status_code == 200


def test_expired_key_is_refused(client, admin, app_context):
    soon = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    created = create(client, admin, expires_at=soon)
    assert client.get("/api/v1/me", headers=pair(created)).status_code == 200

    from app.extensions import db

    db.session.execute(text("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE key_id = :k"),
                       {"k": created["key_id"]})
    db.session.commit()
    body = assert_problem(client.get("/api/v1/me", headers=pair(created)), 401)
    assert "expired" in body["detail"]
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    assert_problem(client.post("/api/v1/keys", json={"roles": ["reader"], "email": "x@example.org",
                                                     "expires_at": past}, headers=admin), 422)


def test_missing_headers_are_named(client, admin):
    for headers in ({}, {"Authentication-Key": admin["Authentication-Key"]},
                    {"Authentication-Secret": admin["Authentication-Secret"]}):
        body = assert_problem(client.get("/api/v1/me", headers=headers), 401)
        assert "Authentication-Key" in body["detail"] and "Authentication-Secret" in body["detail"]


def test_unknown_key_and_wrong_secret_look_the_same(client, admin):
    unknown = client.get("/api/v1/me", headers={"Authentication-Key": "lsk_aaaaaaaaaaaaaaaaaaaa",
                                                "Authentication-Secret": admin["Authentication-Secret"]})
    wrong = client.get("/api/v1/me", headers={**admin, "Authentication-Secret": "not-the-secret"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]


def test_last_used_is_recorded_in_batches_not_per_request(client, admin, flask_app):
    created = create(client, admin)
    key_url = f"/api/v1/keys/{created['key_id']}"
    assert client.get("/api/v1/me", headers=pair(created)).status_code == 200
    assert client.get(key_url, headers=admin).json()["last_used_at"] is None  # no write on the request
    before = datetime.now(timezone.utc)
    app_state(flask_app).authenticator.flush_last_used()
    used = datetime.fromisoformat(client.get(key_url, headers=admin).json()["last_used_at"])
    assert before - timedelta(seconds=60) < used <= before


def test_create_admin_command_prints_the_pair_once(settings_overrides, client):
    result = subprocess.run([sys.executable, "-m", "app", "create-admin", "--email", "ops@example.org"],
                            env=env_for(settings_overrides), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout.strip().splitlines()[-1])
    assert client.get("/api/v1/me", headers=pair(created)).json()["roles"] == ["admin"]
    assert created["apisecret"] not in result.stderr


def test_bootstrap_admin_from_settings_once(settings_overrides, client):
    secret = "bootstrap-secret-0123456789abcdef"
    env = env_for({**settings_overrides, "bootstrap_admin_email": "root@example.org",
                   "bootstrap_admin_key": "bootstrap-admin", "bootstrap_admin_secret": secret})
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "app", "migrate"], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert secret not in result.stdout + result.stderr
    headers = {"Authentication-Key": "bootstrap-admin", "Authentication-Secret": secret}
    assert client.get("/api/v1/me", headers=headers).json()["roles"] == ["admin"]
    keys = client.get("/api/v1/keys", headers=headers).json()["keys"]
    assert [k["key_id"] for k in keys] == ["bootstrap-admin"]


def test_uploader_keys_are_bound_to_existing_image_sets(client, admin, image_set):
    for body in ({"roles": ["uploader"]}, {"roles": ["reader"], "imageset_ids": [image_set["imageset_id"]]},
                 {"roles": ["uploader"], "imageset_ids": [999999]}):
        response = client.post("/api/v1/keys", json={"email": "u@example.org", **body}, headers=admin)
        assert_problem(response, 422)
        assert response.json()["field"] == "imageset_ids"


def test_behind_a_real_server_revocation_and_scopes_hold(live_server, client, admin, make_campaign, stored_images):
    """Under uvicorn the key is read on the event loop (not the test client's path): same verdicts."""
    campaign = make_campaign(stored_images[:1])
    labeler = {"Authentication-Key": campaign["access_token"]["apikey"],
               "Authentication-Secret": campaign["access_token"]["apisecret"]}
    with httpx.Client(base_url=live_server) as http:
        assert http.get(f"/api/v1/images/{stored_images[0]}/metadata", headers=labeler).status_code == 200
        assert http.get(f"/api/v1/images/{stored_images[1]}/metadata", headers=labeler).status_code == 404
        assert http.get("/api/v1/keys", headers=labeler).status_code == 403
        assert http.get("/api/v1/me", headers={**labeler, "Authentication-Secret": "wrong"}).status_code == 401
        assert http.delete(f"/api/v1/keys/{labeler['Authentication-Key']}", headers=admin).status_code == 200
        assert http.get("/api/v1/me", headers=labeler).status_code == 401


def test_keys_still_work_after_the_database_restarts(live_server, admin, pg_server, client):
    if pg_server is None:
        pytest.skip("TEST_DATABASE_URL points at a server this test may not restart")
    from app.extensions import db

    db.session.close()  # the test's own session: hand its connection back before the restart
    with httpx.Client(base_url=live_server) as http:
        assert http.get("/api/v1/me", headers=admin).status_code == 200  # pooled connections now open
        pg_server.stop()
        pg_server.start()  # same data directory, same port
        assert http.get("/api/v1/me", headers=admin).status_code == 200
        assert http.get("/api/v1/me", headers={**admin, "Authentication-Secret": "wrong"}).status_code == 401
    assert client.get("/api/v1/me", headers=admin).status_code == 200  # the thread-pool path too


def test_first_requests_while_the_database_is_down_do_not_break_later_ones(pg_server, settings_overrides, admin):
    """An API process whose first authentication finds the database down recovers once it is back."""
    if pg_server is None:
        pytest.skip("TEST_DATABASE_URL points at a server this test may not stop")
    import threading

    import uvicorn

    from app.factory import create_app
    from app.embedded.ports import free_port, wait_for_port
    from app.extensions import db
    from app.settings import load

    db.session.close()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(load(**settings_overrides)), host="127.0.0.1", port=port,
                                          log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port("127.0.0.1", port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            pg_server.stop()
            try:
                began = time.monotonic()
                down = http.get("/api/v1/me", headers=admin)
                # Fails fast and says so: 503 problem+json with Retry-After, not a hang and not a 500.
                assert time.monotonic() - began < 8
                assert down.status_code == 503 and down.headers["Retry-After"] == "5"
                assert down.headers["content-type"] == "application/problem+json"
                assert down.json()["title"] == "Database Unavailable"
                began = time.monotonic()
                assert http.get("/api/v1/image_sets", headers=admin).status_code == 503
                assert time.monotonic() - began < 8
            finally:
                pg_server.start()
            assert http.get("/api/v1/me", headers=admin).status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)
