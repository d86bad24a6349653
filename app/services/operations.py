"""What operators look at: the job queue (procrastinate's tables) and the per-minute ingest figures."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select, text

from app.errors import Conflict, NotFound
from app.extensions import db
from app.ingest.pipeline import OUTCOMES, SOURCES
from app.models import IngestMinute
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
    """The dropbox's share of the ingest histogram, in the shape /monitoring/finishing always had."""
    return [{"minute": bucket["minute"], **{k: bucket["by_source"]["dropbox"][k] for k in OUTCOMES}}
            for bucket in ingest_histogram(minutes) if any(bucket["by_source"]["dropbox"].values())]


def ingest_histogram(minutes: int) -> list[dict]:
    """Per minute that saw any file, oldest first: outcomes in all and by source. Read from the per-minute
    counters the pipeline keeps (a few rows a minute, by primary key), never by counting files."""
    since = (datetime.now(timezone.utc) - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    rows = db.session.execute(select(IngestMinute.minute, IngestMinute.source, IngestMinute.outcome,
                                     IngestMinute.count).where(IngestMinute.minute >= since)
                              .order_by(IngestMinute.minute))
    buckets: dict = {}
    for minute, source, outcome, count in rows:
        bucket = buckets.setdefault(minute, {"minute": minute, **dict.fromkeys(OUTCOMES, 0),
                                             "by_source": {s: dict.fromkeys(OUTCOMES, 0) for s in SOURCES}})
        bucket[outcome] += count
        bucket["by_source"].setdefault(source, dict.fromkeys(OUTCOMES, 0))[outcome] += count
    return list(buckets.values())
