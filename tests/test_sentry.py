"""Error reporting: with SENTRY_DSN set, an unexpected error reaches Sentry tagged with the request id, the
server name and the environment, and the event carries no API secret, SAS signature or account key.
Sentry is a loopback HTTP server that keeps every envelope the SDK sends."""
import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk
from pydantic import SecretStr

SAS_URL = "https://acct.blob.core.windows.net/c/b.jpg?sv=2024-08-04&sp=r&sig=LeakedSig%2Babc"
ACCOUNT_KEY = "LeakedAccountKey0123456789=="


@pytest.fixture
def sentry_server():
    envelopes: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            encoding = self.headers.get("Content-Encoding")
            envelopes.append(gzip.decompress(body) if encoding == "gzip" else
                             zlib.decompress(body) if encoding == "deflate" else body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], envelopes
    server.shutdown()
    server.server_close()


@pytest.fixture
def reporting(settings, sentry_server):
    """Sentry on for this test (as create_app starts it when SENTRY_DSN is set), off again afterwards."""
    from app import error_reports

    port, envelopes = sentry_server
    configured = settings.model_copy(update={"sentry_dsn": SecretStr(f"http://public@127.0.0.1:{port}/1"),
                                             "sentry_environment": "staging", "server_name": "api-7"})
    assert error_reports.init(configured, release="test")
    yield envelopes
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def events(envelopes: list[bytes]) -> list[dict]:
    found = []
    for envelope in envelopes:
        lines = envelope.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2]):
            if json.loads(header).get("type") == "event":
                found.append(json.loads(payload))
    return found


def test_an_unexpected_error_is_reported_with_its_request_id_and_no_secret(client, admin, monkeypatch, reporting):
    from app.services import keys

    def explode(**_):
        raise RuntimeError(f"storage said: {SAS_URL} with AccountKey={ACCOUNT_KEY}; "
                           f"Authentication-Secret: {admin['Authentication-Secret']}")

    monkeypatch.setattr(keys, "list_keys", explode)
    response = client.get("/api/v1/keys", headers={**admin, "X-Request-ID": "req-sentry-1"})
    assert response.status_code == 500
    client.get("/info/version")  # an ordinary request is not reported
    sentry_sdk.flush(timeout=5)

    reported = events(reporting)
    assert len(reported) == 1
    event = reported[0]
    assert event["tags"]["request_id"] == "req-sentry-1"
    assert event["environment"] == "staging" and event["server_name"] == "api-7"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert "sig=REDACTED" in event["exception"]["values"][-1]["value"]

    raw = b"".join(reporting).decode()
    for secret in ("LeakedSig", ACCOUNT_KEY, admin["Authentication-Secret"]):
        assert secret not in raw


def test_without_a_dsn_nothing_is_started(settings):
    from app import error_reports

    assert settings.sentry_dsn is None
    assert not error_reports.init(settings, release="test")
    assert not sentry_sdk.get_client().is_active()


def test_a_malformed_dsn_is_refused_naming_the_setting():
    from app.settings import SettingsError, load

    with pytest.raises(SettingsError) as refused:
        load(sentry_dsn="sentry.example.org/1")
    assert refused.value.variable == "SENTRY_DSN"
