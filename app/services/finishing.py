"""Finishing an image set, the dropbox's way into the ingest pipeline (app.ingest.pipeline): every file of its
upload area is copied server-side into the image container, read there once (MD5, format, size, EXIF: facts
about the bytes that are stored, never what the uploader claimed), judged by the set's rules, de-duplicated and
catalogued; then the upload area is deleted.

The uploader can write the upload area but not the image container, so checking the copy makes "what is
stored is what was checked" true by construction, even for a file rewritten while finishing runs.

Many workers share one set: `finish` lists the area page by page and records each page as a chunk (its
continuation token and last name; no worker ever holds every name of a set) with a `finish_chunk` job for it,
then works through the chunks itself, skipping those another worker holds. Whoever completes the last chunk
takes the final step (mark finished, delete the upload area). A report row per file is written in the same
transaction as its image: files that have one are skipped, so killed anywhere and run again, every file is
recorded exactly once. One bad file is rejected with its reason; it never fails the set.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from azure.core.exceptions import ResourceNotFoundError
from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from app import jobs
from app.errors import WorkInterrupted
from app.extensions import db
from app.ingest import pipeline
from app.ingest.pipeline import Outcome
from app.ingest.rules import Rules
from app.jobs.exclusive import try_exclusive
from app.models import FinishChunk, FinishReport, ImageSet
from app.services import audit, image_sets
from app.services.failures import record_failure
from app.services.image_facts import LARGE_HEAD_BYTES, MIME_TYPES, TAIL_BYTES
from app.state import app_state
from app.storage import BlobInfo
from app.unit_of_work import unit_of_work
from app.webhooks import service as webhooks

logger = logging.getLogger(__name__)

CHUNK_LOCK = "finish_chunk"


def finish(imageset_id: int, *, should_stop: Callable[[], bool] = lambda: False) -> None:
    """The set's first job: plan its chunks (deferring a job for each), then work through them alongside
    whichever workers take those jobs."""
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
    db.session.rollback()
    _plan(imageset_id, should_stop)
    chunks = list(db.session.scalars(select(FinishChunk.chunk).where(
        FinishChunk.imageset_id == imageset_id, FinishChunk.done.is_(False)).order_by(FinishChunk.chunk)))
    db.session.rollback()
    for chunk in chunks:
        with try_exclusive(chunk_lock(imageset_id), chunk) as mine:
            if mine:  # another worker holds it: its job will complete it
                _work_chunk(imageset_id, chunk, should_stop)
    _final_step_if_complete(imageset_id)


def finish_chunk(imageset_id: int, chunk: int, *, should_stop: Callable[[], bool] = lambda: False) -> None:
    """One chunk's job, run holding the chunk's lock (`chunk_lock`): complete what is left of it, and take the
    final step if it was the last."""
    _work_chunk(imageset_id, chunk, should_stop)
    _final_step_if_complete(imageset_id)


def chunk_lock(imageset_id: int) -> str:
    """The advisory lock's name for the set's chunks (its key is the chunk number)."""
    return f"{CHUNK_LOCK}:{imageset_id}"


def _plan(imageset_id: int, should_stop: Callable[[], bool]) -> None:
    """List the upload area page by page into chunk rows, each with its job, committed page by page; resumed
    from the last chunk recorded. The total is set when the listing is complete. Chunks recorded before (a
    retry after a failure) get their jobs again unless already done."""
    state = app_state()
    image_set = db.session.get(ImageSet, imageset_id)
    container, page_size = image_set.upload_container, state.settings.finish_chunk_size
    earlier = db.session.execute(select(FinishChunk.chunk, FinishChunk.continuation_token, FinishChunk.done)
                                 .where(FinishChunk.imageset_id == imageset_id).order_by(FinishChunk.chunk)).all()
    with unit_of_work():
        for chunk, _, done in earlier:
            if not done:
                _defer_chunk(imageset_id, chunk)
    if image_set.progress_total is not None and earlier:
        return
    last = earlier[-1] if earlier else None
    pages = state.storage.upload_area_pages(container, page_size=page_size, names_only=True,
                                            continuation_token=last.continuation_token if last else None)
    chunk = last.chunk if last else -1
    for token, blobs in pages:
        if last is not None and chunk == last.chunk and token == last.continuation_token:
            continue  # the page the last chunk already holds
        _stop_if_asked(should_stop, imageset_id)
        if not blobs:
            continue
        chunk += 1
        with unit_of_work():
            db.session.add(FinishChunk(imageset_id=imageset_id, chunk=chunk, continuation_token=token,
                                       last_name=blobs[-1].name, files=len(blobs)))
            _defer_chunk(imageset_id, chunk)
    with unit_of_work():  # the set's row first: a chunk completed meanwhile corrects its count under it
        db.session.execute(select(ImageSet.id).where(ImageSet.id == imageset_id).with_for_update(of=ImageSet))
        total = db.session.scalar(select(func.coalesce(func.sum(FinishChunk.files), 0))
                                  .where(FinishChunk.imageset_id == imageset_id))
        db.session.execute(update(ImageSet).where(ImageSet.id == imageset_id).values(progress_total=total))


def _defer_chunk(imageset_id: int, chunk: int) -> None:
    """A job for the chunk unless one is already waiting (the queueing lock), in a savepoint so a refusal
    leaves the transaction usable."""
    try:
        with db.session.begin_nested():
            jobs.defer("finish_chunk", queueing_lock=f"{CHUNK_LOCK}:{imageset_id}:{chunk}", imageset_id=imageset_id,
                       chunk=chunk)
    except jobs.AlreadyEnqueued:
        pass


def _work_chunk(imageset_id: int, chunk: int, should_stop: Callable[[], bool]) -> None:
    state = app_state()
    row = db.session.get(FinishChunk, (imageset_id, chunk))
    image_set = db.session.get(ImageSet, imageset_id)
    if row is None or row.done or image_set is None or image_set.status != "finishing":
        db.session.rollback()
        return
    rules = image_sets.rules(image_set)
    container, token, last_name = image_set.upload_container, row.continuation_token, row.last_name
    db.session.rollback()
    batch_size, files = state.settings.finish_batch_size, 0
    with ThreadPoolExecutor(state.settings.finish_concurrency, thread_name_prefix="finish") as pool:
        for blobs in _chunk_files(container, token, last_name, page_size=state.settings.finish_chunk_size):
            files += len(blobs)
            todo = _not_reported(imageset_id, blobs)
            for start in range(0, len(todo), batch_size):
                _stop_if_asked(should_stop, imageset_id)
                _process(image_set, rules, todo[start:start + batch_size], pool)
    with unit_of_work():  # the set's row first, as `_plan` takes it: the total moves by exactly what was found
        image_set = db.session.scalar(select(ImageSet).where(ImageSet.id == imageset_id).with_for_update(of=ImageSet))
        row = db.session.get(FinishChunk, (imageset_id, chunk))
        if image_set.progress_total is not None:
            image_set.progress_total += files - row.files
        row.files, row.done = files, True
    logger.info("finishing chunk done", extra={"imageset_id": imageset_id, "chunk": chunk, "files": files})


def _chunk_files(container: str, token: str | None, last_name: str, *, page_size: int):
    """The chunk's files, page by page: from its token up to its last name, in one listing request unless a
    file added to the area since the chunk was recorded pushed names onto the next page (followed there)."""
    for _, blobs in app_state().storage.upload_area_pages(container, page_size=page_size, continuation_token=token):
        within = [blob for blob in blobs if blob.name <= last_name]
        if within:
            yield within
        if not blobs or blobs[-1].name >= last_name:  # reached the chunk's last name: the rest is the next's
            return


def _not_reported(imageset_id: int, blobs: list[BlobInfo]) -> list[BlobInfo]:
    try:
        done = set(db.session.scalars(select(FinishReport.name).where(
            FinishReport.imageset_id == imageset_id, FinishReport.source == "dropbox",
            FinishReport.name.in_([blob.name for blob in blobs]))))
    finally:
        db.session.rollback()
    return [blob for blob in blobs if blob.name not in done]


def _final_step_if_complete(imageset_id: int) -> None:
    """When the listing is complete and every chunk done: finished, and the upload area deleted. Checked after
    each chunk's commit, so the worker completing the last chunk always sees it; doing it twice is harmless."""
    with unit_of_work():
        image_set = db.session.scalar(select(ImageSet).where(ImageSet.id == imageset_id)
                                      .with_for_update(of=ImageSet))
        if image_set is None or image_set.status != "finishing" or image_set.progress_total is None:
            return
        open_chunks = db.session.scalar(select(func.count()).select_from(FinishChunk).where(
            FinishChunk.imageset_id == imageset_id, FinishChunk.done.is_(False)))
        if open_chunks:
            return
        audit.record("status", "image_set", imageset_id, {"status": "finishing"}, {"status": "finished"})
        image_set.status, image_set.date_finished = "finished", datetime.now(timezone.utc)
        container = image_set.upload_container
        progress = image_sets.progress(image_set)
        webhooks.emit("image_set.finished", {"imageset_id": imageset_id, "title": image_set.title,
                                             "status": "finished", "progress": progress})
    app_state().storage.delete_upload_area(container)
    logger.info("image set finished", extra={"imageset_id": imageset_id, **progress})


def _stop_if_asked(should_stop: Callable[[], bool], imageset_id: int) -> None:
    if should_stop():
        logger.warning("finishing stopped between batches; it resumes on retry", extra={"imageset_id": imageset_id})
        raise WorkInterrupted(f"finishing image set {imageset_id} was stopped")


def mark_failed(imageset_id: int, exc: BaseException, *, detail: str | None = None) -> None:
    """The job gave up: show the error on the set (`detail`, else the error's summary); PUT new_status=finished
    again retries."""
    record_failure(ImageSet, imageset_id, exc, applies=lambda image_set: image_set.status == "finishing",
                   audited_as="image_set",
                   detail=detail, limit=500, on_failed=lambda image_set: webhooks.emit("image_set.failed", {
                       "imageset_id": imageset_id, "title": image_set.title, "status": "failed",
                       "error": image_set.error}))


def _examine(blob: BlobInfo, container: str, folder: str, rules: Rules) -> Outcome:
    """Copy the file into the image container, then read the copy once: whatever the outcome, every fact
    comes from the bytes that are stored."""
    state = app_state()
    outcome = Outcome(blob.name)
    outcome.reason = pipeline.unsafe_name(blob.name) or pipeline.size_violation(blob.size, rules)
    if outcome.reason:
        outcome.size = blob.size
        return outcome
    outcome.path = f"{folder}/{blob.name}"
    try:
        state.storage.copy_into_images(container, blob.name, outcome.path)
        stored = state.storage.read_image_through(outcome.path, head_limit=LARGE_HEAD_BYTES, tail_size=TAIL_BYTES)
    except ResourceNotFoundError:
        outcome.failure = "the file disappeared from the upload area while it was being finished"
        return outcome
    pipeline.judge(outcome, pipeline.Bytes(stored.md5, stored.size, stored.head, stored.tail), rules,
                   max_pixels=state.settings.max_image_pixels)
    if outcome.candidate:  # served as what it is: the detected format's type and the computed MD5
        state.storage.describe_image(outcome.path, stored, content_type=MIME_TYPES.get(
            outcome.facts.filetype, "application/octet-stream"))
    return outcome


def _process(image_set: ImageSet, rules: Rules, batch: list[BlobInfo], pool: ThreadPoolExecutor) -> None:
    """One batch: copies and reads in parallel, then its rows in one transaction. Should the rows not go
    in as a batch (a value the database refuses), each file is recorded alone and the one that cannot be
    is rejected with why; copies that were not catalogued are removed, whatever happened."""
    app = current_app._get_current_object()
    container, folder, imageset_id = image_set.upload_container, image_set.blobstorage_path, image_set.id

    def in_app(blob):
        with app.app_context():
            return _examine(blob, container, folder, rules)

    outcomes = list(pool.map(in_app, batch))
    try:
        pipeline.record_batch(outcomes, lambda some: _record(imageset_id, some), context={"imageset_id": imageset_id})
    finally:  # rejected, duplicate, or never recorded: no copy stays without its catalogue row
        pipeline.remove_uncatalogued(outcomes, pool)


def _record(imageset_id: int, outcomes: list[Outcome]) -> None:
    pipeline.record(imageset_id, outcomes, source="dropbox", report=lambda o: report_rows(imageset_id, o, "dropbox"))


def report_rows(imageset_id: int, outcomes: list[Outcome], source: str) -> list[Outcome]:
    """The set's report rows (a dropbox file's row is its resume marker: one per name), and the set's progress
    counters moved by the rows actually written."""
    if not outcomes:
        return []
    insert = pg_insert(FinishReport).values([{
        "imageset_id": imageset_id, "name": o.name, "source": source, "filesize": o.size, "image_id": o.image_id,
        "outcome": o.kind, "reason": o.reason or o.failure,
    } for o in outcomes])
    if source != "dropbox":  # a direct upload's name may repeat: every file is a row
        db.session.execute(insert)
        return outcomes
    written_names = set(db.session.scalars(insert.on_conflict_do_nothing(
        index_elements=["imageset_id", "name"], index_where=FinishReport.source == "dropbox",
    ).returning(FinishReport.name)))
    written = [o for o in outcomes if o.name in written_names]
    pipeline.move_counters(ImageSet, imageset_id, written, {
        "accepted": ImageSet.progress_accepted, "duplicate": ImageSet.progress_duplicates,
        "rejected": ImageSet.progress_rejected, "failed": ImageSet.progress_failed})
    return written
