"""`make run` (`python -m app run`): a development stack in one command.

PostgreSQL (pgserver's binaries) and Azurite start under DATA_DIR unless configured, the schema is migrated,
the first admin's key pair is written to DATA_DIR/admin-key.json (mode 0600), then a worker and the API run
as children. Ctrl-C stops them all, then the embedded services.
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
from pathlib import Path

from app.embedded.azurite import Azurite
from app.embedded.postgres import EmbeddedPostgres
from app.factory import create_app
from app.migrate import migrate_database
from app.services.keys import admin_exists, create_key
from app.settings import Settings, load_or_exit
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)


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
    """Start what is not configured (PostgreSQL, Azurite), migrate, then the worker and the API; return when
    Ctrl-C (or SIGTERM) asks, or a child dies."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    services: list = []
    children: list[subprocess.Popen] = []
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

        connexion_app = create_app(resolved)
        migrate_database(connexion_app)
        print("Label Store is starting:")
        if not resolved.bootstrap_admin_email:
            _bootstrap_embedded_admin(connexion_app.app, data_dir)
        children.append(subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env))
        children.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "main:app", "--host", resolved.host, "--port", str(resolved.port),
             "--no-access-log", "--log-level", "warning"], env=env))
        print(f"  Swagger UI:      http://{resolved.host}:{resolved.port}/api/v1/ui")
        print(f"  status:          http://{resolved.host}:{resolved.port}/info/status")
        print("  Ctrl-C stops everything.", flush=True)
        while not stopping:
            dead = [c for c in children if c.poll() is not None]
            if dead:
                logger.error("a child process exited; stopping", extra={"args": dead[0].args[2:4]})
                return 1
            time.sleep(0.3)
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for service in reversed(services):
            service.stop()
        print("Label Store stopped.", flush=True)
