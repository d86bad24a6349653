"""The daily prune of history (app.services.housekeeping): what is past HISTORY_RETENTION_DAYS goes, what an
operator or a user may still need stays."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
OLD = NOW - timedelta(days=31)  # past the default 30 days
RECENT = NOW - timedelta(days=29)


def _job(db, status: str, last_event: datetime) -> int:
    job_id = db.session.execute(text(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status) VALUES ('default', 'check_storage', :s) "
        "RETURNING id"), {"s": status}).scalar_one()
    db.session.execute(text("INSERT INTO procrastinate_events (job_id, type, at) VALUES (:j, 'deferred', :at)"),
                       {"j": job_id, "at": last_event - timedelta(minutes=5)})
    db.session.execute(text("INSERT INTO procrastinate_events (job_id, type, at) VALUES (:j, 'started', :at)"),
                       {"j": job_id, "at": last_event})
    return job_id


def _failure(db, job_id: int, at: datetime) -> int:
    return db.session.execute(text(
        "INSERT INTO job_failures (job_id, task, attempt, error, traceback, at) "
        "VALUES (:j, 'check_storage', 1, 'boom', 'Traceback', :at) RETURNING id"), {"j": job_id, "at": at}).scalar_one()


def _ids(db, table: str) -> set:
    return set(db.session.execute(text(f"SELECT id FROM {table}")).scalars())


def test_prune_removes_only_old_history_no_one_needs(app_context):
    from app.extensions import db
    from app.jobs import load_tasks, procrastinate_app
    from app.services import housekeeping
    from app.webhooks import service as webhooks

    old_done, recent_done = _job(db, "succeeded", OLD), _job(db, "succeeded", RECENT)
    old_failed, old_cancelled, waiting = _job(db, "failed", OLD), _job(db, "cancelled", OLD), _job(db, "todo", OLD)
    periodic = _job(db, "succeeded", OLD)  # procrastinate's record of its last periodic run points at it
    db.session.execute(text("INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id, "
                            "periodic_id) VALUES ('check_storage', 1, :j, 'check_storage')"), {"j": periodic})
    gone_failure, failed_failure = _failure(db, old_done, OLD), _failure(db, old_failed, OLD)
    retried_failure = _failure(db, recent_done, OLD)  # its job succeeded later: the failure is history
    recent_failure = _failure(db, recent_done, RECENT)

    webhooks.register(url="https://93.184.215.14/hooks", events=["key.revoked"])
    for n in range(3):
        webhooks.emit("key.revoked", {"key_id": f"k{n}"})
    events = db.session.execute(text("SELECT id FROM webhook_events ORDER BY created_at, id")).scalars().all()
    delivered_old, pending_old, delivered_recent = events
    for event_id, created, status in ((delivered_old, OLD, "delivered"), (pending_old, OLD, "pending"),
                                      (delivered_recent, RECENT, "delivered")):
        db.session.execute(text("UPDATE webhook_events SET created_at = :c WHERE id = :e"), {"c": created, "e": event_id})
        db.session.execute(text("UPDATE webhook_deliveries SET status = :s WHERE event_id = :e"),
                           {"s": status, "e": event_id})
    for minute in (OLD, RECENT):
        db.session.execute(text("INSERT INTO ingest_minutes (minute, source, outcome, count) "
                                "VALUES (:m, 'url', 'accepted', 3)"), {"m": minute})
    db.session.commit()
    jobs_before = _ids(db, "procrastinate_jobs")

    pruned = housekeeping.prune(now=NOW)

    assert pruned == {"jobs": 2, "job_failures": 2, "webhook_events": 1, "ingest_minutes": 1}
    assert jobs_before - _ids(db, "procrastinate_jobs") == {old_done, old_cancelled}
    assert _ids(db, "job_failures") == {failed_failure, recent_failure}  # gone_failure, retried_failure pruned
    assert set(db.session.execute(text("SELECT id FROM webhook_events")).scalars()) == {pending_old, delivered_recent}
    assert db.session.execute(text("SELECT count(*) FROM webhook_deliveries WHERE event_id = :e"),
                              {"e": delivered_old}).scalar_one() == 0
    assert db.session.execute(text("SELECT minute FROM ingest_minutes")).scalars().all() == [RECENT]
    assert {waiting, old_failed, periodic} <= _ids(db, "procrastinate_jobs")
    assert housekeeping.prune(now=NOW) == {"jobs": 0, "job_failures": 0, "webhook_events": 0, "ingest_minutes": 0}

    load_tasks()  # and a worker runs it once a day
    daily = procrastinate_app.periodic_registry.periodic_tasks[("prune_history", "prune_history")]
    assert daily.cron == "17 3 * * *"


def test_the_histogram_keeps_the_widest_window_the_api_shows(app_context, monkeypatch):
    from app.extensions import db
    from app.services import housekeeping
    from app.state import app_state

    monkeypatch.setattr(app_state().settings, "history_retention_days", 1)
    for days in (6, 8):
        db.session.execute(text("INSERT INTO ingest_minutes (minute, source, outcome, count) "
                                "VALUES (:m, 'upload', 'rejected', 1)"), {"m": NOW - timedelta(days=days)})
    old_done = _job(db, "succeeded", NOW - timedelta(days=2))
    db.session.commit()

    assert housekeeping.prune(now=NOW) == {"jobs": 1, "job_failures": 0, "webhook_events": 0, "ingest_minutes": 1}
    assert db.session.execute(text("SELECT minute FROM ingest_minutes")).scalars().all() == [NOW - timedelta(days=6)]
    assert old_done not in _ids(db, "procrastinate_jobs")
