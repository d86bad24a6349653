"""Finishing an image set: every file of its upload area copied server-side into the image container, read
there once (MD5, format, size, EXIF: facts about the bytes that are stored, never what the uploader
claimed), de-duplicated by MD5 and catalogued; then the upload area is deleted.

The uploader can write the upload area but not the image container, so checking the copy makes "what is
stored is what was checked" true by construction, even for a file rewritten while finishing runs.

Idempotent and resumable: a report row per file is written in the same transaction as its image, and
files that already have one are skipped. Killed anywhere and run again, every file ends up recorded
exactly once. Two runs never work on one set at once (the task holds app.jobs.exclusive's lock), and a
run asked to stop gives up between batches, leaving the rest to its retry. One bad file is rejected with
its reason; it never fails the set. Per batch: copy and read (parallel) -> decide duplicates (one query) ->
one transaction of bulk inserts; copies that end up rejected or duplicate are deleted.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from azure.core.exceptions import ResourceNotFoundError
from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from app.errors import WorkInterrupted, database_unavailable
from app.extensions import db
from app.models import FinishReport, Image, ImageSet, ImageSetMember
from app.services import image_sets, renditions
from app.services.failures import record_failure, shown_to_users, summary
from app.services.image_facts import LARGE_HEAD_BYTES, MIME_TYPES, TAIL_BYTES, Facts, Rejected, read_facts
from app.state import app_state
from app.storage import BlobInfo
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

# A name becomes a path in the image container: no empty, "." or ".." segments, no control characters.
_UNSAFE_NAME = re.compile(r"(^|/)\.{1,2}(/|$)|//|^/|\\|[\x00-\x1f\x7f]")


@dataclass
class Outcome:
    blob: BlobInfo
    path: str | None = None  # where its copy is, once copied
    facts: Facts | None = None
    md5: str | None = None
    size: int | None = None  # of the stored copy
    reason: str | None = None  # set when rejected
    image_id: int | None = None
    duplicate: bool = False

    @property
    def kind(self) -> str:
        return "rejected" if self.reason else "duplicate" if self.duplicate else "accepted"


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
                _process(image_set, batch, pool)
                batch = []
        _stop_if_asked(should_stop, imageset_id)
        if batch:
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


def mark_failed(imageset_id: int, exc: BaseException, *, detail: str | None = None) -> None:
    """The job gave up: show the error on the set (`detail`, else the error's summary); PUT new_status=finished
    again retries."""
    record_failure(ImageSet, imageset_id, exc, applies=lambda image_set: image_set.status == "finishing",
                   detail=detail, limit=500)


def _examine(blob: BlobInfo, container: str, folder: str) -> Outcome:
    """Copy the file into the image container, then read the copy once: whatever the outcome, every fact
    comes from the bytes that are stored. A rejected file's copy is removed again."""
    state = app_state()
    settings, storage = state.settings, state.storage
    if _UNSAFE_NAME.search(blob.name) or len(blob.name) > 1024:
        return Outcome(blob, reason="unsafe file name: empty, '.' or '..' path segments, a leading slash, a "
                                    "backslash or control characters")
    if blob.size == 0:
        return Outcome(blob, reason="empty file")
    if blob.size > settings.max_image_bytes:
        return Outcome(blob, reason=f"too large: {blob.size:,} bytes (limit {settings.max_image_bytes:,})")
    outcome = Outcome(blob, path=f"{folder}/{blob.name}")
    try:
        storage.copy_into_images(container, blob.name, outcome.path)
        stored = storage.read_image_through(outcome.path, head_limit=LARGE_HEAD_BYTES, tail_size=TAIL_BYTES)
    except ResourceNotFoundError:
        outcome.reason = "the file disappeared from the upload area while it was being finished"
        return outcome
    outcome.md5, outcome.size = stored.md5, stored.size
    if stored.size == 0 or stored.size > settings.max_image_bytes:  # rewritten after it was listed
        outcome.reason = "empty file" if stored.size == 0 else (
            f"too large: {stored.size:,} bytes (limit {settings.max_image_bytes:,})")
        return outcome
    try:
        outcome.facts = read_facts(stored.head, stored.tail, stored.size, allowed_formats=settings.image_formats,
                                   max_pixels=settings.max_image_pixels)
    except Rejected as rejected:
        outcome.reason = str(rejected)
        return outcome
    except Exception as exc:  # a reader bug on a hostile file rejects that file, never the set
        logger.warning("image could not be read", extra={"name": blob.name, "reason": summary(exc)})
        outcome.reason = f"unreadable image ({type(exc).__name__})"
        return outcome
    # Served as what it is: the detected format's type and the computed MD5, never the uploader's headers.
    storage.describe_image(outcome.path, stored,
                           content_type=MIME_TYPES.get(outcome.facts.filetype, "application/octet-stream"))
    return outcome


def _process(image_set: ImageSet, batch: list[BlobInfo], pool: ThreadPoolExecutor) -> None:
    """One batch: copies and reads in parallel, then its rows in one transaction. Should the rows not go
    in as a batch (a value the database refuses), each file is recorded alone and the one that cannot be
    is rejected with why; copies that were not catalogued are removed, whatever happened."""
    app = current_app._get_current_object()
    storage = app_state(app).storage
    container, folder, imageset_id = image_set.upload_container, image_set.blobstorage_path, image_set.id

    def in_app(fn):
        def run(*args):
            with app.app_context():
                return fn(*args)
        return run

    outcomes = list(pool.map(in_app(lambda blob: _examine(blob, container, folder)), batch))
    try:
        try:
            with unit_of_work():
                _record(imageset_id, outcomes)
        except DBAPIError as exc:
            if database_unavailable(exc):
                raise
            logger.warning("a batch was refused by the database; recording its files one by one",
                           extra={"imageset_id": imageset_id, "reason": summary(exc)})
            for outcome in outcomes:
                _record_alone(imageset_id, outcome)
    finally:  # rejected, duplicate, or never recorded: no copy stays without its catalogue row
        try:
            _remove_uncatalogued(storage, [o.path for o in outcomes if o.path], pool)
        except Exception as exc:  # the database or storage is down: the retry copies these paths again
            logger.warning("could not remove this batch's uncatalogued copies yet", extra={"reason": summary(exc)})


def _record_alone(imageset_id: int, outcome: Outcome) -> None:
    try:
        with unit_of_work():
            _record(imageset_id, [outcome])
    except DBAPIError as exc:
        if database_unavailable(exc):
            raise
        outcome.facts, outcome.duplicate, outcome.image_id = None, False, None
        logger.warning("a file could not be catalogued", extra={"name": outcome.blob.name, "reason": summary(exc)})
        outcome.reason = f"could not be catalogued: {shown_to_users(exc)}"  # the database's words stay in the log
        with unit_of_work():
            _record(imageset_id, [outcome])


def _record(imageset_id: int, outcomes: list[Outcome]) -> None:
    """Duplicates decided in one query, new images inserted, memberships and report rows written."""
    candidates = [o for o in outcomes if o.facts and not o.reason]
    for outcome in candidates:
        outcome.duplicate, outcome.image_id = False, None
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
    if new:
        inserted = dict(db.session.execute(pg_insert(Image).values([_image_row(o, imageset_id) for o in new])
                                           .on_conflict_do_nothing().returning(Image.md5, Image.id)).all())
        lost = [o for o in new if o.md5 not in inserted]  # another set finished the same bytes meanwhile
        if lost:
            winners = dict(db.session.execute(select(Image.md5, Image.id).where(
                Image.md5.in_([o.md5 for o in lost]))).all())
            for outcome in lost:
                outcome.duplicate, outcome.image_id = True, winners.get(outcome.md5)
        for outcome in new:
            if not outcome.duplicate:
                outcome.image_id = inserted[outcome.md5]
        renditions.defer_for(inserted.values())  # made by a job once this batch commits
    for outcome in candidates:
        if outcome.duplicate and outcome.image_id is None:
            outcome.image_id = first_of[outcome.md5].image_id

    members = {o.image_id for o in candidates if o.image_id}
    if members:
        db.session.execute(pg_insert(ImageSetMember).values(
            [{"imageset_id": imageset_id, "image_id": image_id} for image_id in members]).on_conflict_do_nothing())
    db.session.execute(pg_insert(FinishReport).values([{
        "imageset_id": imageset_id, "name": o.blob.name, "filesize": o.size if o.size is not None else o.blob.size,
        "image_id": o.image_id, "outcome": o.kind, "reason": o.reason,
    } for o in outcomes]).on_conflict_do_nothing())
    image_sets.refresh_progress(imageset_id)


def _remove_uncatalogued(storage, paths: list[str], pool: ThreadPoolExecutor) -> None:
    """Delete the copies no image row names. A copy the catalogue points at belongs to whoever recorded it
    (this run, or one before it), never to be deleted here."""
    if not paths:
        return
    try:
        kept = set(db.session.scalars(select(Image.blobstorage_path).where(Image.blobstorage_path.in_(paths))))
    finally:
        db.session.rollback()  # a read only: leave no transaction open
    list(pool.map(storage.delete_image, [path for path in paths if path not in kept]))


def _image_row(outcome: Outcome, imageset_id: int) -> dict:
    facts = outcome.facts
    return {
        "imageset_id": imageset_id, "blobstorage_path": outcome.path, "md5": outcome.md5,
        "filetype": facts.filetype, "filesize": outcome.size, "width": facts.width, "height": facts.height,
        "date_taken": facts.date_taken, "lat": facts.lat, "lon": facts.lon, "camera_make": facts.camera_make,
        "camera_model": facts.camera_model, "exif": facts.exif or None,
    }
