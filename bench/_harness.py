"""What the API benches share: PostgreSQL and Azurite of their own, a migrated database, an admin key pair
and one uvicorn worker process serving the app, as in production. Not a bench itself (run_all skips `_*`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.embedded.azurite import Azurite  # noqa: E402
from app.embedded.ports import free_port, wait_for_port  # noqa: E402
from app.embedded.postgres import EmbeddedPostgres  # noqa: E402


@dataclass
class Served:
    port: int
    admin: dict  # the two key headers
    server: subprocess.Popen
    env: dict  # the API's environment (database, storage, pepper): a worker started with it shares them
    database_url: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def served_api(*uvicorn_args: str, worker: bool = False) -> Iterator[Served]:
    """The app on a free loopback port (with `worker`, and a `python -m app worker` to finish image sets);
    everything it started is stopped on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", fast=True).start()
        azurite = Azurite(Path(tmp) / "azurite").start()
        server = jobs = None
        try:
            port = free_port()
            database_url = pg.create_database("bench")
            env = {**os.environ, "DB_CONNECTION_STRING": database_url,
                   "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
                   "API_KEY_PEPPER": "bench-pepper-0123456789", "LOG_LEVEL": "WARNING"}
            subprocess.run([sys.executable, "-m", "app", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
            created = subprocess.run([sys.executable, "-m", "app", "create-admin", "--email", "bench@example.org"],
                                     env=env, cwd=ROOT, check=True, capture_output=True, text=True)
            pair = json.loads(created.stdout.strip().splitlines()[-1])
            admin = {"Authentication-Key": pair["apikey"], "Authentication-Secret": pair["apisecret"]}
            server = subprocess.Popen([sys.executable, "-m", "uvicorn", "main:app", "--port", str(port),
                                       "--no-access-log", *uvicorn_args], env=env, cwd=ROOT)
            wait_for_port("127.0.0.1", port)
            if worker:
                jobs = subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env, cwd=ROOT)
            yield Served(port, admin, server, env, database_url)
        finally:
            if jobs:
                jobs.terminate()
                jobs.wait()
            if server:
                server.terminate()
                server.wait()
            azurite.stop()
            pg.stop()
