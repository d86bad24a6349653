"""Background work on procrastinate, in the same PostgreSQL as the data.

The web process defers jobs through SQLAlchemy on the request's own connection, so a job exists
exactly when the change that asked for it is committed. The worker process runs them with
procrastinate's async psycopg connector (see app.cli worker).
"""
from __future__ import annotations

import functools
import logging
import os
import socket

import procrastinate
from flask import has_app_context
from procrastinate.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector

logger = logging.getLogger(__name__)

queue = procrastinate.App(connector=SQLAlchemyPsycopg2Connector(), import_paths=["app.jobs.tasks"])

_flask_app = None


def init_app(flask_app) -> None:
    """Bind the queue to this Flask app's engine (for deferring) and app context (for tasks)."""
    global _flask_app
    from app.extensions import db

    _flask_app = flask_app
    with flask_app.app_context():
        queue.connector.open(db.engine)


def flask_app():
    if _flask_app is None:
        raise RuntimeError("app.jobs.init_app() was not called in this process")
    return _flask_app


def in_app_context(fn):
    """Run a task body inside the Flask app context, so it can use db.session and settings."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if has_app_context():  # called directly by code that already has its app (tests, other tasks)
            return fn(*args, **kwargs)
        with flask_app().app_context():
            return fn(*args, **kwargs)

    return wrapper


def defer(task, configure: dict | None = None, **kwargs) -> int:
    """Defer `task` inside the current database transaction: it runs only if the caller commits."""
    from app.extensions import db

    return task.configure(connection=db.session.connection(), **(configure or {})).defer(**kwargs)


def import_tasks() -> None:
    import app.jobs.tasks  # noqa: F401  (registers the tasks on `queue`)


async def retry_stalled(app, seconds_since_heartbeat: float, exclude_worker: int | None = None) -> list[int]:
    """Put back in the queue the jobs whose worker stopped sending heartbeats (killed, lost).

    Tasks are idempotent, so a job re-run after its worker died mid-way converges to the same result.
    """
    stalled = [job for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
               if exclude_worker is None or job.worker_id != exclude_worker]
    for job in stalled:
        logger.warning("retrying stalled job", extra={"job_id": job.id, "task": job.task_name})
        await app.job_manager.retry_job(job)
    return [job.id for job in stalled]


async def record_worker(app, worker_id: int) -> None:
    """Note which host and process a worker row belongs to (shown by /info/status)."""
    await app.connector.execute_query_async(
        "INSERT INTO worker_processes (worker_id, host, pid) VALUES (%(worker_id)s, %(host)s, %(pid)s) "
        "ON CONFLICT (worker_id) DO NOTHING", worker_id=worker_id, host=socket.gethostname()[:255], pid=os.getpid())


async def prune_dead_workers(app, stalled_after_seconds: float) -> list[int]:
    """Forget workers silent for four times the stalled limit (their jobs were re-queued long before)."""
    pruned = await app.job_manager.prune_stalled_workers(4 * stalled_after_seconds)
    await app.connector.execute_query_async(
        "DELETE FROM worker_processes p WHERE NOT EXISTS (SELECT 1 FROM procrastinate_workers w WHERE w.id = p.worker_id)")
    if pruned:
        logger.info("forgot dead workers", extra={"worker_ids": pruned})
    return pruned
