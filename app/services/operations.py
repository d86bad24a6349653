"""What operators look at: the job queue (procrastinate's tables) and per-minute finishing figures."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from app.errors import Conflict, NotFound
from app.extensions import db
from app.services.pagination import Page
from app.state import app_state

_JOBS = """
    SELECT j.id, j.task_name, j.args, j.status::text AS status, j.attempts, j.queue_name, j.scheduled_at,
           e.type::text AS last_event, e.at AS last_event_at
    FROM procrastinate_jobs j
    LEFT JOIN LATERAL (SELECT type, at FROM procrastinate_events WHERE job_id = j.id ORDER BY id DESC LIMIT 1) e
      ON true
    WHERE (CAST(:status AS text) IS NULL OR j.status::text = :status)
      AND (CAST(:task AS text) IS NULL OR j.task_name = :task)
"""


def list_jobs(*, page: int, per_page: int, status: str | None, task: str | None) -> Page:
    params = {"status": status, "task": task}
    total = db.session.execute(text(f"SELECT count(*) FROM ({_JOBS}) q"), params).scalar_one()
    rows = db.session.execute(text(_JOBS + " ORDER BY j.id DESC LIMIT :limit OFFSET :offset"),
                              {**params, "limit": per_page, "offset": (page - 1) * per_page}).mappings().all()
    return Page(list(rows), page, per_page, total)


def retry_job(job_id: int):
    """failed -> todo, with procrastinate's own query, on this request's transaction."""
    from procrastinate import sql

    status = db.session.execute(text("SELECT status::text FROM procrastinate_jobs WHERE id = :id FOR UPDATE"),
                                {"id": job_id}).scalar()
    if status is None:
        raise NotFound(f"no job {job_id}")
    if status != "failed":
        raise Conflict(f"job {job_id} is {status}: only a failed job is queued again", current_status=status)
    db.session.connection().exec_driver_sql(sql.queries["retry_job"], {
        "job_id": job_id, "retry_at": datetime.now(timezone.utc), "new_priority": None, "new_queue_name": None,
        "new_lock": None})
    return db.session.execute(text(_JOBS + " AND j.id = :id"), {"status": None, "task": None, "id": job_id}
                              ).mappings().one()


def get_job(job_id: int):
    """The job and its failed attempts (newest first, at most 50)."""
    job = db.session.execute(text(_JOBS + " AND j.id = :id"), {"status": None, "task": None, "id": job_id}
                             ).mappings().first()
    if job is None:
        raise NotFound(f"no job {job_id}")
    failures = db.session.execute(text(
        "SELECT attempt, at, error, traceback FROM job_failures WHERE job_id = :id ORDER BY id DESC LIMIT 50"),
        {"id": job_id}).mappings().all()
    return job, [dict(f) for f in failures]


def queue() -> tuple[list[dict], list[dict]]:
    """Waiting and running jobs through procrastinate's partial index on those statuses, failed ones (few while
    somebody looks after them), and every worker row with its host, pid and last heartbeat."""
    counts = db.session.execute(text("""
        SELECT queue_name AS queue, task_name AS task, status::text AS status, count(*) AS count
        FROM procrastinate_jobs WHERE status IN ('todo', 'doing', 'failed')
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""")).mappings().all()
    workers = db.session.execute(text("""
        SELECT w.id AS worker_id, p.host, p.pid, p.started_at, w.last_heartbeat,
               w.last_heartbeat > now() - make_interval(secs => :stalled) AS alive
        FROM procrastinate_workers w LEFT JOIN worker_processes p ON p.worker_id = w.id
        ORDER BY w.id DESC LIMIT 200"""),
        {"stalled": app_state().settings.worker_stalled_after_seconds}).mappings().all()
    return [dict(c) for c in counts], [dict(w) for w in workers]


def finishing_histogram(minutes: int) -> list[dict]:
    since = datetime.now(timezone.utc) - timedelta(minutes=minutes)
    rows = db.session.execute(text("""
        SELECT date_trunc('minute', date_processed) AS minute,
               count(*) FILTER (WHERE outcome = 'accepted') AS accepted,
               count(*) FILTER (WHERE outcome = 'duplicate') AS duplicate,
               count(*) FILTER (WHERE outcome = 'rejected') AS rejected
        FROM finish_reports WHERE date_processed >= :since GROUP BY 1 ORDER BY 1"""), {"since": since}).mappings()
    return [dict(row) for row in rows]
