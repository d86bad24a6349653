from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, NotFound
from app.extensions import db


def get_or_404(model, id_: int, noun: str, *, for_update: bool = False, for_share: bool = False):
    """The row with this primary key (locked for the transaction with for_update; with for_share, a lock that
    other sharers hold too, while a change of the row waits), or NotFound "no <noun> <id>"."""
    query = select(model).where(model.id == id_)
    if for_update or for_share:
        query = query.with_for_update(of=model, read=not for_update)
    row = db.session.scalar(query)
    if row is None:
        raise NotFound(f"no {noun} {id_}")
    return row


def add_titled(row, noun: str) -> None:
    """Add a row whose title is unique; the unique constraint decides (also between concurrent requests).
    A taken title undoes only this row's savepoint, not the rest of the unit of work."""
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        raise Conflict(f"{noun} title {row.title!r} is already taken", field="title") from None
