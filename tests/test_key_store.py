"""The key store: `last_used_at` written off the request path, by the store itself, under both ways of serving
(lifespan on: the serving loop reads keys; lifespan off: the store's own loop thread does)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import httpx
import psycopg
import pytest

from app.auth.connexion_glue import SECURITY_MAP, secret_present


@contextmanager
def served(settings_overrides, lifespan: str, flush_seconds: float):
    """A fresh app (its own key store) under uvicorn on a free port."""
    import uvicorn

    from app.embedded.ports import free_port, wait_for_port
    from app.factory import create_app
    from app.settings import load
    from app.state import app_state

    app = create_app(load(**settings_overrides))
    keys = app_state(app.app).authenticator.keys
    keys.flush_seconds = flush_seconds
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port("127.0.0.1", port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http, keys
    finally:
        server.should_exit = True
        thread.join(10)


def used_since(database_url: str, key_id: str, since: datetime) -> bool:
    """Whether the key's last_used_at is at or after `since` (ids restart with each test's empty tables, so
    another test's app may still write a time it holds for this id: an older one)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        used = conn.execute("SELECT last_used_at FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()[0]
    return used is not None and used >= since


def flush_waits_for_a_lock(database_url: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE %s", ("%UPDATE api_keys SET last_used_at%",)).fetchone()[0]


def poll(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


@pytest.mark.parametrize("lifespan", ["on", "off"])
def test_a_blocked_last_used_write_holds_no_request_and_lands_without_one(
        lifespan, settings_overrides, database_url, make_key):
    key, since = make_key("reader"), datetime.now(timezone.utc)
    with served(settings_overrides, lifespan, flush_seconds=0.2) as (http, _keys), \
            psycopg.connect(database_url) as locker:
        locker.execute("SELECT 1 FROM api_keys WHERE key_id = %s FOR UPDATE", (key["Authentication-Key"],))
        assert http.get("/api/v1/me", headers=key).status_code == 200
        poll(lambda: flush_waits_for_a_lock(database_url))
        for _ in range(5):
            began = time.monotonic()
            assert http.get("/api/v1/me", headers=key).status_code == 200
            assert time.monotonic() - began < 1
        assert not used_since(database_url, key["Authentication-Key"], since)
        locker.rollback()  # the flush goes through now, with no request to carry it
        poll(lambda: used_since(database_url, key["Authentication-Key"], since))


def test_a_served_app_reads_keys_on_its_loop_and_writes_last_used_at_shutdown(
        settings_overrides, database_url, make_key):
    key, since = make_key("reader"), datetime.now(timezone.utc)
    with served(settings_overrides, "on", flush_seconds=3600) as (http, keys):
        assert http.get("/api/v1/me", headers=key).status_code == 200
        assert http.get("/api/v1/me", headers={**key, "Authentication-Secret": "wrong"}).status_code == 401
        assert keys._own_loop is None  # no thread hop: the serving loop read the key itself
        assert not used_since(database_url, key["Authentication-Key"], since)
    assert used_since(database_url, key["Authentication-Key"], since)  # written as the server stopped


def test_connexion_builds_our_key_handler_from_the_security_map():
    """What we rely on in Connexion (pinned in requirements.txt): `security_map` classes are instantiated and
    their `get_fn(scheme, required_scopes)` gives the verify function; an upgrade that changes this fails here."""
    import asyncio

    from connexion.security import NO_VALUE, SecurityHandlerFactory
    from starlette.requests import Request

    scheme = {"type": "apiKey", "in": "header", "name": "Authentication-Secret",
              "x-apikeyInfoFunc": f"{secret_present.__module__}.secret_present"}
    verify = SecurityHandlerFactory(SECURITY_MAP).parse_security_scheme(scheme, [])
    assert asyncio.run(verify(Request({"type": "http", "headers": []}))) is NO_VALUE
    assert asyncio.run(verify(Request({"type": "http", "headers": [(b"authentication-secret", b"s")]}))) == {}
