"""`python -m app migrate`: wait for the database, then bring it to head, one run at a time per database."""
from __future__ import annotations

import logging
import time

import psycopg2
from flask_migrate import Migrate, upgrade
from sqlalchemy import text

from app.extensions import db
from app.flask_app import MIGRATIONS
from app.services.keys import bootstrap_admin
from app.state import app_state
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)


# One `migrate` at a time per database (replicas that all migrate at start, a one-shot job run twice):
# a session-level advisory lock, released at the end or when the process dies.
MIGRATE_LOCK_KEY = 0x4C53_4D49  # "LSMI"


def register_migrations(flask_app) -> None:
    """Flask-Migrate on `flask_app`: what `upgrade` reads, and the `flask db` commands."""
    Migrate(flask_app, db, directory=str(MIGRATIONS))


def migrate_database(flask_app) -> None:
    """Alembic upgrade to head (procrastinate's schema included), the image container, then the bootstrap
    admin if configured; all under the migrate lock, so concurrent runs wait and then find nothing to do."""
    if "migrate" not in flask_app.extensions:
        register_migrations(flask_app)
    with flask_app.app_context():
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
            if not lock.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATE_LOCK_KEY}):
                logger.info("another migrate is running on this database; waiting for it")
                lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATE_LOCK_KEY})
            try:
                upgrade()
                app_state(flask_app).storage.ensure_container()
                settings = app_state(flask_app).settings
                if settings.bootstrap_admin_email:
                    with unit_of_work():
                            created = bootstrap_admin(email=settings.bootstrap_admin_email,
                                                  key_id=settings.bootstrap_admin_key,
                                                  secret=settings.bootstrap_admin_secret.get_secret_value())
                    if created:
                        logger.info("bootstrap admin created", extra={"key_id": created[0].key_id})
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATE_LOCK_KEY})


def wait_for_database(url: str, wait_seconds: float) -> str | None:
    """Connect until the server answers, retrying with backoff for at most `wait_seconds` (a database that
    starts with the service); None once it answered, else the last problem, one line without credentials."""
    deadline, delay, attempt = time.monotonic() + wait_seconds, 0.5, 0
    while True:
        attempt += 1
        try:
            psycopg2.connect(url, connect_timeout=5).close()
            return None
        except psycopg2.OperationalError as exc:
            problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if time.monotonic() + delay > deadline:
            return problem
        logger.warning("database not reachable yet; retrying",
                       extra={"attempt": attempt, "retry_in_seconds": delay, "problem": problem})
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
