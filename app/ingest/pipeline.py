"""The ingest pipeline every source feeds (the dropbox's finishing, direct upload, URL import): the bytes are
checked, their MD5 decides duplicate or new, format, dimensions and EXIF are read, the set's rules applied,
the image catalogued, and the file's outcome recorded once with its source's report and the ingest histogram.

Each file ends as one of
- accepted: a new image (its id);
- duplicate: the same bytes are already an image (its id);
- rejected: it breaks a rule (the reason names the rule and the value);
- failed: it could not be fetched or read (the cause).

What differs per source is only how the bytes reach the image container and where the report row goes: the
caller stores the bytes (app.storage), calls `judge` on what was stored, then `record` inside its unit of work
with a `report` function writing its own rows. Facts always come from the bytes the service stored.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from app.errors import database_unavailable
from app.extensions import db
from app.ingest.rules import Rules, violation
from app.models import Image, ImageSetMember, StrayBlob
from app.services import renditions
from app.services.failures import shown_to_users, summary
from app.state import app_state
from app.services.image_facts import LARGE_HEAD_BYTES, MIME_TYPES, TAIL_BYTES, Facts, Rejected, read_facts
from app.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

SOURCES = ("dropbox", "upload", "url")
OUTCOMES = ("accepted", "duplicate", "rejected", "failed")

# A name becomes a path in the image container: no empty, "." or ".." segments, no control characters.
_UNSAFE_NAME = re.compile(r"(^|/)\.{1,2}(/|$)|//|^/|\\|[\x00-\x1f\x7f]")
MAX_NAME_CHARS = 1024


@dataclass
class Outcome:
    name: str  # as its source calls it: the dropbox blob name, the uploaded file's name, the URL
    path: str | None = None  # where its bytes are in the image container, once stored
    facts: Facts | None = None
    md5: str | None = None
    size: int | None = None  # of the stored bytes
    reason: str | None = None  # rejected: the rule and the value
    failure: str | None = None  # failed: why it could not be fetched or read
    image_id: int | None = None  # accepted: the new image; duplicate: the image it duplicates
    duplicate: bool = False
    metadata: dict | None = None  # the image's metadata, when its source carries some

    @property
    def kind(self) -> str:
        if self.failure:
            return "failed"
        return "rejected" if self.reason else "duplicate" if self.duplicate else "accepted"

    @property
    def candidate(self) -> bool:
        """Read and within the rules: becomes an image or a duplicate of one."""
        return self.facts is not None and not self.reason and not self.failure


@dataclass(frozen=True)
class Bytes:
    """What one pass over a file gave: its MD5 and size, and the head and tail the facts are read from."""
    md5: str
    size: int
    head: bytes
    tail: bytes


def unsafe_name(name: str) -> str | None:
    if not name or len(name) > MAX_NAME_CHARS:
        return f"unsafe file name: empty or longer than {MAX_NAME_CHARS} characters"
    if _UNSAFE_NAME.search(name):
        return ("unsafe file name: empty, '.' or '..' path segments, a leading slash, a backslash or control "
                "characters")
    return None


def size_violation(size: int, rules: Rules) -> str | None:
    if size == 0:
        return "empty file"
    if size > rules.max_bytes:
        return f"too large: {size:,} bytes (rule max_bytes: {rules.max_bytes:,})"
    return None


def read_file(stream: BinaryIO, *, chunk_size: int = 1024 * 1024) -> Bytes:
    """One pass over a local file (an upload, a fetched body): MD5, size, head and tail."""
    digest, head, tail, size = hashlib.md5(usedforsecurity=False), bytearray(), b"", 0
    while chunk := stream.read(chunk_size):
        digest.update(chunk)
        if len(head) < LARGE_HEAD_BYTES:
            head += chunk[:LARGE_HEAD_BYTES - len(head)]
        tail = (tail + chunk)[-TAIL_BYTES:]
        size += len(chunk)
    return Bytes(digest.hexdigest(), size, bytes(head), tail)


def judge(outcome: Outcome, stored: Bytes, rules: Rules, *, max_pixels: int) -> Outcome:
    """Facts and the rules, from the bytes that are stored: sets `facts`, or `reason` when a rule is broken."""
    outcome.md5, outcome.size = stored.md5, stored.size
    outcome.reason = size_violation(stored.size, rules)
    if outcome.reason:
        return outcome
    try:
        outcome.facts = read_facts(stored.head, stored.tail, stored.size, allowed_formats=rules.allowed_formats,
                                   max_pixels=max_pixels)
    except Rejected as rejected:
        outcome.reason = str(rejected)
        return outcome
    except Exception as exc:  # a reader bug on a hostile file rejects that file, never the rest
        logger.warning("image could not be read", extra={"name": outcome.name, "reason": summary(exc)})
        outcome.reason = f"unreadable image ({type(exc).__name__})"
        return outcome
    outcome.reason = violation(outcome.facts, stored.size, rules)
    if outcome.reason:
        outcome.facts = None
    return outcome


def take_local(outcome: Outcome, stream: BinaryIO, rules: Rules, *, folder: str, max_pixels: int,
               known: Mapping[str, int] | None = None, suffix: str = "",
               before_store: Callable[[str], None] | None = None) -> Outcome:
    """The way in for bytes the service holds itself (a direct upload, a fetched URL): read once (MD5, size,
    facts), judged, and when they are a new image stored at `<folder>/<md5><suffix>.<format>` with the
    Content-Type and Content-MD5 worked out from them (without a suffix, a retry writes the same path again).
    Bytes of a known image are not stored again: `known` when the caller looked a batch up at once
    (`known_images`), else asked here. The caller then `record`s the outcome and removes what `uncatalogued`
    names. `before_store(path)` runs just before the bytes are stored (to note a path a crash could strand)."""
    stream.seek(0)
    judge(outcome, read_file(stream), rules, max_pixels=max_pixels)
    if not outcome.candidate:
        return outcome
    if known is None:
        known = known_images([outcome.md5])
    if outcome.md5 in known:
        outcome.duplicate, outcome.image_id = True, known[outcome.md5]
        return outcome
    outcome.path = f"{folder}/{outcome.md5}{suffix}.{outcome.facts.filetype}"
    if before_store is not None:
        before_store(outcome.path)
    stream.seek(0)
    app_state().storage.put_image(outcome.path, stream, length=outcome.size,
                                  content_type=MIME_TYPES.get(outcome.facts.filetype, "application/octet-stream"),
                                  md5_hex=outcome.md5)
    return outcome


def known_images(md5s: Iterable[str]) -> dict[str, int]:
    """Which of these MD5s are images already: lets a source skip storing bytes it would only delete again."""
    md5s = list(set(md5s))
    if not md5s:
        return {}
    return dict(db.session.execute(select(Image.md5, Image.id).where(Image.md5.in_(md5s))).all())


def record(imageset_id: int, outcomes: list[Outcome], *, source: str,
           report: Callable[[list[Outcome]], list[Outcome]], count: bool = True) -> list[Outcome]:
    """Catalogue the new images and record every outcome, in the caller's transaction (flushed, not committed).

    Duplicates are decided in one query (already an image, or an earlier file of this batch with the same
    bytes); a concurrent insert of the same bytes elsewhere makes this one a duplicate of it. `report` writes
    the source's rows and returns the outcomes it actually wrote (a row already there, from a run before,
    is not written twice): only those are counted in the histogram, so every file counts once. With `count`
    False the caller counts them itself, once per transaction (`count_minute`)."""
    candidates = [o for o in outcomes if o.candidate]
    for outcome in candidates:
        outcome.duplicate, outcome.image_id = False, None
    existing = known_images(o.md5 for o in candidates)
    first_of: dict[str, Outcome] = {}
    for outcome in candidates:
        if outcome.md5 in existing:
            outcome.duplicate, outcome.image_id = True, existing[outcome.md5]
        elif outcome.md5 in first_of:
            outcome.duplicate = True
        else:
            first_of[outcome.md5] = outcome
    new = list(first_of.values())
    if new:
        # Parameters apart from the statement: compiled once and cached (a multi-row VALUES is compiled per batch)
        table = Image.__table__
        inserted = dict(db.session.execute(
            pg_insert(table).on_conflict_do_nothing().returning(table.c.md5, table.c.id),
            [_image_row(o, imageset_id) for o in new]).all())
        lost = [o for o in new if o.md5 not in inserted]  # the same bytes were catalogued meanwhile
        if lost:
            winners = known_images(o.md5 for o in lost)
            for outcome in lost:
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
            [{"imageset_id": imageset_id, "image_id": image_id} for image_id in sorted(members)])
            .on_conflict_do_nothing())
    written = report(outcomes)
    if count:
        count_minute(source, written)
    made = sorted(o.image_id for o in new if not o.duplicate and o.image_id)
    if made:
        renditions.defer_for(made)  # made by a job once this transaction commits
    return written


def move_counters(table, row_id: int, outcomes: Iterable[Outcome], columns: dict) -> None:
    """Add the outcomes to a row's per-outcome counters (`columns`: outcome -> counter column): a set's progress,
    an import's, moved by the report rows actually written."""
    counts = Counter(o.kind for o in outcomes)
    if counts:
        db.session.execute(update(table).where(table.id == row_id).values(
            {column: column + counts[kind] for kind, column in columns.items()}))


def count_minute(source: str, outcomes: Iterable[Outcome], *, at: datetime | None = None) -> None:
    """Add the outcomes to this minute's counters (the ingest histogram). Rows in one order, so concurrent
    batches never deadlock on them."""
    counts = Counter(o.kind for o in outcomes)
    if not counts:
        return
    minute = (at or datetime.now(timezone.utc)).replace(second=0, microsecond=0)
    db.session.execute(text("""
        INSERT INTO ingest_minutes (minute, source, outcome, count)
        SELECT :minute, :source, outcome, n FROM unnest(CAST(:outcomes AS text[]), CAST(:counts AS bigint[]))
            AS t(outcome, n) ORDER BY outcome
        ON CONFLICT (minute, source, outcome) DO UPDATE SET count = ingest_minutes.count + excluded.count"""),
        {"minute": minute, "source": source, "outcomes": sorted(counts),
         "counts": [counts[k] for k in sorted(counts)]})


def record_batch(outcomes: list[Outcome], record: Callable[[list[Outcome]], object], *, context: dict) -> None:
    """`record(outcomes)` in one unit of work. Should the database refuse the batch (a value it will not take,
    not an outage: that is raised, for the job to retry), each outcome is recorded alone, and one refused even
    alone is recorded as rejected, "could not be catalogued", so it never blocks the rest."""
    try:
        with unit_of_work():
            record(outcomes)
    except DBAPIError as exc:
        if database_unavailable(exc):
            raise
        logger.warning("a batch was refused by the database; recording its files one by one",
                       extra={**context, "reason": summary(exc)})
        for outcome in outcomes:
            _record_alone(outcome, record, context)


def _record_alone(outcome: Outcome, record: Callable[[list[Outcome]], object], context: dict) -> None:
    try:
        with unit_of_work():
            record([outcome])
    except DBAPIError as exc:
        if database_unavailable(exc):
            raise
        outcome.facts, outcome.duplicate, outcome.image_id = None, False, None
        logger.warning("a file could not be catalogued",
                       extra={**context, "name": outcome.name[:200], "reason": summary(exc)})
        outcome.reason = f"could not be catalogued: {shown_to_users(exc)}"  # the database's words stay in the log
        with unit_of_work():
            record([outcome])


def remove_uncatalogued(outcomes: list[Outcome], pool) -> None:
    """Delete the stored copies of these outcomes that no image row names (rejected, duplicate, never
    recorded), `pool` (an Executor) deleting several at once. Best effort: when the database or storage is
    down, the copies stay for the retry, which stores the same paths again."""
    try:
        list(pool.map(app_state().storage.delete_image, uncatalogued([o.path for o in outcomes if o.path])))
    except Exception as exc:
        logger.warning("could not remove this batch's uncatalogued copies yet", extra={"reason": summary(exc)})


def note_stray(path: str) -> None:
    """Note `path` as stored-but-not-yet-catalogued, committed at once on a pooled connection held only for
    that statement (a request keeps its own transaction open meanwhile): should the process die before the
    request commits, the sweep (housekeeping.sweep_stray_blobs) finds the blob. A take_local `before_store`."""
    with db.engine.begin() as connection:
        connection.execute(pg_insert(StrayBlob).values(path=path).on_conflict_do_nothing())


def settle_strays(paths: list[str]) -> None:
    """In the caller's transaction: these paths are accounted for (catalogued, or removed) once it commits."""
    if paths:
        db.session.execute(delete(StrayBlob).where(StrayBlob.path.in_(paths)))


def uncatalogued(paths: list[str]) -> list[str]:
    """Of these stored copies, those no image row names: rejected, duplicate, or never recorded. A copy the
    catalogue points at belongs to whoever recorded it (this run or one before), never to be deleted."""
    try:
        return uncatalogued_in_transaction(paths)
    finally:
        db.session.rollback()  # a read only: leave no transaction open


def uncatalogued_in_transaction(paths: list[str]) -> list[str]:
    """`uncatalogued`, read in the caller's transaction (which stays open)."""
    if not paths:
        return []
    kept = set(db.session.scalars(select(Image.blobstorage_path).where(Image.blobstorage_path.in_(paths))))
    return [path for path in paths if path not in kept]


def _image_row(outcome: Outcome, imageset_id: int) -> dict:
    facts = outcome.facts
    return {
        "imageset_id": imageset_id, "blobstorage_path": outcome.path, "md5": outcome.md5,
        "filetype": facts.filetype, "filesize": outcome.size, "width": facts.width, "height": facts.height,
        "date_taken": facts.date_taken, "lat": facts.lat, "lon": facts.lon, "camera_make": facts.camera_make,
        "camera_model": facts.camera_model, "exif": facts.exif or None, "metadata": outcome.metadata,
    }
