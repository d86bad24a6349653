"""Read what LabelAPI never recorded from each imported image's blob: MD5, format, dimensions, size (and the
EXIF facts finishing reads), with the one pass over the stored bytes that finishing uses (the MD5 computed,
never taken from the blob's Content-MD5). Runs as the durable job `backfill_labelapi_images`, batch by
batch; each batch commits, so a run cut anywhere resumes with the images still `pending`.

Nothing is dropped: a missing blob is `missing`, a file that cannot be read is `unreadable` (with why), and
an image with the same bytes as another is `duplicate` of it — both images stay (their ids are in use), the
second without an MD5 (MD5s are unique here).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from azure.core.exceptions import ResourceNotFoundError
from flask import current_app
from sqlalchemy import func, select

from app import jobs
from app.errors import WorkInterrupted
from app.extensions import db
from app.models import Image, LabelApiImage
from app.services.image_facts import LARGE_HEAD_BYTES, TAIL_BYTES, Facts, Rejected, read_facts
from app.state import app_state
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

TASK = "backfill_labelapi_images"
LOCK = "labelapi_backfill"


def counts() -> dict[str, int]:
    """Imported images by backfill state."""
    found = dict(db.session.execute(select(LabelApiImage.state, func.count()).group_by(LabelApiImage.state)).all())
    return {state: found.get(state, 0) for state in ("pending", "done", "missing", "duplicate", "unreadable")}


def defer() -> None:
    """Queue the backfill in the caller's transaction (one waiting at a time is enough)."""
    jobs.defer(TASK, lock=LOCK)


def backfill(*, should_stop: Callable[[], bool] = lambda: False) -> dict[str, int]:
    state = app_state()
    storage, batch_size = state.storage, state.settings.finish_batch_size
    app = current_app._get_current_object()

    def examine(item):
        image_id, path = item
        with app.app_context():
            return image_id, _examine(path)

    with ThreadPoolExecutor(state.settings.finish_concurrency) as pool:
        while True:
            if should_stop():
                raise WorkInterrupted("stopped between backfill batches")
            batch = db.session.execute(
                select(LabelApiImage.image_id, Image.blobstorage_path).join(Image, Image.id == LabelApiImage.image_id)
                .where(LabelApiImage.state == "pending").order_by(LabelApiImage.image_id).limit(batch_size)).all()
            if not batch:
                break
            with unit_of_work():  # one batch per transaction: a run cut anywhere resumes at the next
                _record(list(pool.map(examine, batch)))
            logger.info("labelapi backfill progress", extra=counts())
    result = counts()
    logger.info("labelapi backfill done", extra=result)
    return result


@dataclass
class Examined:
    size: int | None = None
    facts: Facts | None = None
    md5: str | None = None
    problem: str | None = None  # why the facts could not be read


def _examine(path: str) -> Examined | None:
    """None when there is no blob at `path`. One pass over the stored bytes, as finishing reads its copies:
    the MD5 is computed, never taken from the Content-MD5 the blob happens to carry."""
    state = app_state()
    try:
        stored = state.storage.read_image_through(path, head_limit=LARGE_HEAD_BYTES, tail_size=TAIL_BYTES)
    except ResourceNotFoundError:
        return None
    if stored.size == 0:
        return Examined(0, problem="empty file")
    try:
        facts = read_facts(stored.head, stored.tail, stored.size, allowed_formats=state.settings.image_formats,
                           max_pixels=state.settings.max_image_pixels)
    except Rejected as rejected:
        return Examined(stored.size, problem=str(rejected))
    except Exception as exc:  # a reader bug on a strange file marks that image, never stops the backfill
        return Examined(stored.size, problem=f"unreadable image ({type(exc).__name__})")
    return Examined(stored.size, facts, stored.md5)


def _record(results) -> None:
    now = datetime.now(timezone.utc)
    md5s = [o.md5 for _, o in results if o is not None and o.facts]
    taken = dict(db.session.execute(select(Image.md5, Image.id).where(Image.md5.in_(md5s))).all()) if md5s else {}
    for image_id, outcome in results:
        row, image = db.session.get(LabelApiImage, image_id), db.session.get(Image, image_id)
        row.date_checked = now
        if outcome is None:
            row.state, row.problem = "missing", f"no blob at {image.blobstorage_path}"
        elif outcome.facts is None:
            row.state, row.problem = "unreadable", outcome.problem
        else:
            _fill(image, outcome.facts, outcome.size)
            first = taken.setdefault(outcome.md5, image_id)
            if first == image_id:
                image.md5, row.state = outcome.md5, "done"
            else:
                row.state, row.duplicate_of = "duplicate", first
                row.problem = f"same bytes as image {first} (MD5 {outcome.md5})"
        if row.state != "done":
            logger.warning("labelapi backfill: image kept with a problem",
                           extra={"image_id": image_id, "state": row.state, "problem": row.problem})


def _fill(image: Image, facts: Facts, size: int) -> None:
    """Fill what LabelAPI left empty; what it recorded stays as it was."""
    image.filesize = image.filesize if image.filesize is not None else size
    for name in ("filetype", "width", "height", "exif", "date_taken", "lat", "lon", "camera_make", "camera_model"):
        if getattr(image, name) is None:
            setattr(image, name, getattr(facts, name) or None)
