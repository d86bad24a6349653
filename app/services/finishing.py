"""Finishing an image set: every blob of its upload area checked, de-duplicated by MD5, catalogued and
copied server-side into the image container; then the upload area is deleted.

Idempotent and resumable: a report row per file is written in the same transaction as its image, and
files that already have one are skipped. Killed anywhere and run again, every file ends up recorded
exactly once. Two runs never work on one set at once (the task holds app.jobs.exclusive's lock), and a
run asked to stop gives up between batches, leaving the rest to its retry. Per batch: read facts (parallel ranged reads) -> decide duplicates (one query) -> copy new
files (parallel, server-side) -> one transaction of bulk inserts.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app.errors import WorkInterrupted
from app.extensions import db
from app.models import FinishReport, Image, ImageSet, ImageSetMember
from app.services import image_sets
from app.services.failures import record_failure
from app.services.image_facts import (HEAD_BYTES, LARGE_HEAD_BYTES, TAIL_BYTES, Facts, Rejected, needs_larger_head,
                                      read_facts)
from app.state import app_state
from app.storage import BlobInfo
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    blob: BlobInfo
    facts: Facts | None = None
    md5: str | None = None
    reason: str | None = None  # set when rejected
    image_id: int | None = None
    duplicate: bool = False


def finish(imageset_id: int, *, should_stop: Callable[[], bool] = lambda: False) -> None:
    state = app_state()
    image_set = db.session.get(ImageSet, imageset_id)
    if image_set is None:
        return
    if image_set.status == "finished":  # a re-run after the last step: only the clean-up may be missing
        state.storage.delete_upload_area(image_set.upload_container)
        return
    if image_set.status != "finishing":
        logger.info("image set is not finishing; nothing to do", extra={"imageset_id": imageset_id})
        return
    container, settings = image_set.upload_container, state.settings

    with unit_of_work():
        image_set.progress_total = state.storage.count_upload_area(container)
    done = set(db.session.scalars(select(FinishReport.name).where(FinishReport.imageset_id == imageset_id)))

    with ThreadPoolExecutor(settings.finish_concurrency, thread_name_prefix="finish") as pool:
        batch: list[BlobInfo] = []
        for blob in state.storage.list_upload_area(container):
            if blob.name in done:
                continue
            batch.append(blob)
            if len(batch) >= settings.finish_batch_size:
                _stop_if_asked(should_stop, imageset_id)
                with unit_of_work():  # one batch, one transaction: its images, report rows and progress
                    _process(image_set, batch, pool)
                batch = []
        _stop_if_asked(should_stop, imageset_id)
        if batch:
            with unit_of_work():
                _process(image_set, batch, pool)

    with unit_of_work():
        image_set = db.session.get(ImageSet, imageset_id)
        image_set.status, image_set.date_finished = "finished", datetime.now(timezone.utc)
    state.storage.delete_upload_area(container)
    logger.info("image set finished", extra={"imageset_id": imageset_id, **image_sets.progress(image_set)})


def _stop_if_asked(should_stop: Callable[[], bool], imageset_id: int) -> None:
    if should_stop():
        logger.warning("finishing stopped between batches; it resumes on retry", extra={"imageset_id": imageset_id})
        raise WorkInterrupted(f"finishing image set {imageset_id} was stopped")


def mark_failed(imageset_id: int, exc: BaseException) -> None:
    """The job gave up: show the error on the set; PUT new_status=finished again retries."""
    record_failure(ImageSet, imageset_id, exc, applies=lambda image_set: image_set.status == "finishing", limit=500)


def _examine(blob: BlobInfo, container: str) -> Outcome:
    """Head and tail bytes only; the MD5 from the stored Content-MD5, or one streamed read when absent."""
    state = app_state()
    settings, storage = state.settings, state.storage
    if blob.size == 0:
        return Outcome(blob, reason="empty file")
    if blob.size > settings.max_image_bytes:
        return Outcome(blob, reason=f"too large: {blob.size:,} bytes (limit {settings.max_image_bytes:,})")
    head = storage.read_range(container, blob.name, 0, min(blob.size, HEAD_BYTES))
    if needs_larger_head(head, blob.size):
        head = storage.read_range(container, blob.name, 0, min(blob.size, LARGE_HEAD_BYTES))
    tail = head[-TAIL_BYTES:] if blob.size <= len(head) else storage.read_range(
        container, blob.name, blob.size - TAIL_BYTES, TAIL_BYTES)
    try:
        facts = read_facts(head, tail, blob.size, allowed_formats=settings.image_formats,
                        max_pixels=settings.max_image_pixels)
    except Rejected as rejected:
        return Outcome(blob, reason=str(rejected))
    md5 = blob.md5 or storage.stream_md5(container, blob.name)
    return Outcome(blob, facts=facts, md5=md5)


def _process(image_set: ImageSet, batch: list[BlobInfo], pool: ThreadPoolExecutor) -> None:
    app = current_app._get_current_object()
    storage = app_state(app).storage
    container, folder, imageset_id = image_set.upload_container, image_set.blobstorage_path, image_set.id

    def in_app(fn):
        def run(*args):
            with app.app_context():
                return fn(*args)
        return run

    outcomes = list(pool.map(in_app(lambda blob: _examine(blob, container)), batch))
    candidates = [o for o in outcomes if o.facts]

    # Duplicates: already in the store, or an earlier file of this batch with the same bytes.
    existing = dict(db.session.execute(select(Image.md5, Image.id).where(
        Image.md5.in_([o.md5 for o in candidates]))).all()) if candidates else {}
    first_of = {}
    for outcome in candidates:
        if outcome.md5 in existing:
            outcome.duplicate, outcome.image_id = True, existing[outcome.md5]
        elif outcome.md5 in first_of:
            outcome.duplicate = True
        else:
            first_of[outcome.md5] = outcome
    new = list(first_of.values())
    list(pool.map(lambda o: storage.copy_into_images(container, o.blob.name, f"{folder}/{o.blob.name}"), new))

    if new:
        inserted = dict(db.session.execute(pg_insert(Image).values([_image_row(o, imageset_id, folder) for o in new])
                                           .on_conflict_do_nothing().returning(Image.md5, Image.id)).all())
        lost = [o for o in new if o.md5 not in inserted]  # another set finished the same bytes meanwhile
        if lost:
            winners = dict(db.session.execute(select(Image.md5, Image.id).where(
                Image.md5.in_([o.md5 for o in lost]))).all())
            for outcome in lost:
                _delete_unless_catalogued(storage, f"{folder}/{outcome.blob.name}")
                outcome.duplicate, outcome.image_id = True, winners.get(outcome.md5)
        for outcome in new:
            if not outcome.duplicate:
                outcome.image_id = inserted[outcome.md5]
    for outcome in candidates:
        if outcome.duplicate and outcome.image_id is None:
            outcome.image_id = first_of[outcome.md5].image_id

    members = {o.image_id for o in candidates if o.image_id}
    if members:
        db.session.execute(pg_insert(ImageSetMember).values(
            [{"imageset_id": imageset_id, "image_id": image_id} for image_id in members]).on_conflict_do_nothing())
    db.session.execute(pg_insert(FinishReport).values([{
        "imageset_id": imageset_id, "name": o.blob.name, "filesize": o.blob.size, "image_id": o.image_id,
        "outcome": "rejected" if o.reason else "duplicate" if o.duplicate else "accepted", "reason": o.reason,
    } for o in outcomes]).on_conflict_do_nothing())
    image_sets.refresh_progress(imageset_id)


def _delete_unless_catalogued(storage, path: str) -> None:
    """Our copy lost the insert race to the same bytes elsewhere. Delete it only while no image row names the
    path: a copy the catalogue points at belongs to whoever recorded it, never to this run."""
    if db.session.scalar(select(Image.id).where(Image.blobstorage_path == path).limit(1)) is None:
        storage.delete_image(path)
    else:
        logger.warning("kept a copy that a catalogued image points at", extra={"path": path})


def _image_row(outcome: Outcome, imageset_id: int, folder: str) -> dict:
    facts = outcome.facts
    return {
        "imageset_id": imageset_id, "blobstorage_path": f"{folder}/{outcome.blob.name}", "md5": outcome.md5,
        "filetype": facts.filetype, "filesize": outcome.blob.size, "width": facts.width, "height": facts.height,
        "date_taken": facts.date_taken, "lat": facts.lat, "lon": facts.lon, "camera_make": facts.camera_make,
        "camera_model": facts.camera_model, "exif": facts.exif or None,
    }
