"""/info/status and /info/version: 200 only when every required dependency answers, fast either way."""
import time

import pytest

from app.embedded.azurite import Azurite, connection_string
from app.settings import load
from app.state import app_state
from tests.helpers import wait_until


def status(client):
    started = time.monotonic()
    response = client.get("/info/status")
    return response, time.monotonic() - started


def test_green_with_a_worker_running(client, start_worker):
    start_worker()
    wait_until(lambda: client.get("/info/status").status_code == 200, timeout=30, message="status 200")
    response, elapsed = status(client)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["database"]["message"] == "reachable, migrations at head"
    assert "not configured" in body["checks"]["azure_ml"]["message"]
    assert body["checks"]["azure_ml"]["required"] is False


def test_red_without_a_worker(client):
    response, _ = status(client)
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert not checks["job_queue"]["ok"] and "worker" in checks["job_queue"]["message"]
    assert checks["database"]["ok"] and checks["blob_storage"]["ok"]


@pytest.fixture
def app_with_storage(settings_overrides, connexion_app):
    """Build a second app on the same database whose blob storage is given by the test."""
    from app.factory import create_app

    def build(storage_connection_string: str, create_container: bool = True):
        settings = load(**{**settings_overrides, "azure_storage_connection_string": storage_connection_string})
        connexion_app = create_app(settings, validate_responses=True)
        if create_container:
            app_state(connexion_app.app).storage.ensure_container()
        return connexion_app.test_client()

    return build


def test_red_503_within_5s_when_azurite_is_stopped(tmp_path, app_with_storage):
    azurite = Azurite(tmp_path / "azurite").start()
    client = app_with_storage(azurite.connection_string)
    assert client.get("/info/status").json()["checks"]["blob_storage"]["ok"]
    azurite.stop()
    response, elapsed = status(client)
    assert response.status_code == 503
    assert elapsed < 5
    check = response.json()["checks"]["blob_storage"]
    assert not check["ok"] and "unreachable" in check["message"]
    assert "AccountKey" not in response.text and "sig=" not in response.text


def test_answers_within_5s_when_storage_hangs(silent_server, app_with_storage):
    client = app_with_storage(connection_string("127.0.0.1", silent_server), create_container=False)
    response, elapsed = status(client)
    assert response.status_code == 503
    assert elapsed < 5
    assert "no answer within" in response.json()["checks"]["blob_storage"]["message"]


def test_a_hung_probe_is_never_started_twice(settings_overrides, connexion_app, monkeypatch):
    """Asked again and again while a dependency hangs past every deadline, status keeps answering on time,
    the healthy checks stay healthy, and the hung probe holds one thread, not one per request."""
    import threading

    from app.factory import create_app
    from app.services import health

    app = create_app(load(**{**settings_overrides, "status_check_timeout_seconds": 0.3})).app
    release, started = threading.Event(), []
    health.status(app)  # a running service has asked before: its connection pool is open

    def hung(_app):
        started.append(1)
        release.wait(30)
        return "late"

    monkeypatch.setitem(health.CHECKS, "hung_dependency", (hung, lambda s: True))
    try:
        for _ in range(30):
            began = time.monotonic()
            healthy, checks = health.status(app)
            assert time.monotonic() - began < 1
            assert not healthy and checks["hung_dependency"].message == "no answer within 0.3s"
            assert checks["database"].ok, checks["database"].message
        assert len(started) == 1
    finally:
        release.set()


def test_version(client):
    body = client.get("/info/version").json()
    assert body["version"]
    assert body["commit"] is None or len(body["commit"]) == 40


def test_metrics_count_requests_by_operation(client):
    client.get("/info/version")
    text = client.get("/metrics").text
    assert 'labelstore_http_requests_total{method="GET",operation="app.api.info.version",status="200"}' in text
