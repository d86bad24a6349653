"""An embedded PostgreSQL server from the pgserver package's binaries, listening on a loopback port.

pgserver's own launcher listens only on a Unix socket and stops the server at interpreter exit of
whichever process touches it last; `make run` and the tests need a TCP port on 127.0.0.1 and an
explicit stop, so we drive its initdb/pg_ctl directly.

Every login needs the password (SCRAM), on the loopback port and on the Unix socket alike: the password is made
on first start and kept next to the data directory (`<datadir>-password`, mode 0600), and the URLs handed out
carry it. A data directory made before that (trusting every local user) gets the password and the same rules on
its next start.
"""
from __future__ import annotations

import logging
import os
import pwd
import secrets
import subprocess
import tempfile
from contextlib import contextmanager
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from app.embedded.ports import free_port

logger = logging.getLogger(__name__)

_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root
# Who may log in, and how: only with the password, over the socket (in the 0700 data directory) and loopback.
HBA = """# Written by app/embedded/postgres.py: every login needs the password.
local   all   all                 scram-sha-256
host    all   all   127.0.0.1/32  scram-sha-256
host    all   all   ::1/128       scram-sha-256
"""


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
    password: str | None = field(default=None, repr=False)

    @property
    def password_file(self) -> Path:
        return self.datadir.with_name(f"{self.datadir.name}-password")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@{self.host}:{self.port}/{database}"

    def _load_or_make_password(self) -> bool:
        """Read the password, or make it (mode 0600); True when it was just made."""
        if self.password_file.exists():
            self.password = self.password_file.read_text().strip()
            return False
        self.password = secrets.token_urlsafe(32)  # URL-safe: it goes into connection strings as it is
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password)
        return True

    @contextmanager
    def _password_for_server(self, run_as: dict):
        """The password in a file the server's user can read, for initdb --pwfile; removed afterwards."""
        fd, name = tempfile.mkstemp(prefix=".pw-", dir=self.datadir.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.password)
            if run_as:
                pw = pwd.getpwnam(_SYSTEM_USER)
                os.chown(name, pw.pw_uid, pw.pw_gid)
            yield name
        finally:
            os.unlink(name)

    def _require_password(self, run_as: dict) -> None:
        """A data directory made when every local user was trusted: set the password, then make every login
        need it."""
        import psycopg2

        conn = psycopg2.connect(self.url())  # still trusted: the old rules are in force until the reload
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ALTER ROLE postgres PASSWORD %s", (self.password,))
            hba = self.datadir / "pg_hba.conf"
            hba.write_text(HBA)
            if run_as:
                pw = pwd.getpwnam(_SYSTEM_USER)
                os.chown(hba, pw.pw_uid, pw.pw_gid)
            cur.execute("SELECT pg_reload_conf()")
        conn.close()
        logger.info("embedded PostgreSQL now requires its password (%s)", self.password_file)

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
        made = self._load_or_make_password()
        fresh = not (self.datadir / "PG_VERSION").exists()
        running = self._running_port()
        if running:
            self.port = running
            logger.info("embedded PostgreSQL already running on port %s", running)
        else:
            self._start_server(fresh, run_as)
        if made and not fresh:
            self._require_password(run_as)
        return self

    def _start_server(self, fresh: bool, run_as: dict) -> None:
        if fresh:
            with self._password_for_server(run_as) as pwfile:
                subprocess.run(
                    [_bin("initdb"), "-D", str(self.datadir), "--auth=scram-sha-256", f"--pwfile={pwfile}",
                     "--encoding=utf8", "-U", "postgres"],
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
