"""One pagination helper for every list: LabelAPI's fields, with `pages` being the number of pages."""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from sqlalchemy import Select, func, select

from app.errors import NotFound
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
