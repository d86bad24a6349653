"""Procrastinate tasks. Every task is idempotent: running it twice has the effect of running it once."""
from __future__ import annotations

import logging

from flask import current_app
from procrastinate import RetryStrategy

from app.jobs import in_app_context, queue

logger = logging.getLogger(__name__)

# Transient failures (storage or network briefly down) are retried after 2, 4, 8, 16 s ... 
BACKOFF = RetryStrategy(max_attempts=8, exponential_wait=2)


@queue.periodic(cron="*/5 * * * *", periodic_id="check_storage")
@queue.task(name="check_storage", retry=BACKOFF, queueing_lock="check_storage")
@in_app_context
def check_storage(timestamp: int | None = None) -> None:
    """Write and delete a probe blob. Runs every 5 minutes, so a storage outage shows as failing jobs."""
    current_app.extensions["label_store"].storage.probe()
    logger.info("storage check passed")


@queue.task(name="finish_image_set", retry=BACKOFF, pass_context=True)
@in_app_context
def finish_image_set(context, imageset_id: int) -> None:
    """Check, de-duplicate and catalogue a set's uploads (app.services.finishing); resumable."""
    from app.services import finishing

    try:
        finishing.finish(imageset_id)
    except Exception as exc:
        if context.job.attempts + 1 >= BACKOFF.max_attempts:
            finishing.mark_failed(imageset_id, exc)
        raise


@queue.task(name="build_dataset", retry=BACKOFF, pass_context=True)
@in_app_context
def build_dataset(context, dataset_id: int) -> None:
    """Export a dataset version's files and register them in Azure ML (app.services.datasets); idempotent."""
    from app.azureml import RegistrationRefused
    from app.services import datasets

    try:
        datasets.build(dataset_id)
    except RegistrationRefused as refused:  # retrying cannot help: say why and stop
        datasets.mark_failed(dataset_id, refused)
    except Exception as exc:
        if context.job.attempts + 1 >= BACKOFF.max_attempts:
            datasets.mark_failed(dataset_id, exc)
        raise
