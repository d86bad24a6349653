"""Renditions of catalogued images (the grayscale and the thumbnail of app.ingest.renditions): made by a job after
images are catalogued, stored beside each image, listed in the image's `renditions`, read through a SAS.

Idempotent: a rendition's blob has one path per image, written whole, and its name is added to the image's
array by a union in one UPDATE, so a run repeated, or two runs at once, leave the same blobs and names. An image
that cannot be rendered (damaged past what finishing caught, gone, too large) is logged and skipped: it never
fails its batch. Storage or database outages fail the run, which the queue retries.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from flask import current_app
from sqlalchemy import Integer, String, bindparam, not_, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from app import jobs
from app.errors import NotFound, WorkInterrupted
from app.extensions import db
from app.ingest import renditions as render
from app.models import Image
from app.state import app_state
from app.storage import SignedUrl
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

TASK = "make_renditions"
RENDER_CONCURRENCY = 4  # images read and rendered at once by one job: each holds one decoded image
_ALL = list(render.NAMES)
# A union with what the row holds when the UPDATE runs (it re-reads a row another run changed meanwhile): two runs
# at once both end with every name, none twice.
_ADD_NAMES = text(
    "UPDATE images SET renditions = ARRAY(SELECT DISTINCT unnest(renditions || CAST(:names AS varchar(32)[]))"
    " ORDER BY 1) WHERE id = ANY(:ids)"
).bindparams(bindparam("names", type_=ARRAY(String)), bindparam("ids", type_=ARRAY(Integer)))


def defer_for(image_ids: Iterable[int]) -> None:
    """Have the renditions of these images made, by a job deferred in the current transaction (it runs only
    if the caller commits)."""
    ids = sorted({int(i) for i in image_ids if i})
    if ids:
        jobs.defer(TASK, image_ids=ids)


def make(image_ids: list[int], *, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Make the missing renditions of these images; returns how many images got them."""
    wanted = db.session.execute(select(Image.id, Image.blobstorage_path).where(
        Image.id.in_(image_ids), not_(Image.renditions.contains(_ALL)), Image.status == "active")
        .order_by(Image.id)).all()  # never an image being deleted (app.services.deletion waits for runs before)
    db.session.rollback()  # a read only: hold no transaction while rendering
    if not wanted:
        return 0
    app, stopped = current_app._get_current_object(), []

    def one(row) -> int | None:
        if should_stop():
            stopped.append(row.id)
            return None
        with app.app_context():
            return row.id if _render_and_store(row.id, row.blobstorage_path) else None

    with ThreadPoolExecutor(min(RENDER_CONCURRENCY, len(wanted)), thread_name_prefix="render") as pool:
        made = [image_id for image_id in pool.map(one, wanted) if image_id is not None]
    if made:
        with unit_of_work():
            db.session.execute(_ADD_NAMES, {"names": _ALL, "ids": made})
    logger.info("renditions made", extra={"images": len(made), "asked": len(image_ids)})
    if stopped:
        raise WorkInterrupted("making renditions was stopped; the rest is made on retry")
    return len(made)


def _render_and_store(image_id: int, path: str) -> bool:
    state = app_state()
    settings, storage = state.settings, state.storage
    data = storage.read_image(path, settings.max_image_bytes)
    if data is None:
        logger.warning("image skipped: its blob is gone or too large", extra={"image_id": image_id})
        return False
    try:
        made = render.render(data, size=settings.thumbnail_size, max_pixels=settings.max_image_pixels)
    except render.Unrenderable as refused:
        logger.warning("image skipped: no renditions can be made of it",
                       extra={"image_id": image_id, "reason": str(refused)})
        return False
    for name, rendition in made.items():
        kind = render.KINDS[name]
        storage.put_rendition(path, name, kind.extension, rendition, content_type=kind.content_type)
    return True


def read_url(image: Image, rendition: str) -> SignedUrl:
    """A read SAS of the image's rendition; NotFound naming it while it is not made yet."""
    signed = url_if_made(image, rendition)
    if signed is None:
        raise NotFound(f"the {rendition} of image {image.id} is not made yet")
    return signed


def url_if_made(image: Image, rendition: str) -> SignedUrl | None:
    if rendition not in (image.renditions or ()):
        return None
    state, kind = app_state(), render.KINDS[rendition]
    return state.storage.rendition_url(image.blobstorage_path, rendition, kind.extension,
                                       timedelta(minutes=state.settings.image_read_token_minutes),
                                       content_type=kind.content_type)


def backfill(batch_size: int = 500) -> tuple[int, int]:
    """Defer jobs for every image that lacks a rendition, `batch_size` images a job, walking the ids in ranges
    (one committed transaction per job); returns (images, jobs)."""
    after, images, deferred = 0, 0, 0
    while True:
        with unit_of_work():
            ids = list(db.session.scalars(select(Image.id).where(
                Image.id > after, not_(Image.renditions.contains(_ALL))).order_by(Image.id).limit(batch_size)))
            if ids:
                defer_for(ids)
        if not ids:
            return images, deferred
        after, images, deferred = ids[-1], images + len(ids), deferred + 1
