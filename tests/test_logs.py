"""Logs: one line per event in both formats (text, and JSON with the traceback as a field), no terminal
colour codes, secrets masked, pool warning storms held back, and each failed job attempt logged once."""
import base64
import io
import json
import logging
import re
import subprocess
import sys
from datetime import datetime

import httpx
import pytest
from sqlalchemy import text

from app import logs
from app.embedded.ports import free_port, wait_for_port
from tests.helpers import defer_check_storage, env_for, wait_until

SAS_URL = "https://acct.blob.core.windows.net/c/b.jpg?sv=2024-08-04&sp=r&sig=LeakedSig%2Babc"
CONNECTION = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=LeakedKey0123==;EndpointSuffix=x"


@pytest.fixture
def our_handler():
    """The handler app.logs installed, writing to a buffer for the test (then back to stdout)."""
    if not any(getattr(h, "_label_store", False) for h in logging.getLogger().handlers):
        logs.configure()  # this worker has built no app yet (xdist hands out tests in any order)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_label_store", False))
    stream, formatter = handler.setStream(io.StringIO()), handler.formatter
    yield handler
    handler.setStream(stream)
    handler.setFormatter(formatter)


def fail_unexpectedly(monkeypatch):
    from app.services import keys

    def explode(**_):
        raise RuntimeError(f"storage said:\n  {SAS_URL}\n  while using {CONNECTION}")

    monkeypatch.setattr(keys, "list_keys", explode)


def test_json_format_is_one_object_per_line_with_the_traceback_as_a_field(client, admin, monkeypatch, our_handler):
    our_handler.setFormatter(logs.JsonFormatter())
    fail_unexpectedly(monkeypatch)
    assert client.get("/api/v1/keys", headers={**admin, "X-Request-ID": "req-json-1"}).status_code == 500
    client.get("/info/version")

    lines = our_handler.stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    error = next(e for e in entries if e["level"] == "ERROR")
    assert error["request_id"] == "req-json-1" and error["logger"] == "app.api.problems"
    assert error["exception"].startswith("Traceback") and "RuntimeError: storage said:" in error["exception"]
    datetime.fromisoformat(error["time"])
    access = [e for e in entries if e["logger"] == "app.access"]
    assert {e["request_id"] for e in access} >= {"req-json-1"}
    assert "LeakedSig" not in "\n".join(lines) and "LeakedKey" not in "\n".join(lines)
    assert admin["Authentication-Secret"] not in "\n".join(lines)


def test_text_format_folds_a_traceback_into_its_line(client, admin, monkeypatch, our_handler):
    fail_unexpectedly(monkeypatch)
    assert client.get("/api/v1/keys", headers={**admin, "X-Request-ID": "req-text-1"}).status_code == 500

    lines = our_handler.stream.getvalue().splitlines()
    error = [line for line in lines if " ERROR " in line]
    assert len(error) == 1 and "[req-text-1]" in error[0]
    assert "\\nTraceback (most recent call last):\\n" in error[0] and "RuntimeError: storage said:" in error[0]
    assert all(line[:4].isdigit() for line in lines), "every line starts with its time: no continuation lines"
    assert "LeakedSig" not in error[0] and "LeakedKey" not in error[0] and "sig=REDACTED" in error[0]


def test_uvicorn_lines_carry_no_colour_codes(settings_overrides, processes, tmp_path, connexion_app):
    # What `make run` starts; uvicorn adds an ANSI-coloured copy of its messages to each record.
    port = free_port()
    output = tmp_path / "uvicorn.log"
    with output.open("w") as sink:
        server = processes.start([sys.executable, "-m", "uvicorn", "main:app", "--port", str(port),
                                  "--log-level", "info"], env=env_for(settings_overrides), stdout=sink,
                                 stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", port)
    httpx.get(f"http://127.0.0.1:{port}/info/version")
    server.terminate()
    server.wait(20)
    logged = output.read_text()
    assert "Started server process" in logged and "GET /info/version 200" in logged
    assert "\x1b" not in logged


def test_repeated_pool_warnings_are_held_back():
    clock = [0.0]
    held = logs.RepeatFilter(("psycopg",), interval=30, clock=lambda: clock[0])

    def warn(name="psycopg.pool", msg="error connecting in %r: %s"):
        record = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, ("pool-1", "refused"), None)
        return held.filter(record), record

    shown = [warn()[0] for _ in range(66)]  # a database outage
    assert shown.count(True) == 1
    assert warn(msg="another warning")[0] and warn(name="app.cli")[0]
    clock[0] = 31
    passed, record = warn()
    assert passed and record.repeated_since_last == 65


def job_state(flask_app, job_id):
    from app.extensions import db

    with flask_app.app_context(), db.engine.connect() as conn:
        return conn.execute(text("SELECT status, attempts, scheduled_at FROM procrastinate_jobs WHERE id = :id"),
                            {"id": job_id}).mappings().first()


def test_each_failed_job_attempt_is_logged_once_with_its_retry_time(flask_app, start_worker, storage_connection_string):
    job_id = defer_check_storage(flask_app)
    # The storage account's key was rotated under the worker: every attempt of the job is refused at once.
    wrong_key = base64.b64encode(b"rotated-away-account-key-0123456789abcdef").decode()
    refused = re.sub(r"AccountKey=[^;]+", f"AccountKey={wrong_key}", storage_connection_string)
    worker = start_worker(capture_output=True, log_format="json", azure_storage_connection_string=refused)

    def entries():
        return [json.loads(line) for line in worker.output.read_text().splitlines() if line.startswith("{")]

    def failures():
        return [e for e in entries() if e.get("job_id") == job_id]

    wait_until(lambda: len(failures()) >= 2, timeout=90, message="two failed attempts to be logged")
    first, second = failures()[:2]
    assert [first["attempt"], second["attempt"]] == [1, 2]
    for entry in (first, second):
        assert entry["level"] == "WARNING" and entry["message"] == "job attempt failed, will retry"
        assert entry["task"] == "check_storage" and entry["exception"].startswith("Traceback") and entry["error"]
    assert datetime.fromisoformat(second["retry_at"]) > datetime.fromisoformat(first["retry_at"])

    # The retry time logged is the one procrastinate stored for the next attempt.
    def stored_and_logged():
        state = job_state(flask_app, job_id)
        logged = [e for e in failures() if e["attempt"] == state["attempts"]]
        return state["status"] == "todo" and logged and (state["scheduled_at"], logged[0])

    scheduled, logged = wait_until(stored_and_logged, timeout=30, message="a retry to be scheduled")
    assert abs((datetime.fromisoformat(logged["retry_at"]) - scheduled).total_seconds()) <= 1.5
    assert len([e for e in failures() if e["attempt"] == logged["attempt"]]) == 1  # once per attempt
    # and nothing else of procrastinate's chatter (each job's start and end) is logged at INFO
    assert not [e for e in entries() if e["logger"].startswith("procrastinate") and e["level"] == "INFO"]
    assert wrong_key not in worker.output.read_text()


FORGED = "2026-01-01 00:00:00,000 INFO app.keys [-] api key created"


@pytest.mark.parametrize("formatter", [logs.TextFormatter, logs.JsonFormatter])
def test_what_a_request_sends_cannot_forge_a_log_line(client, our_handler, formatter):
    our_handler.setFormatter(formatter())
    # Unauthenticated: a newline, a NUL, and what splitlines and log viewers also take for line breaks.
    path = f"/api/v1/keys%0A{FORGED.replace(' ', '%20')}%00%0D%C2%85%E2%80%A8%1B[31m"
    client.get(path)
    logger = logging.getLogger("app.test")
    logger.warning("title %s", "a\nb\x00c\x85d\u2028e\x1b[0m", extra={"name_sent": f"x\n{FORGED}\x00"})

    written = our_handler.stream.getvalue()
    lines = written.splitlines()
    assert len(lines) == written.count("\n") and all(not line.startswith(FORGED[:19]) for line in lines)
    assert not any(c in written for c in "\x00\x1b\r\x85\u2028")
    access = next(line for line in lines if "app.access" in line)
    assert "/api/v1/keys%0A2026-01-01%2000:00:00,000" in access and "%00%0D%C2%85%E2%80%A8%1B" in access
    if formatter is logs.JsonFormatter:  # escaped as JSON: the values read back exactly
        entry = json.loads(lines[-1])
        assert entry["message"] == "title a\nb\x00c\x85d\u2028e\x1b[0m" and entry["name_sent"] == f"x\n{FORGED}\x00"
    else:
        assert lines[-1].endswith("title a\\nb\\x00c\\x85d\\u2028e\\x1b[0m name_sent='x\\n" + FORGED + "\\x00'")


def test_a_database_url_is_logged_without_its_password(our_handler):
    logging.getLogger("app.test").warning("connecting to %s", "postgresql://postgres:pg-Secret_1@127.0.0.1:5432/x")
    written = our_handler.stream.getvalue()
    assert "pg-Secret_1" not in written and "postgresql://postgres:REDACTED@127.0.0.1:5432/x" in written
