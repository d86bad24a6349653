"""Background work on procrastinate, in the same PostgreSQL as the data.

The web process defers jobs by task name through SQLAlchemy on the request's own connection, so a job
exists exactly when the change that asked for it is committed, and services never import the tasks. The
worker process runs them with procrastinate's async psycopg connector (see app.jobs.worker), each inside the
app context that `app_context_middleware` gives it.
"""
from __future__ import annotations

import logging
import os
import socket
import traceback
from datetime import datetime

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued  # noqa: F401  (callers catch it from here)
from procrastinate.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector
from procrastinate.manager import JobManager
from procrastinate.tasks import configure_task
from procrastinate.exceptions import JobAborted
from sqlalchemy import text

from app import logs
from app.extensions import db

logger = logging.getLogger(__name__)

TASKS_MODULE = "app.jobs.tasks"
RENDER_TASKS_MODULE = "app.jobs.render_tasks"
WEBHOOK_TASKS_MODULE = "app.jobs.webhook_tasks"
DELETE_TASKS_MODULE = "app.jobs.delete_tasks"
# Deferring always goes through SQLAlchemy's connection (the caller's transaction), also inside a worker, whose
# app runs on procrastinate's async psycopg connector instead (app.jobs.worker).
_deferring_connector = SQLAlchemyPsycopg2Connector()
_deferring = JobManager(_deferring_connector)
procrastinate_app = procrastinate.App(connector=_deferring_connector, import_paths=[
    TASKS_MODULE, RENDER_TASKS_MODULE, WEBHOOK_TASKS_MODULE, DELETE_TASKS_MODULE])
logs.use_task_lookup(procrastinate_app.tasks.get)  # the failed-attempt log line shows the retry time


def init_app(flask_app) -> None:
    """Bind procrastinate to this Flask app's engine, for deferring on the request's connection."""
    with flask_app.app_context():
        _deferring_connector.open(db.engine)


def app_context_middleware(flask_app):
    """A procrastinate task middleware: every task runs inside `flask_app`'s app context (db, settings), and
    each failed attempt leaves its error and traceback for operators (GET /jobs/{job_id})."""
    def run(call_next, context, worker):
        with flask_app.app_context():
            try:
                return call_next()
            except JobAborted:
                raise
            except Exception as exc:
                record_failure(context.job, exc)
                raise

    return run


MAX_TRACEBACK_CHARS = 20_000


def record_failure(job, exc: BaseException) -> None:
    """Keep a failed attempt's error and traceback (masked as the logs are; the traceback's last part when
    long), on a connection of its own: the task's transaction may be the thing that failed."""
    trace = logs.redact("".join(traceback.format_exception(exc)))[-MAX_TRACEBACK_CHARS:]
    try:
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO job_failures (job_id, task, attempt, error, traceback) "
                              "VALUES (:job_id, :task, :attempt, :error, :traceback)"),
                         {"job_id": job.id, "task": job.task_name[:128], "attempt": (job.attempts or 0) + 1,
                          "error": logs.redact(f"{type(exc).__name__}: {exc}")[:2000], "traceback": trace})
    except Exception as failed:  # noqa: BLE001  (the record must never hide the job's own failure)
        logger.warning("could not record a failed job attempt", extra={"job_id": job.id, "reason": str(failed)[:200]})


def defer(task_name: str, *, lock: str | None = None, queueing_lock: str | None = None,
          schedule_at: datetime | None = None, **kwargs) -> int:
    """Defer the task called `task_name` inside the current database transaction: it runs only if the
    caller commits (and not before `schedule_at`, when given). With `queueing_lock`, AlreadyEnqueued when such
    a job is already waiting (that refusal breaks the transaction: defer inside a savepoint)."""
    if task_name not in procrastinate_app.tasks:
        load_tasks()
    if task_name not in procrastinate_app.tasks:
        raise KeyError(f"no task {task_name!r}")
    return configure_task(name=task_name, job_manager=_deferring, lock=lock, queueing_lock=queueing_lock,
                          schedule_at=schedule_at, connection=db.session.connection()).defer(**kwargs)


def load_tasks() -> None:
    """Register the tasks on `procrastinate_app` (its import paths), as a worker must before it runs."""
    procrastinate_app.perform_import_paths()


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
