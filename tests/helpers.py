"""What tests share besides fixtures: waiting, child-process environments, problem+json checks, and the
small client steps of LabelAPI's flow (upload, finish, label, export, jobs). Test modules import from here,
never from one another or from conftest (tests/test_suite_layout.py holds them to it)."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
# Worker settings for a test that waits on stalled-job recovery: a dead worker is noticed after 3 s, not the
# suite's 6 s (still six heartbeats of slack), and pruned after 12 s, not 24 s. Grace + margin stay under it.
QUICK_RECOVERY = {"worker_heartbeat_seconds": 0.5, "worker_stalled_after_seconds": 3,
                  "worker_shutdown_grace_seconds": 0.5, "worker_hard_stop_margin_seconds": 1.5}


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@contextmanager
def directory_postgres_can_reach(prefix: str):
    """A temporary directory outside pytest's own: as root, the embedded PostgreSQL runs as another user,
    and every pytest session that starts on the machine makes /tmp/pytest-of-<user> private again."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def env_for(overrides: dict) -> dict:
    """The environment of a child process (`python -m app ...`) configured with these settings only."""
    # AZUREML_*: azure-ai-ml records its current cloud there, which a child must not inherit.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DB_", "AZURE_", "AZUREML_", "BOOTSTRAP_", "API_KEY"))}
    env.update({k.upper(): str(v) for k, v in overrides.items()})
    env["PYTHONPATH"] = str(ROOT)
    return env


def assert_problem(response, status: int) -> dict:
    """The response is RFC 7807 problem+json with this status (and LabelAPI's `error` beside `detail`)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail", "error"} <= body.keys()
    assert body["status"] == status
    assert body["error"] == body["detail"]
    return body


def pair(token: dict) -> dict:
    """Request headers for a key pair as the API hands it out ({"apikey", "apisecret"})."""
    return {"Authentication-Key": token["apikey"], "Authentication-Secret": token["apisecret"]}


# --- image sets: uploading as azcopy or Storage Explorer would, then finishing --------------------------

def blob_url(container_url: str, name: str) -> str:
    base, _, sas = container_url.partition("?")
    return f"{base}/{name}?{sas}"


# One client for every PUT (thread-safe, its connections reused): httpx.put() builds a client, and with it an
# SSL context (~20 ms), for each call.
_blob_http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))


def put(container_url: str, name: str, data: bytes) -> httpx.Response:
    """A plain PUT of one blob with the SAS, as azcopy or Storage Explorer sends it."""
    return _blob_http.put(blob_url(container_url, name), content=data,
                          headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06"})


def upload_all(container_url: str, files: dict[str, bytes]) -> None:
    with ThreadPoolExecutor(16) as pool:
        for name, response in zip(files, pool.map(lambda item: put(container_url, *item), files.items())):
            assert response.status_code == 201, f"{name}: {response.status_code} {response.text}"


def finish(client, admin, imageset_id, timeout=60) -> dict:
    """Ask for finishing (202) and wait for a worker to end it; the set as the API then shows it."""
    response = client.put(f"/api/v1/image_sets/{imageset_id}", json={"new_status": "finished"}, headers=admin)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "finishing"
    return wait_until(lambda: (lambda s: s if s["status"] in ("finished", "failed") else None)(
        client.get(f"/api/v1/image_sets/{imageset_id}", headers=admin).json()), timeout=timeout,
        message="finishing to end")


def report(client, admin, imageset_id) -> dict:
    files = client.get(f"/api/v1/image_sets/{imageset_id}/report?per_page=1000", headers=admin).json()["files"]
    return {f["name"]: f for f in files}


# --- campaigns and datasets -------------------------------------------------------------------------

def box(xmin=1, xmax=10, ymin=2, ymax=20):
    return {"xmin": xmin, "xmax": xmax, "ymin": ymin, "ymax": ymax}


def submit(client, headers, campaign_id, items):
    return client.put(f"/api/v1/campaigns/{campaign_id}/objects", json=items, headers=headers)


def wait_for_version(client, admin, campaign_id, version, statuses=("exported", "registered", "failed")) -> dict:
    url = f"/api/v1/campaigns/{campaign_id}/datasets/{version}"
    return wait_until(lambda: (lambda d: d if d["status"] in statuses else None)(
        client.get(url, headers=admin).json()), timeout=60, message=f"dataset version {version}")


# --- jobs ---------------------------------------------------------------------------------------------

def job_row(flask_app, job_id):
    """The job's status and attempts as procrastinate stores them (None when it was never committed)."""
    from app.extensions import db

    with flask_app.app_context():
        with db.engine.connect() as conn:
            return conn.execute(text("SELECT status, attempts FROM procrastinate_jobs WHERE id = :id"),
                                {"id": job_id}).mappings().first()


def defer_check_storage(flask_app, commit=True) -> int:
    from app import jobs
    from app.extensions import db

    with flask_app.app_context():
        job_id = jobs.defer("check_storage")
        if commit:
            db.session.commit()
        else:
            db.session.rollback()
    return job_id


# --- webhooks: a loopback endpoint --------------------------------------------------------------------

class HookReceiver:
    """A loopback HTTP endpoint for webhook deliveries, on a free port, a thread per request. `answer(n)` says
    what the n-th POST (from 1) gets: a status, or (status, seconds to wait first); every request is kept in
    `received` as (monotonic time, headers, body) before it is answered.

        with HookReceiver(lambda n: 500 if n <= 2 else 200) as hook: ... hook.url ... hook.received
    """

    def __init__(self, answer=lambda n: 200):
        self.answer, self.received, self.released = answer, [], threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((time.monotonic(), self.headers, body))  # names case-insensitive
                status = receiver.answer(len(receiver.received))
                status, wait = status if isinstance(status, tuple) else (status, 0)
                if wait and receiver.released.wait(wait):
                    return  # the test ended: no answer
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender gave up waiting
                    pass

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "HookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.received]
