"""One pagination helper for every list: LabelAPI's fields, with `pages` being the number of pages; and the
opaque cursor of keyset pages (the last id seen)."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from math import ceil

from sqlalchemy import Select, func, select

from app.errors import DomainError, NotFound
from app.extensions import db


@dataclass
class Page:
    items: list
    page: int
    per_page: int
    total: int

    @property
    def pagination(self) -> dict:
        pages = max(1, ceil(self.total / self.per_page))
        return {"page": self.page, "pages": pages, "total": self.total, "per_page": self.per_page,
                "next": self.page + 1 if self.page < pages else None,
                "prev": self.page - 1 if self.page > 1 else None}


def paginate(query: Select, page: int, per_page: int) -> Page:
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    last = max(1, ceil(total / per_page))
    if page > last:  # LabelAPI's clients page until a 404; page 1 (even of an empty list) is always there
        raise NotFound(f"page {page} is past the last page ({last})")
    items = db.session.scalars(query.limit(per_page).offset((page - 1) * per_page)).unique().all()
    return Page(list(items), page, per_page, total)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"i{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    if cursor == "":
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if raw.startswith("i") and raw[1:].isdigit() and len(raw) <= 19:  # fits a bigint
            return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        pass
    raise DomainError("cursor is not one this API gave out", field="cursor")
