"""The renditions task (app.services.renditions): registered beside app.jobs.tasks through the app's import
paths; like every task, idempotent and alone on what it changes while it runs."""
from __future__ import annotations

import logging
import zlib

from procrastinate import JobContext

from app.jobs import procrastinate_app
from app.jobs.tasks import BACKOFF, one_run
from app.services import renditions

logger = logging.getLogger(__name__)


@procrastinate_app.task(name=renditions.TASK, retry=BACKOFF, pass_context=True)
def make_renditions(context: JobContext, image_ids: list[int]) -> None:
    """Store the grayscale and the thumbnail of each image and list them on it; images that cannot be rendered
    are logged and skipped."""
    # The lock names this batch (a 32-bit key from its ids): a re-run of the same job waits for the first.
    key = zlib.crc32(",".join(map(str, sorted(image_ids))).encode()) - 2 ** 31
    with one_run(context, "renditions", key, on_final_failure=lambda exc: logger.error(
            "renditions gave up; `python -m app renditions-backfill` makes them later",
            extra={"images": len(image_ids), "first_image_id": min(image_ids, default=None)})):
        renditions.make(image_ids, should_stop=context.should_abort)
