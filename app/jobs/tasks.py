"""Procrastinate tasks. Every task is idempotent (running it twice has the effect of running it once) and
holds a lock on what it changes, so two runs of one job never work at the same time (app.jobs.exclusive)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from procrastinate import JobContext, RetryStrategy
from procrastinate.exceptions import JobAborted

from app.azureml import RegistrationRefused
from app.errors import WorkInterrupted
from app.jobs import procrastinate_app
from app.jobs.exclusive import exclusive
from app.logs import request_id_var
from app.ingest import url_imports
from app.labelapi import backfill
from app.services import datasets, finishing, housekeeping
from app.state import app_state
from app.storage import UnlistableUploadArea

logger = logging.getLogger(__name__)

# Transient failures (storage or network briefly down) are retried after 2, 4, 8, 16 s ... 
BACKOFF = RetryStrategy(max_attempts=8, exponential_wait=2)


@contextmanager
def one_run(context: JobContext, kind: str, key: int, *,
            on_final_failure: Callable[[BaseException], None]) -> Iterator[None]:
    """The job's run, alone on (`kind`, `key`). A stop asked by the worker's shutdown ends it as aborted, which
    procrastinate retries; the last failing attempt calls `on_final_failure` so the user sees why. Its log lines
    carry `job-<id>` where a request's carry the request id, and a failure shown to users names it."""
    job_id = getattr(context.job, "id", None)
    token = request_id_var.set(f"job-{job_id}") if job_id is not None else None
    try:
        with exclusive(kind, key, should_stop=context.should_abort):
            yield
    except WorkInterrupted as interrupted:
        raise JobAborted(str(interrupted)) from interrupted
    except Exception as exc:
        if context.job.attempts + 1 >= BACKOFF.max_attempts:
            on_final_failure(exc)
        raise
    finally:
        if token is not None:
            request_id_var.reset(token)


@procrastinate_app.periodic(cron="*/5 * * * *", periodic_id="check_storage")
# `lock`, not `queueing_lock`: a queueing lock made the retry of a failed check collide (UniqueViolation) with
# the next scheduled check already waiting, leaving the job stuck in "doing".
@procrastinate_app.task(name="check_storage", retry=BACKOFF, lock="check_storage")
def check_storage(timestamp: int | None = None) -> None:
    """Write and delete a probe blob (its own unique name). Runs every 5 minutes, so a storage outage shows
    as failing jobs."""
    app_state().storage.probe()
    logger.info("storage check passed")


@procrastinate_app.periodic(cron="17 3 * * *", periodic_id="prune_history")
@procrastinate_app.task(name="prune_history", retry=BACKOFF, lock="prune_history")
def prune_history(timestamp: int | None = None) -> None:
    """Once a day: finished jobs, old attempt failures and webhook events past HISTORY_RETENTION_DAYS go
    (app.services.housekeeping). Deletes in batches; run twice at once, the second waits on the lock."""
    housekeeping.prune()


@procrastinate_app.periodic(cron="*/15 * * * *", periodic_id="sweep_stray_blobs")
@procrastinate_app.task(name="sweep_stray_blobs", retry=BACKOFF, lock="sweep_stray_blobs")
def sweep_stray_blobs(timestamp: int | None = None) -> None:
    """Every 15 minutes: blobs that direct uploads stored but whose requests died before committing
    (app.services.housekeeping)."""
    housekeeping.sweep_stray_blobs()


@procrastinate_app.task(name="finish_image_set", retry=BACKOFF, pass_context=True)
def finish_image_set(context: JobContext, imageset_id: int) -> None:
    """Check, de-duplicate and catalogue a set's uploads (app.services.finishing); resumable."""
    with one_run(context, "image_set", imageset_id,
                 on_final_failure=lambda exc: finishing.mark_failed(imageset_id, exc)):
        try:
            finishing.finish(imageset_id, should_stop=context.should_abort)
        except UnlistableUploadArea as refused:  # retrying cannot help: say what to do and stop
            finishing.mark_failed(imageset_id, refused, detail=refused.detail)


@procrastinate_app.task(name="finish_chunk", retry=BACKOFF, pass_context=True)
def finish_chunk(context: JobContext, imageset_id: int, chunk: int) -> None:
    """One listing page of a set's upload area (app.services.finishing): lets many workers share a big set."""
    with one_run(context, finishing.chunk_lock(imageset_id), chunk,
                 on_final_failure=lambda exc: finishing.mark_failed(imageset_id, exc)):
        finishing.finish_chunk(imageset_id, chunk, should_stop=context.should_abort)


@procrastinate_app.task(name="build_dataset", retry=BACKOFF, pass_context=True)
def build_dataset(context: JobContext, dataset_id: int) -> None:
    """Export a dataset version's files and register them in Azure ML (app.services.datasets); idempotent."""
    with one_run(context, "dataset", dataset_id, on_final_failure=lambda exc: datasets.mark_failed(dataset_id, exc)):
        try:
            datasets.build(dataset_id, should_stop=context.should_abort)
        except RegistrationRefused as refused:  # retrying cannot help: say why and stop
            datasets.mark_failed(dataset_id, refused)


@procrastinate_app.task(name="backfill_labelapi_images", retry=BACKOFF, pass_context=True)
def backfill_labelapi_images(context: JobContext) -> None:
    """Read MD5, dimensions and sizes of images imported from LabelAPI (app.labelapi.backfill); resumable."""
    with one_run(context, "labelapi_backfill", 0, on_final_failure=lambda exc: None):
        backfill.backfill(should_stop=context.should_abort)


@procrastinate_app.task(name="import_urls_chunk", retry=BACKOFF, pass_context=True)
def import_urls_chunk(context: JobContext, import_id: int, first: int, last: int) -> None:
    """Fetch and catalogue the URLs at positions first..last of an import (app.ingest.url_imports); resumable.
    Chunks are independent jobs, so many workers share one import."""
    with one_run(context, url_imports.chunk_lock(import_id), first,
                 on_final_failure=lambda exc: url_imports.mark_failed(import_id, exc)):
        url_imports.run_chunk(import_id, first, last, should_stop=context.should_abort)
