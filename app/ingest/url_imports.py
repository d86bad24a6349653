"""URL import, the third way into the ingest pipeline (app.ingest.pipeline): a list of up to MAX_URLS URLs is
stored as one row per URL (`url_import_items`, keyed by its position in the list) and split into chunks of
URL_IMPORT_CHUNK_SIZE positions, one `import_urls_chunk` job each, deferred in the request's transaction. Any
worker takes any chunk: it fetches the chunk's URLs that have no outcome yet (app.ingest.fetch), puts each body
through `take_local` and records a batch at a time in one transaction. A row's outcome is written only
while it is still null, and the import's counters move by the rows actually written, so a chunk killed
anywhere and run again fetches what is left and records every URL exactly once.

Status: queued -> running (a chunk started) -> finished (the chunk that records the last outcome says so,
checked after its own commit) or failed (a chunk's last attempt failed; `error` says why). A failed import
keeps its finished outcomes; the URLs it did not get to stay pending (the report's `pending` filter lists
them). Retrying: an admin retries the failed chunk job (POST /jobs/{job_id}/retry), which completes
the import and marks it finished, or the list (or only its pending URLs) is POSTed again as a new import,
whose images already catalogued are duplicates, never stored twice. While an import is queued or running
its set cannot be finished (app.services.image_sets.change_status), and chunks work only while the set is
`created`.
"""
from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select, text

from app import jobs
from app.auth.policy import Caller
from app.errors import Conflict, NotFound, PayloadTooLarge, Unprocessable, WorkInterrupted
from app.extensions import db
from app.ingest import pipeline
from app.ingest.fetch import Fetched, fetch_many, options_from
from app.ingest.pipeline import Outcome
from app.models import ImageSet, UrlImport, UrlImportItem
from app.services import image_sets
from app.services.failures import record_failure
from app.services.lookup import get_or_404
from app.services.pagination import Page
from app.state import app_state
from app.unit_of_work import unit_of_work
from app.webhooks import service as webhooks

logger = logging.getLogger(__name__)

MAX_URLS = 100_000
MAX_URL_CHARS = 2048
CHUNK_LOCK = "url_import"
STORE_THREADS = 8  # fetched bodies read, judged and stored at once, per chunk job
_INSERT_ROWS = 10_000  # item rows per INSERT statement
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- the API's use cases ------------------------------------------------------------------------------

def parse_urls(body) -> list[str]:
    """The URLs of a JSON body (`{"urls": [...]}`, each kept at its place) or of a text/plain one (one per line;
    blank lines and lines starting with # skipped): each stripped, at most MAX_URL_CHARS characters, no control
    characters, at most MAX_URLS of them. Errors name the item (`urls[3]`) or the line (`line 4`)."""
    if isinstance(body, dict):
        listed = body.get("urls")
        if not isinstance(listed, list) or not all(isinstance(url, str) for url in listed):
            raise Unprocessable("urls must be a list of strings", field="urls")
        field = "urls"
        named = [(f"urls[{n}]", url.strip()) for n, url in enumerate(listed)]
        blank = next((name for name, url in named if not url), None)
        if blank:
            raise Unprocessable(f"{blank} is blank", field=field)
    else:
        field = "body"
        if isinstance(body, (bytes, bytearray)):
            try:
                body = bytes(body).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise Unprocessable(f"the body is not UTF-8 text (byte {exc.start})", field=field) from None
        if not isinstance(body, str):
            raise Unprocessable("send {\"urls\": [...]} as JSON, or text/plain with one URL per line", field=field)
        named = [(f"line {n}", line.strip()) for n, line in enumerate(body.split("\n"), start=1)]
        named = [(name, url) for name, url in named if url and not url.startswith("#")]
    if not named:
        raise Unprocessable("the body lists no URLs", field=field)
    if len(named) > MAX_URLS:
        raise PayloadTooLarge(f"{len(named):,} URLs: at most {MAX_URLS:,} in one import", field=field)
    for name, url in named:
        if len(url) > MAX_URL_CHARS:
            raise Unprocessable(f"{name} is longer than {MAX_URL_CHARS} characters", field=field)
        if _CONTROL.search(url):
            raise Unprocessable(f"{name} holds a control character", field=field)
    return [url for _, url in named]


def create(imageset_id: int, body, *, created_by: Caller) -> UrlImport:
    """The import, queued, with its rows and its chunks' jobs, all in the caller's transaction. The set is
    locked, so finishing it (which refuses while an import is queued) and importing into it never cross."""
    image_set = image_sets.get(imageset_id, for_update=True)
    if image_set.status != "created":
        raise Conflict(f"image set {imageset_id} is {image_set.status}: URLs are imported only while it is created",
                       current_status=image_set.status)
    urls = parse_urls(body)
    url_import = UrlImport(imageset_id=imageset_id, status="queued", total=len(urls), accepted=0, duplicates=0,
                           rejected=0, failed=0, created_by_id=created_by.principal_id)
    db.session.add(url_import)
    db.session.flush()
    for start in range(0, len(urls), _INSERT_ROWS):
        db.session.execute(text("""
            INSERT INTO url_import_items (import_id, position, url)
            SELECT :import_id, :start + ord - 1, url
            FROM unnest(CAST(:urls AS text[])) WITH ORDINALITY AS t(url, ord)"""),
            {"import_id": url_import.id, "start": start, "urls": urls[start:start + _INSERT_ROWS]})
    size = app_state().settings.url_import_chunk_size
    for first in range(0, len(urls), size):
        jobs.defer("import_urls_chunk", import_id=url_import.id, first=first, last=min(first + size, len(urls)) - 1)
    logger.info("URL import queued", extra={"import_id": url_import.id, "imageset_id": imageset_id,
                                            "urls": len(urls)})
    return url_import


def get(import_id: int) -> UrlImport:
    return get_or_404(UrlImport, import_id, "import")


def list_for_set(imageset_id: int, *, page: int, per_page: int) -> Page:
    image_sets.get(imageset_id)
    total = db.session.scalar(select(func.count()).select_from(UrlImport)
                              .where(UrlImport.imageset_id == imageset_id))
    _check_page(page, per_page, total)
    rows = db.session.scalars(select(UrlImport).where(UrlImport.imageset_id == imageset_id)
                              .order_by(UrlImport.id.desc()).limit(per_page).offset((page - 1) * per_page)).all()
    return Page(list(rows), page, per_page, total)


def report(import_id: int, *, page: int, per_page: int, outcome: str | None = None) -> Page:
    """A page of the import's URLs in list order. Unfiltered, the page is a range of positions (the primary
    key); `pending` walks the partial index of rows without an outcome; an outcome walks the import's rows in
    order. The total comes from the import's counters, which move with the rows in one transaction."""
    url_import = get(import_id)
    counts = progress(url_import)
    total = {None: counts["total"], "pending": counts["total"] - counts["done"], "accepted": counts["accepted"],
             "duplicate": counts["duplicates"], "rejected": counts["rejected"], "failed": counts["failed"]}[outcome]
    _check_page(page, per_page, total)
    first = (page - 1) * per_page
    query = select(UrlImportItem).where(UrlImportItem.import_id == import_id).order_by(UrlImportItem.position)
    if outcome is None:
        query = query.where(UrlImportItem.position >= first, UrlImportItem.position < first + per_page)
    else:
        query = query.where(UrlImportItem.outcome.is_(None) if outcome == "pending"
                            else UrlImportItem.outcome == outcome).limit(per_page).offset(first)
    return Page(list(db.session.scalars(query)), page, per_page, total)


def _check_page(page: int, per_page: int, total: int) -> None:
    last = max(1, -(-total // per_page))
    if page > last:  # as app.services.pagination: clients page until a 404
        raise NotFound(f"page {page} is past the last page ({last})")


def progress(url_import: UrlImport) -> dict:
    done = url_import.accepted + url_import.duplicates + url_import.rejected + url_import.failed
    return {"total": url_import.total, "done": done, "accepted": url_import.accepted,
            "duplicates": url_import.duplicates, "rejected": url_import.rejected, "failed": url_import.failed}


# --- the chunk jobs -------------------------------------------------------------------------------------

def chunk_lock(import_id: int) -> str:
    """The advisory lock's name for the import's chunks (its key is the chunk's first position)."""
    return f"{CHUNK_LOCK}:{import_id}"


def run_chunk(import_id: int, first: int, last: int, *, should_stop: Callable[[], bool] = lambda: False) -> None:
    """Fetch and record the URLs at positions first..last that have no outcome yet; then, if no URL of the
    import is left, mark it finished. Run holding the chunk's lock (`chunk_lock`, key `first`)."""
    image_set = _start(import_id)
    if image_set is None:
        return
    state = app_state()
    rules = image_sets.rules(image_set)
    imageset_id, folder = image_set.id, f"{image_set.blobstorage_path}/url"
    pending = list(db.session.execute(select(UrlImportItem.position, UrlImportItem.url).where(
        UrlImportItem.import_id == import_id, UrlImportItem.position.between(first, last),
        UrlImportItem.outcome.is_(None)).order_by(UrlImportItem.position)).tuples())
    db.session.rollback()
    if pending:
        _stop_if_asked(should_stop, import_id)
        batch_size = state.settings.url_import_batch_size
        with tempfile.TemporaryDirectory(prefix="url-import-") as scratch, \
                ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="url-import") as pool:
            # fetch_many keeps fetching (up to twice its concurrency ahead) while a batch is judged and stored
            for batch in _batches(fetch_many(pending, options_from(state.settings), Path(scratch),
                                             should_stop=should_stop), batch_size):
                _process(import_id, imageset_id, rules, folder, batch, pool)
        _stop_if_asked(should_stop, import_id)  # fetching stopped early: what is left is fetched on retry
    _finish_if_complete(import_id)


def _start(import_id: int) -> ImageSet | None:
    """queued -> running; the set to import into, or None when there is nothing to do (the import is gone
    or finished, or its set is no longer open)."""
    with unit_of_work():
        url_import = db.session.scalar(select(UrlImport).where(UrlImport.id == import_id)
                                       .with_for_update(of=UrlImport))
        if url_import is None or url_import.status == "finished":
            return None
        image_set = db.session.get(ImageSet, url_import.imageset_id)
        if image_set.status != "created":
            logger.warning("the import's image set is no longer open; its chunk is skipped",
                           extra={"import_id": import_id, "imageset_id": image_set.id, "status": image_set.status})
            return None
        if url_import.status == "queued":
            url_import.status = "running"
        db.session.expunge(image_set)
    return image_set


def _batches(results: Iterator[tuple[int, Fetched]], size: int) -> Iterator[list[tuple[int, Fetched]]]:
    batch = []
    for result in results:
        batch.append(result)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _outcome(fetched: Fetched) -> Outcome:
    if fetched.outcome == "failed":
        return Outcome(fetched.url, failure=fetched.reason)
    if fetched.outcome == "rejected":
        return Outcome(fetched.url, reason=fetched.reason)
    return Outcome(fetched.url)


def _process(import_id: int, imageset_id: int, rules, folder: str, batch: list[tuple[int, Fetched]],
             pool: ThreadPoolExecutor) -> None:
    """One batch: the fetched bodies judged and stored in parallel (take_local), their temp files deleted,
    then their outcomes recorded in one transaction (pipeline.record_batch). Stored copies that were not
    catalogued are removed, whatever happened."""
    app = current_app._get_current_object()
    max_pixels = app_state(app).settings.max_image_pixels
    outcomes = [_outcome(fetched) for _, fetched in batch]
    place = {id(outcome): (position, fetched.http_status) for outcome, (position, fetched) in zip(outcomes, batch)}
    try:  # one look-up for the batch, by the MD5 each body was fetched with (take_local reads the same bytes)
        known = pipeline.known_images(fetched.md5 for _, fetched in batch if fetched.md5)
    finally:
        db.session.rollback()

    def take(item: tuple[Outcome, Fetched]) -> None:
        outcome, fetched = item
        try:
            if fetched.outcome is None and fetched.path is not None:
                with app.app_context(), fetched.path.open("rb") as stream:
                    pipeline.take_local(outcome, stream, rules, folder=folder, max_pixels=max_pixels, known=known)
        finally:
            if fetched.path is not None:
                fetched.path.unlink(missing_ok=True)

    try:
        list(pool.map(take, [(outcome, fetched) for outcome, (_, fetched) in zip(outcomes, batch)]))
        pipeline.record_batch(outcomes, lambda some: pipeline.record(
            imageset_id, some, source="url", report=lambda written: _report(import_id, written, place)),
            context={"import_id": import_id})
    finally:
        pipeline.remove_uncatalogued(outcomes, pool)


def _report(import_id: int, outcomes: list[Outcome], place: dict[int, tuple[int, int | None]]) -> list[Outcome]:
    """Each outcome on its item's row, only where the row has none yet; the import's counters moved by the
    rows written. Returns the outcomes written (the pipeline counts those, and only those, in the histogram)."""
    if not outcomes:
        return []
    rows = [(place[id(o)][0], o.kind, o.image_id, o.reason or o.failure, place[id(o)][1]) for o in outcomes]
    positions, kinds, image_ids, reasons, statuses = (list(column) for column in zip(*rows))
    written = set(db.session.scalars(text("""
        UPDATE url_import_items AS i
        SET outcome = v.outcome, image_id = v.image_id, reason = v.reason, http_status = v.http_status,
            date_processed = now()
        FROM unnest(CAST(:positions AS integer[]), CAST(:kinds AS text[]), CAST(:image_ids AS integer[]),
                    CAST(:reasons AS text[]), CAST(:statuses AS smallint[]))
            AS v(position, outcome, image_id, reason, http_status)
        WHERE i.import_id = :import_id AND i.position = v.position AND i.outcome IS NULL
        RETURNING i.position"""), {"import_id": import_id, "positions": positions, "kinds": kinds,
                                   "image_ids": image_ids, "reasons": reasons, "statuses": statuses}))
    mine = [o for o in outcomes if place[id(o)][0] in written]
    pipeline.move_counters(UrlImport, import_id, mine, {
        "accepted": UrlImport.accepted, "duplicate": UrlImport.duplicates, "rejected": UrlImport.rejected,
        "failed": UrlImport.failed})
    return mine


def _finish_if_complete(import_id: int) -> None:
    """Every URL has its outcome: finished. Checked after each chunk's commit, so the chunk recording the last
    outcome always sees it; doing it twice is harmless."""
    with unit_of_work():
        url_import = db.session.scalar(select(UrlImport).where(UrlImport.id == import_id)
                                       .with_for_update(of=UrlImport))
        if url_import is None or url_import.status == "finished":
            return
        counts = progress(url_import)
        if counts["done"] < counts["total"]:
            return
        url_import.status, url_import.error = "finished", None
        url_import.date_finished = datetime.now(timezone.utc)
        webhooks.emit("import.finished", {"import_id": url_import.id, "imageset_id": url_import.imageset_id,
                                          "status": "finished", "accepted": url_import.accepted,
                                          "duplicates": url_import.duplicates, "rejected": url_import.rejected,
                                          "failed": url_import.failed})
    logger.info("URL import finished", extra={"import_id": import_id, **counts})


def _stop_if_asked(should_stop: Callable[[], bool], import_id: int) -> None:
    if should_stop():
        logger.warning("URL import stopped between batches; it resumes on retry", extra={"import_id": import_id})
        raise WorkInterrupted(f"URL import {import_id} was stopped")


def mark_failed(import_id: int, exc: BaseException) -> None:
    """A chunk's job gave up: the import is failed, with why (see the module's docstring for retrying)."""
    record_failure(UrlImport, import_id, exc, applies=lambda url_import: url_import.status in ("queued", "running"),
                   limit=500)
