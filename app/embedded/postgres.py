"""An embedded PostgreSQL server from the pgserver package's binaries, listening on a loopback port.

pgserver's own launcher listens only on a Unix socket and stops the server at interpreter exit of
whichever process touches it last; `make run` and the tests need a TCP port on 127.0.0.1 and an
explicit stop, so we drive its initdb/pg_ctl directly.
"""
from __future__ import annotations

import logging
import os
import pwd
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from app.embedded.ports import free_port

logger = logging.getLogger(__name__)

_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root


def _bin(name: str) -> str:
    with warnings.catch_warnings():  # platformdirs complains when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def _run_as() -> dict:
    """subprocess kwargs to run a PostgreSQL binary as a non-root user when we are root."""
    if os.geteuid() != 0:
        return {}
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(_SYSTEM_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    return {"user": _SYSTEM_USER}


@dataclass
class EmbeddedPostgres:
    datadir: Path
    host: str = "127.0.0.1"
    port: int | None = None
    fast: bool = False  # tests: no fsync

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _running_port(self) -> int | None:
        """The port of a server already running on this datadir (a previous run's), if any."""
        pidfile = self.datadir / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        try:
            os.kill(int(lines[0]), 0)
        except (ProcessLookupError, ValueError, IndexError):
            return None
        except PermissionError:
            pass
        return int(lines[3]) if len(lines) > 3 and lines[3].strip() else None

    def start(self) -> "EmbeddedPostgres":
        self.datadir = self.datadir.resolve()
        self.datadir.mkdir(parents=True, exist_ok=True)
        run_as = _run_as()
        if run_as:
            from pgserver.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.datadir)
            pw = pwd.getpwnam(_SYSTEM_USER)
            os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
        running = self._running_port()
        if running:
            self.port = running
            logger.info("embedded PostgreSQL already running on port %s", running)
            return self
        if not (self.datadir / "PG_VERSION").exists():
            subprocess.run(
                [_bin("initdb"), "-D", str(self.datadir), "--auth=trust", "--encoding=utf8", "-U", "postgres"],
                check=True, capture_output=True, **run_as,
            )
        self.port = self.port or free_port(self.host)
        options = f"-h {self.host} -p {self.port} -k {self.datadir}"
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(
            [_bin("pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60", "-o", options,
             "-l", str(self.datadir / "postgres.log"), "start"],
            check=True, capture_output=True, **run_as,
        )
        logger.info("embedded PostgreSQL started on %s:%s", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._running_port() is None:
            return
        subprocess.run(
            [_bin("pg_ctl"), "-D", str(self.datadir), "-w", "-m", "fast", "stop"],
            check=False, capture_output=True, **_run_as(),
        )
        logger.info("embedded PostgreSQL stopped")

    def create_database(self, name: str) -> str:
        """Create database `name` if missing; return its URL."""
        import psycopg2

        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cur.fetchone():
                cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.url(name)
