"""Prometheus metrics served at /metrics.

Requests are counted here, in each process. Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set by
gunicorn.conf.py) makes every worker process write its series to files there, and whichever process
answers a scrape sums them all (prometheus_client's multiprocess mode). prometheus_client decides
this when it is first imported, so the variable must be in the environment before the app loads.

The job queue and finishing throughput live in PostgreSQL, not in any one process: they are read at
scrape time with small, index-bounded queries under a statement timeout.
"""
from __future__ import annotations

import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text

from app.extensions import db

logger = logging.getLogger(__name__)

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

REQUESTS = Counter("labelstore_http_requests_total", "HTTP requests answered, by OpenAPI operationId and status",
                   ["method", "operation", "status"])
LATENCY = Histogram("labelstore_http_request_duration_seconds", "Time to answer an HTTP request",
                    ["method", "operation"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

# Bounds what one scrape may cost the database.
DATABASE_TIMEOUT_MS = 1000
# Finishing throughput is counted over the newest report rows only, found through the primary key:
# more than this many files in one minute would be under-counted (finishing does ~100/s per worker).
FINISHING_WINDOW_ROWS = 200_000
OUTCOMES = ("accepted", "duplicate", "rejected")


def exposition(engine=None) -> bytes:
    """The Prometheus text format (0.0.4), which scrapers assume for a plain text/plain answer; the
    database metrics are read through `engine` (the app's own by default)."""
    engine = engine if engine is not None else db.engine
    if MULTIPROCESS_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIR)
        own = generate_latest(registry)
    else:
        own = generate_latest(REGISTRY)
    return own + generate_latest(DatabaseCollector(engine))


class DatabaseCollector:
    """Metrics read from PostgreSQL at scrape time. When the database does not answer in time, the scrape
    still succeeds, without these series and with labelstore_database_scrape_success 0."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        success = GaugeMetricFamily("labelstore_database_scrape_success",
                                    "1 when the job queue and finishing metrics could be read from the database")
        try:
            families = self._read()
        except Exception as exc:  # noqa: BLE001  (a scrape must not fail because the database is down)
            logger.warning("metrics: the database did not answer: %s", type(exc).__name__)
            success.add_metric([], 0)
            yield success
            return
        yield from families
        success.add_metric([], 1)
        yield success

    def _read(self) -> list:
        with self.engine.connect() as conn, conn.begin():
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {DATABASE_TIMEOUT_MS}")
            # todo and doing jobs through procrastinate's partial index on those statuses; failed ones
            # are few while nobody forgets them (succeeded ones are never counted: they only grow).
            jobs = conn.execute(text("""
                SELECT task_name, status::text, count(*) FROM procrastinate_jobs
                WHERE status IN ('todo', 'doing') GROUP BY 1, 2
                UNION ALL
                SELECT task_name, 'failed', count(*) FROM procrastinate_jobs WHERE status = 'failed' GROUP BY 1
            """)).all()
            # The oldest job due to run: due since its retry time, or else since it was deferred.
            oldest = conn.execute(text("""
                SELECT extract(epoch FROM now() - min(due)) FROM (
                    SELECT min(scheduled_at) AS due FROM procrastinate_jobs
                    WHERE status = 'todo' AND scheduled_at <= now()
                    UNION ALL
                    SELECT (SELECT min(e.at) FROM procrastinate_events e WHERE e.job_id = j.id AND e.type = 'deferred')
                    FROM (SELECT min(id) AS id FROM procrastinate_jobs
                          WHERE status = 'todo' AND scheduled_at IS NULL) j
                ) due_times
            """)).scalar()
            finished = dict(conn.execute(text("""
                SELECT outcome, count(*) FROM finish_reports
                WHERE id > (SELECT coalesce(max(id), 0) FROM finish_reports) - :window
                  AND date_processed >= now() - interval '60 seconds'
                GROUP BY outcome
            """), {"window": FINISHING_WINDOW_ROWS}).all())

        by_status = GaugeMetricFamily("labelstore_jobs", "Background jobs waiting (todo), running (doing) or failed, "
                                      "by task", labels=["task", "status"])
        for task, status, count in jobs:
            by_status.add_metric([task, status], count)
        age = GaugeMetricFamily("labelstore_job_queue_oldest_age_seconds",
                                "How long the oldest job due to run has waited for a worker (0 when none waits)")
        age.add_metric([], max(0.0, float(oldest or 0)))
        files = GaugeMetricFamily("labelstore_finishing_files_last_minute",
                                  "Uploaded files finishing handled in the last 60 seconds, by outcome",
                                  labels=["outcome"])
        for outcome in OUTCOMES:
            files.add_metric([outcome], finished.get(outcome, 0))
        return [by_status, age, files]
