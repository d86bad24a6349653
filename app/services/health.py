"""Health checks for /info/status: each dependency probed concurrently, each with a deadline.

A hung dependency cannot hold the answer: checks run in a shared thread pool and whatever has not
answered by the deadline is reported as timed out (its thread finishes on its own socket timeout).
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from dataclasses import dataclass

from alembic.script import ScriptDirectory
from sqlalchemy import text

from app.extensions import db, migrate

logger = logging.getLogger(__name__)
_pool = cf.ThreadPoolExecutor(max_workers=16, thread_name_prefix="status-check")


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    required: bool = True

    def as_dict(self) -> dict:
        return {"ok": self.ok, "message": self.message, "required": self.required}


def _database(app) -> str:
    with app.app_context():
        timeout_ms = int(app.extensions["label_store"].settings.status_check_timeout_seconds * 1000)
        with db.engine.connect() as conn:
            conn.execute(text(f"SET statement_timeout = {timeout_ms}"))
            current = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        heads = set(ScriptDirectory(migrate.directory).get_heads())
        if current != heads:
            raise RuntimeError(f"migrations not at head (database {sorted(current) or 'empty'}, code {sorted(heads)}): "
                               "run `python -m app migrate`")
        return "reachable, migrations at head"


def _storage(app) -> str:
    state = app.extensions["label_store"]
    state.probe_storage.probe()
    return f"reachable, container {state.settings.azure_storage_imageset_container!r} writable"


def _jobs(app) -> str:
    settings = app.extensions["label_store"].settings
    with app.app_context():
        with db.engine.connect() as conn:
            seen = conn.execute(text(
                "SELECT count(*) FROM procrastinate_workers "
                "WHERE last_heartbeat > now() - make_interval(secs => :s)"), {"s": settings.worker_seen_within_seconds}
            ).scalar_one()
    if not seen:
        raise RuntimeError(f"no worker seen in the last {settings.worker_seen_within_seconds}s: "
                           "start one with `python -m app worker`")
    return f"{seen} worker{'s' if seen != 1 else ''} alive"


def _azure_ml(app) -> str:
    settings = app.extensions["label_store"].settings
    if not settings.azure_ml_configured:
        return "not configured: datasets are exported to blob storage but not registered"
    from app.azureml import probe

    return probe(settings)


# name -> (probe, required?); Azure ML is required only when it is configured.
CHECKS = {"database": (_database, lambda s: True), "blob_storage": (_storage, lambda s: True),
          "job_queue": (_jobs, lambda s: True), "azure_ml": (_azure_ml, lambda s: s.azure_ml_configured)}


def status(app) -> tuple[bool, dict[str, Check]]:
    timeout = app.extensions["label_store"].settings.status_check_timeout_seconds
    deadline = time.monotonic() + timeout
    futures = {name: _pool.submit(fn, app) for name, (fn, _) in CHECKS.items()}
    results: dict[str, Check] = {}
    settings = app.extensions["label_store"].settings
    for name, future in futures.items():
        required = CHECKS[name][1](settings)
        try:
            message = future.result(timeout=max(0.0, deadline - time.monotonic()))
            results[name] = Check(name, True, message, required)
        except cf.TimeoutError:
            results[name] = Check(name, False, f"no answer within {timeout:g}s", required)
        except Exception as exc:  # a failed check is a result, not an error
            logger.warning("status check failed", extra={"check": name, "reason": str(exc)[:300]})
            results[name] = Check(name, False, str(exc)[:300], required)
    healthy = all(c.ok for c in results.values() if c.required)
    return healthy, results
