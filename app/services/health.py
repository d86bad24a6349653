"""Health checks for /info/status: each dependency probed concurrently, each with a deadline.

A hung dependency cannot hold the answer: checks run in a shared thread pool and whatever has not
answered by the deadline is reported as timed out (its thread finishes on its own socket timeout). A check
still running from an earlier request is waited for again, never started a second time, so hung probes
hold at most one thread per check however often /info/status is asked.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import threading
import time
from dataclasses import dataclass

from alembic.script import ScriptDirectory
from sqlalchemy import text

from app import azureml
from app.extensions import db
from app.flask_app import MIGRATIONS
from app.state import app_state

logger = logging.getLogger(__name__)
_pool = cf.ThreadPoolExecutor(max_workers=8, thread_name_prefix="status-check")
_running: dict[tuple[int, str], cf.Future] = {}  # (app, check) -> its probe still in flight
_running_lock = threading.Lock()


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    required: bool = True

    def as_dict(self) -> dict:
        return {"ok": self.ok, "message": self.message, "required": self.required}


@functools.cache
def _code_heads() -> frozenset[str]:
    """The migrations' heads in this code: read once (parsing every revision file took ~15 ms a probe)."""
    return frozenset(ScriptDirectory(str(MIGRATIONS)).get_heads())


def _database(app) -> str:
    with app.app_context():
        timeout_ms = int(app_state(app).settings.status_check_timeout_seconds * 1000)
        with db.engine.connect() as conn:
            conn.execute(text(f"SET statement_timeout = {timeout_ms}"))
            current = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        heads = _code_heads()
        if current != heads:
            raise RuntimeError(f"migrations not at head (database {sorted(current) or 'empty'}, code {sorted(heads)}): "
                               "run `python -m app migrate`")
        return "reachable, migrations at head"


def _storage(app) -> str:
    state = app_state(app)
    state.probe_storage.probe()
    return f"reachable, container {state.settings.azure_storage_imageset_container!r} writable"


def _jobs(app) -> str:
    settings = app_state(app).settings
    with app.app_context():
        with db.engine.connect() as conn:
            alive = conn.execute(text(
                "SELECT p.host, p.pid FROM procrastinate_workers w LEFT JOIN worker_processes p ON p.worker_id = w.id "
                "WHERE w.last_heartbeat > now() - make_interval(secs => :s) ORDER BY w.id"),
                {"s": settings.worker_stalled_after_seconds}).all()
    if not alive:
        raise RuntimeError(f"no worker heartbeat in the last {settings.worker_stalled_after_seconds:g}s: "
                           "start one with `python -m app worker`")
    where = ", ".join(f"{host}:{pid}" if host else "starting" for host, pid in alive[:10])
    return f"{len(alive)} worker{'s' if len(alive) != 1 else ''} alive ({where}{', ...' if len(alive) > 10 else ''})"


def _azure_ml(app) -> str:
    settings = app_state(app).settings
    if not settings.azure_ml_configured:
        return "not configured: datasets are exported to blob storage but not registered"
    return azureml.probe(settings, app_state(app).azureml_credential)


# name -> (probe, required?); Azure ML is required only when it is configured.
CHECKS = {"database": (_database, lambda s: True), "blob_storage": (_storage, lambda s: True),
          "job_queue": (_jobs, lambda s: True), "azure_ml": (_azure_ml, lambda s: s.azure_ml_configured)}


def status(app) -> tuple[bool, dict[str, Check]]:
    timeout = app_state(app).settings.status_check_timeout_seconds
    deadline = time.monotonic() + timeout
    futures = {name: _probe(app, name, fn) for name, (fn, _) in CHECKS.items()}
    results: dict[str, Check] = {}
    settings = app_state(app).settings
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


def _probe(app, name: str, fn) -> cf.Future:
    """The probe of `name` already in flight for this app, or a new one."""
    with _running_lock:
        future = _running.get((id(app), name))
        if future is None or future.done():
            future = _running[(id(app), name)] = _pool.submit(fn, app)
        return future
