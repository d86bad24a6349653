"""Housekeeping: the history that piles up and that nobody reads after a while, pruned by the daily
`prune_history` job (app.jobs.tasks).

After HISTORY_RETENTION_DAYS:
- jobs that ended well (succeeded, cancelled, aborted) with their events; a job that failed for good stays,
  with its attempts' failures, until an operator retries or deletes it (GET /jobs?status=failed);
- the failures of attempts whose job is no longer failed (it succeeded on a later try, or is gone);
- webhook events with no delivery still pending, and their deliveries.
The ingest histogram's minutes go once older than both that and the widest window the API shows (7 days).
Catalogue, reports, audit and imports are the users' records: never pruned here.

Each kind is deleted in batches of BATCH rows, a transaction each, so a big backlog never holds locks long.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, text

from app.extensions import db
from app.ingest import pipeline
from app.models import StrayBlob
from app.state import app_state
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

BATCH = 5_000
WIDEST_HISTOGRAM = timedelta(minutes=10_080)  # /monitoring/ingest and /monitoring/finishing: minutes <= 10080

_PRUNE = {
    "jobs": """
        DELETE FROM procrastinate_jobs WHERE id IN (
            SELECT j.id FROM procrastinate_jobs j
            WHERE j.status IN ('succeeded', 'cancelled', 'aborted')
              AND NOT EXISTS (SELECT FROM procrastinate_events e WHERE e.job_id = j.id AND e.at >= :cutoff)
              AND NOT EXISTS (SELECT FROM procrastinate_periodic_defers p WHERE p.job_id = j.id)
            LIMIT :batch)""",
    "job_failures": """
        DELETE FROM job_failures WHERE id IN (
            SELECT f.id FROM job_failures f
            WHERE f.at < :cutoff
              AND NOT EXISTS (SELECT FROM procrastinate_jobs j WHERE j.id = f.job_id AND j.status = 'failed')
            LIMIT :batch)""",
    "webhook_events": """
        DELETE FROM webhook_events WHERE id IN (
            SELECT e.id FROM webhook_events e
            WHERE e.created_at < :cutoff
              AND NOT EXISTS (SELECT FROM webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending')
            LIMIT :batch)""",
    "ingest_minutes": """
        DELETE FROM ingest_minutes WHERE (minute, source, outcome) IN (
            SELECT minute, source, outcome FROM ingest_minutes WHERE minute < :histogram_cutoff LIMIT :batch)""",
}


def prune(now: datetime | None = None) -> dict[str, int]:
    """Delete what HISTORY_RETENTION_DAYS lets go (see the module's docstring); the rows deleted, per kind."""
    now = now or datetime.now(timezone.utc)
    retention = timedelta(days=app_state().settings.history_retention_days)
    cutoffs = {"cutoff": now - retention, "histogram_cutoff": now - max(retention, WIDEST_HISTOGRAM),
               "batch": BATCH}
    pruned = {}
    for kind, statement in _PRUNE.items():
        pruned[kind] = 0
        while True:
            with unit_of_work():
                deleted = db.session.execute(text(statement), cutoffs).rowcount
            pruned[kind] += deleted
            if deleted < BATCH:
                break
    logger.info("history pruned", extra={"retention_days": retention.days, **pruned})
    return pruned


STRAY_AFTER = timedelta(hours=1)  # far longer than any request lives: a row this old outlived its request


def sweep_stray_blobs(now: datetime | None = None, *, older_than: timedelta = STRAY_AFTER) -> int:
    """Delete the blobs that requests stored and never catalogued because their process died in between
    (`stray_blobs` rows older than `older_than`), then their rows; a path the catalogue names is kept. Returns
    how many blobs were deleted."""
    cutoff = (now or datetime.now(timezone.utc)) - older_than
    deleted = 0
    while True:
        with unit_of_work():
            paths = list(db.session.scalars(select(StrayBlob.path).where(StrayBlob.at < cutoff)
                                            .order_by(StrayBlob.at).limit(1000).with_for_update(skip_locked=True)))
            if not paths:
                break
            strays = pipeline.uncatalogued_in_transaction(paths)
            for path in strays:
                app_state().storage.delete_image(path)
            pipeline.settle_strays(paths)
        deleted += len(strays)
    if deleted:
        logger.warning("deleted blobs stranded by requests that never committed", extra={"blobs": deleted})
    return deleted
