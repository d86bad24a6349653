"""The audit trail: each change recorded with who made it (key and owner), the request, and before/after.

`record` adds its row to the session of the change, so the row commits (or rolls back) with the change it
describes. Outside a request (a job, the CLI) who is null: the service itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select

from app.auth.policy import acting_caller
from app.errors import Unprocessable
from app.extensions import db
from app.logs import request_id_var
from app.models import AuditEntry
from app.services.pagination import decode_cursor, encode_cursor

ENTITIES = ("api_key", "image", "image_set", "campaign")


def _who() -> tuple[str | None, str | None]:
    caller = acting_caller.get()  # None outside a request (a job, a command), or on an operation without a key
    return (caller.key_id, caller.owner_name) if caller else (None, None)


def _json(value: dict | None) -> dict | None:
    """As JSONB stores it: dates as ISO 8601 text."""
    return None if value is None else json.loads(json.dumps(value, default=lambda v: v.isoformat()))


def record(action: str, entity: str, entity_id, before: dict | None, after: dict | None) -> AuditEntry:
    key_id, actor = _who()
    request_id = request_id_var.get()
    entry = AuditEntry(action=action, entity=entity, entity_id=str(entity_id), key_id=key_id, actor=actor,
                       request_id=None if request_id == "-" else request_id[:128],
                       before=_json(before), after=_json(after))
    db.session.add(entry)
    return entry


def changes(row, fields: dict[str, str], values: dict) -> tuple[dict, dict]:
    """Apply `values` (API name -> new value) to `row` through `fields` (API name -> attribute); before/after
    of what actually changed."""
    before, after = {}, {}
    for name, value in values.items():
        attribute = fields[name]
        if getattr(row, attribute) != value:
            before[name], after[name] = getattr(row, attribute), value
            setattr(row, attribute, value)
    return before, after


@dataclass
class Filters:
    entity: str | None = None
    entity_id: str | None = None
    key_id: str | None = None


def list_after(filters: Filters, *, cursor: str, per_page: int) -> tuple[list[AuditEntry], str | None]:
    """Newest first, keyset-paged on id: each filter has an index that serves it in that order, and no COUNT."""
    if filters.entity_id is not None and filters.entity is None:
        raise Unprocessable("entity_id needs entity (an image and a campaign may share an id)", field="entity_id")
    query = select(AuditEntry)
    for column, value in ((AuditEntry.entity, filters.entity), (AuditEntry.entity_id, filters.entity_id),
                          (AuditEntry.key_id, filters.key_id)):
        if value is not None:
            query = query.where(column == value)
    before = decode_cursor(cursor)
    if before:
        query = query.where(AuditEntry.id < before)
    rows = db.session.scalars(query.order_by(AuditEntry.id.desc()).limit(per_page + 1)).all()
    more = len(rows) > per_page
    rows = rows[:per_page]
    return rows, encode_cursor(rows[-1].id) if more else None
