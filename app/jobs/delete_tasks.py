"""The deleting tasks (app.services.deletion): registered beside app.jobs.tasks through the app's import paths;
like every task, idempotent and alone on what it changes while it runs."""
from __future__ import annotations

import logging
import zlib

from procrastinate import JobContext

from app.jobs import procrastinate_app
from app.jobs.tasks import BACKOFF, one_run
from app.services import deletion

logger = logging.getLogger(__name__)


def _gave_up(what: str, **extra):
    return lambda exc: logger.error(f"{what} gave up; POST /api/v1/jobs/<id>/retry runs it again", extra=extra)


@procrastinate_app.task(name=deletion.DELETE_IMAGES, retry=BACKOFF, pass_context=True)
def delete_images(context: JobContext, image_ids: list[int]) -> None:
    """Remove images marked deleting: their blobs and renditions, then their rows."""
    key = zlib.crc32(",".join(map(str, sorted(image_ids))).encode()) - 2 ** 31  # this batch, as a 32-bit key
    with one_run(context, "delete_images", key,
                 on_final_failure=_gave_up("deleting images", first_image_id=min(image_ids, default=None))):
        deletion.purge_images(image_ids, should_stop=context.should_abort)


@procrastinate_app.task(name=deletion.DELETE_IMAGE_SET, retry=BACKOFF, pass_context=True)
def delete_image_set(context: JobContext, imageset_id: int) -> None:
    """Remove an image set marked deleting, with the images only it holds, its upload area and its rows."""
    # The set's own lock: never at once with a finishing run of the same set.
    with one_run(context, "image_set", imageset_id,
                 on_final_failure=_gave_up("deleting an image set", imageset_id=imageset_id)):
        deletion.purge_image_set(imageset_id, should_stop=context.should_abort)


@procrastinate_app.task(name=deletion.RELEASE_RETIRED, retry=BACKOFF, pass_context=True)
def release_retired(context: JobContext, campaign_id: int) -> None:
    """After a campaign is archived, delete the retired images nothing holds any more."""
    with one_run(context, "release_retired", campaign_id,
                 on_final_failure=_gave_up("releasing retired images", campaign_id=campaign_id)):
        deletion.release_retired(campaign_id, should_stop=context.should_abort)
