"""Fixtures: a real PostgreSQL (pgserver's binaries) and a real Azurite on free loopback ports, started
once per session, unless TEST_DATABASE_URL / TEST_AZURE_STORAGE_CONNECTION_STRING point elsewhere.

The schema comes from the migrations, applied once per session. Each test starts from empty tables and
sequences at 1: after it, the tables it wrote to are emptied (`empty_what_the_test_wrote`). Not a rollback
per test: API keys are read on the key store's own connections (app.auth.key_store), and worker processes
and concurrent requests must see committed data.

`make test` runs the suite in pytest-xdist worker processes: each is a session of its own, with its own
PostgreSQL and Azurite, so tests that stop or restart them touch only their own worker's servers.
"""
from __future__ import annotations

import graphlib
import os
import signal
import socket
import subprocess
import threading
import uuid

import pytest
from sqlalchemy import text

from app.embedded.azurite import Azurite
from app.embedded.postgres import EmbeddedPostgres
from app.settings import load
from tests.helpers import ROOT, box, directory_postgres_can_reach, env_for, submit
from tests.preloaded import Preloaded

PEPPER = "test-pepper-not-a-secret-0123456789"


@pytest.fixture(scope="session")
def pg_server():
    if os.environ.get("TEST_DATABASE_URL"):
        yield None
        return
    with directory_postgres_can_reach("labelstore-test-pg-") as home:
        server = EmbeddedPostgres(home / "data", fast=True).start()
        yield server
        server.stop()


@pytest.fixture(scope="session")
def database_url(pg_server):
    if os.environ.get("TEST_DATABASE_URL") and os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.exit("TEST_DATABASE_URL is one database that parallel workers would empty under each other: "
                    "run pytest without -n", returncode=4)
    return os.environ.get("TEST_DATABASE_URL") or pg_server.create_database("labelstore_test")


@pytest.fixture
def empty_database(pg_server):
    """A database of its own, with nothing in it: for tests of migrate itself."""
    if pg_server is None:
        pytest.skip("TEST_DATABASE_URL is set: this test needs a server where it may create a database")
    return pg_server.create_database(f"empty_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    if os.environ.get("TEST_AZURE_STORAGE_CONNECTION_STRING"):
        yield None
        return
    server = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def storage_connection_string(azurite):
    return os.environ.get("TEST_AZURE_STORAGE_CONNECTION_STRING") or azurite.connection_string


@pytest.fixture(scope="session")
def settings_overrides(database_url, storage_connection_string):
    """What a test process and its worker subprocesses are configured with."""
    return {
        "db_connection_string": database_url,
        "azure_storage_connection_string": storage_connection_string,
        "azure_storage_imageset_container": f"test-{uuid.uuid4().hex[:12]}",
        "api_key_pepper": PEPPER,
        "worker_heartbeat_seconds": 0.5,
        "worker_poll_seconds": 0.5,  # retries come due without waiting out the default 5 s poll
        "worker_stalled_after_seconds": 6,  # generous: a loaded CI machine can delay heartbeats
        "worker_shutdown_grace_seconds": 1,
        "worker_hard_stop_margin_seconds": 3,
        "log_level": "INFO",
        "cors_allow_origins": "https://labeler.example.org",  # every test runs behind the CORS middleware
    }


@pytest.fixture(scope="session")
def settings(settings_overrides):
    return load(**settings_overrides)


@pytest.fixture(scope="session")
def connexion_app(settings):
    from app.factory import create_app
    from app.migrate import migrate_database

    connexion_app = create_app(settings, validate_responses=True)
    migrate_database(connexion_app.app)
    return connexion_app


@pytest.fixture(scope="session")
def flask_app(connexion_app):
    return connexion_app.app


@pytest.fixture
def app_context(flask_app):
    with flask_app.app_context():
        yield flask_app


@pytest.fixture
def client(connexion_app):
    return connexion_app.test_client()


@pytest.fixture(autouse=True)
def _empty_tables(request):
    yield
    if "connexion_app" not in request.fixturenames:
        return
    from app.extensions import db

    flask_app = request.getfixturevalue("flask_app")
    with flask_app.app_context():
        with db.engine.begin() as conn:
            empty_what_the_test_wrote(conn)


_TABLES: list[str] = []  # children before the tables they reference


def empty_what_the_test_wrote(conn) -> None:
    """Every table back to empty and every sequence back to 1, as TRUNCATE of all tables RESTART IDENTITY would
    leave them, at the cost of the rows the test wrote: the tables it wrote to are found in one query and
    emptied by DELETE, children first (TRUNCATE makes new files for each table and index: ~2 ms apiece)."""
    if not _TABLES:
        _TABLES.extend(_children_first(conn))
    written = conn.execute(text(" UNION ALL ".join(
        f"SELECT '{table}' WHERE EXISTS (SELECT FROM {table})" for table in _TABLES))).scalars().all()
    for table in written:
        conn.execute(text(f"DELETE FROM {table}"))
    conn.execute(text("SELECT setval(format('%I.%I', schemaname, sequencename), 1, false) FROM pg_sequences "
                      "WHERE schemaname = current_schema() AND last_value IS NOT NULL"))


def _children_first(conn) -> list[str]:
    tables = conn.execute(text(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version' "
        "ORDER BY tablename")).scalars().all()
    referenced_by = {table: set() for table in tables}  # a table comes after every table referencing it
    for child, parent in conn.execute(text(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND connamespace = current_schema()::regnamespace")):
        if child != parent:
            referenced_by[parent.strip('"')].add(child.strip('"'))
    return [f'"{table}"' for table in graphlib.TopologicalSorter(referenced_by).static_order()]


# --- keys ------------------------------------------------------------------------------------------

@pytest.fixture
def make_key(app_context):
    """make_key("admin", ...) -> headers carrying a fresh key pair with those roles."""
    from app.extensions import db
    from app.services.keys import create_key

    def make(*roles: str, **options) -> dict:
        if "device" not in options:
            options.setdefault("email", f"{uuid.uuid4().hex[:8]}@example.org")
        key, secret = create_key(roles=list(roles), **options)
        key_id = key.key_id  # read before the commit expires it (reading it after loads the key back)
        db.session.commit()  # the use case only flushes: requests commit at the edge, and so does this fixture
        return {"Authentication-Key": key_id, "Authentication-Secret": secret}

    return make


@pytest.fixture
def admin(make_key):
    return make_key("admin")


@pytest.fixture
def make_image_set(client, admin):
    """make_image_set(title=...) -> the created image set as the API answers it (with dropbox_url)."""

    def make(title: str | None = None, **body) -> dict:
        response = client.post("/api/v1/image_sets", json={"title": title or f"set {uuid.uuid4().hex[:8]}", **body},
                               headers=admin)
        assert response.status_code == 201, response.text
        return response.json()

    return make


@pytest.fixture
def image_set(make_image_set):
    return make_image_set()


# --- processes -------------------------------------------------------------------------------------

class Processes:
    def __init__(self):
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict, **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True, **kwargs)
        return self.add(process)

    def add(self, process):
        self.started.append(process)
        return process

    def stop_all(self):
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def processes():
    started = Processes()
    yield started
    started.stop_all()


@pytest.fixture(scope="session")
def preloaded(settings_overrides):
    """Forks `python -m app` processes from one that has made their imports (tests.preloaded)."""
    server = Preloaded(str(ROOT), env_for(settings_overrides))
    yield server
    server.stop()


@pytest.fixture
def start_worker(processes, preloaded, settings_overrides, connexion_app, tmp_path_factory):
    """start_worker(**setting_overrides) -> a `python -m app worker` process on the test database, forked
    from the preloaded one (a process of its own: signals, kill -9 and its exit status as with Popen)."""

    def start(capture_output: bool = False, **overrides):
        """With capture_output, the worker's stdout and stderr go to the file `process.output` names."""
        env = env_for({**settings_overrides, **overrides})
        if not capture_output:
            return processes.add(preloaded.start(["worker"], env=env))
        output = tmp_path_factory.mktemp("worker") / "output.log"
        with output.open("w") as sink:
            process = processes.add(preloaded.start(["worker"], env=env, stdout=sink.fileno()))
        process.output = output
        return process

    return start


# --- shared data and servers -------------------------------------------------------------------------

@pytest.fixture
def stored_images(app_context, image_set):
    """Ten catalogued 100x80 images, written straight to the catalogue."""
    from app.extensions import db
    from app.models import Image

    rows = [Image(imageset_id=image_set["imageset_id"], blobstorage_path=f"imagesets/c/{i}.jpg", md5=f"{i:032x}",
                  filetype="jpeg", filesize=100, width=100, height=80) for i in range(10)]
    db.session.add_all(rows)
    db.session.flush()
    ids = [r.id for r in rows]  # read before the commit expires them (after it, each row is loaded back)
    db.session.commit()
    return ids


@pytest.fixture
def make_campaign(client, admin):
    def make(image_ids=(), status="active", **body) -> dict:
        body.setdefault("title", f"campaign {uuid.uuid4().hex[:8]}")
        body.setdefault("labeler_email", "labeler@example.org")
        created = client.post("/api/v1/campaigns", json=body, headers=admin)
        assert created.status_code == 201, created.text
        campaign = created.json()
        if image_ids:
            added = client.post(f"/api/v1/campaigns/{campaign['campaign_id']}/images",
                                json=[{"id": i} for i in image_ids], headers=admin)
            assert added.json() == {"added": len(image_ids)}
        if status == "active":
            moved = client.put(f"/api/v1/campaigns/{campaign['campaign_id']}", json={"new_status": "active"},
                               headers=admin)
            assert moved.status_code == 200, moved.text
        return campaign

    return make


@pytest.fixture
def labelled(client, admin, make_campaign, stored_images):
    """A campaign over three 100x80 images: two labelled (one object and two), one with none."""
    campaign = make_campaign(stored_images[:3], title="Beach/Litter 2026")
    submit(client, admin, campaign["campaign_id"], [
        {"image_id": stored_images[0], "objects": [{"bounding_box": box(10, 60, 8, 40), "label": "bottle"}]},
        {"image_id": stored_images[1], "objects": [{"bounding_box": box(0, 100, 0, 80), "label": "net"},
                                                   {"bounding_box": box(25, 50, 20, 60), "label": "bottle"}]},
        {"image_id": stored_images[2], "objects": []}])
    return campaign


@pytest.fixture
def live_server(connexion_app):
    """The test app served by uvicorn on a free loopback port, for browsers and concurrent clients."""
    import uvicorn

    from app.embedded.ports import free_port, wait_for_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(connexion_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port("127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers: a hung dependency."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


