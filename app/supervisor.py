"""`make run` (`python -m app run`): a development stack in one command.

PostgreSQL (pgserver's binaries) and Azurite start under DATA_DIR unless configured, the schema is migrated,
the first admin's key pair is written to DATA_DIR/admin-key.json (mode 0600), then a worker and the API run
as children. A child that dies is started again after a backoff (1 s, doubling up to 30 s; back to 1 s once it
has stayed up a minute), each exit logged with its status; only Ctrl-C (or SIGTERM) stops the stack: the
children, then the embedded services.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.embedded.azurite import Azurite
from app.embedded.postgres import EmbeddedPostgres
from app.flask_app import create_flask_app
from app.migrate import migrate_database
from app.services.keys import admin_exists, create_key
from app.settings import Settings, load_or_exit
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

FIRST_BACKOFF, MAX_BACKOFF = 1.0, 30.0  # seconds before a dead child is started again
STABLE_AFTER = 60.0  # a child that stayed up this long starts again at the first backoff


@dataclass
class Child:
    """One supervised process: how to start it, and when to start it again after it died."""

    name: str
    argv: list[str]
    env: dict
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = field(default=None)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env)
        self.started_at, self.restart_at = time.monotonic(), None

    def check(self, now: float) -> None:
        """Start the child again when it has died and its backoff has passed."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                logger.info("starting %s again", self.name, extra={"child": self.name})
                self.start()
            return
        status = self.process.poll()
        if status is None:
            return
        if now - self.started_at >= STABLE_AFTER:
            self.backoff = FIRST_BACKOFF
        logger.warning("%s exited (%s); starting it again in %.0f s", self.name, exit_status(status), self.backoff,
                       extra={"child": self.name, "exit_status": status, "restart_in_seconds": self.backoff})
        self.restart_at = now + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)


def exit_status(returncode: int) -> str:
    """`exit status 1`, or `killed by SIGKILL` for a negative Popen return code."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _secret_file(path: Path) -> str:
    """A random value kept in a 0600 file, made on first use."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(value)
    return value


def _bootstrap_embedded_admin(flask_app, data_dir: Path) -> None:
    target = data_dir / "admin-key.json"
    with flask_app.app_context(), unit_of_work():
        if admin_exists():
            if target.exists():
                print(f"  admin key pair:  {target}")
            return
        key, secret = create_key(roles=["admin"], email="admin@localhost", description="first admin (make run)")
        pair = {"apikey": key.key_id, "apisecret": secret, "email": "admin@localhost"}
    target.unlink(missing_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(pair, f, indent=2)
    print(f"  created the first admin; its key pair is in {target} (mode 0600)")


def run(settings: Settings) -> int:
    """Start what is not configured (PostgreSQL, Azurite), migrate, then the worker and the API, starting either
    again when it dies; return when Ctrl-C (or SIGTERM) asks."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    services: list = []
    children: list[Child] = []
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if settings.embedded_database:
            pg = EmbeddedPostgres(data_dir / "postgres").start()
            services.append(pg)
            env["DB_CONNECTION_STRING"] = pg.create_database("labelstore")
        if settings.embedded_storage:
            azurite = Azurite(data_dir / "azurite").start()
            services.append(azurite)
            env["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
        if not settings.api_key_pepper:
            env["API_KEY_PEPPER"] = _secret_file(data_dir / "api-key-pepper")
        os.environ.update(env)
        resolved = load_or_exit()

        flask_app = create_flask_app(resolved)
        migrate_database(flask_app)
        print("Label Store is starting:")
        if not resolved.bootstrap_admin_email:
            _bootstrap_embedded_admin(flask_app, data_dir)
        children.append(Child("worker", [sys.executable, "-m", "app", "worker"], env))
        children.append(Child("api", [
            sys.executable, "-m", "uvicorn", "main:app", "--host", resolved.host, "--port", str(resolved.port),
            "--http", "app.limits:HeadLimitedHttpTools", "--no-access-log", "--log-level", "warning"], env))
        for child in children:
            child.start()
        print(f"  Swagger UI:      http://{resolved.host}:{resolved.port}/api/v1/ui")
        print(f"  status:          http://{resolved.host}:{resolved.port}/info/status")
        print("  Ctrl-C stops everything.", flush=True)
        while not stopping:
            for child in children:
                child.check(time.monotonic())
            time.sleep(0.3)
        return 0
    finally:
        running = [c.process for c in children if c.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for service in reversed(services):
            service.stop()
        print("Label Store stopped.", flush=True)
