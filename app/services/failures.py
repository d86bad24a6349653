"""What a user sees when background work gives up: the row's status becomes failed, with a short reason."""
from __future__ import annotations

from collections.abc import Callable

from app.extensions import db
from app.logs import redact
from app.unit_of_work import unit_of_work


def summary(exc: BaseException) -> str:
    """`ErrorClass: first line of its message`, secrets masked."""
    text = str(exc)
    return redact(f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}")


def record_failure(model, row_id: int, exc: BaseException, *, applies: Callable[[object], bool],
                   detail: str | None = None, limit: int = 1000) -> None:
    """Mark the row failed with `detail` (else the exception's summary), if `applies` to its current state.
    Runs in a fresh unit of work: whatever the failed attempt left in the session is rolled back first."""
    db.session.rollback()
    with unit_of_work():
        row = db.session.get(model, row_id)
        if row is not None and applies(row):
            row.status, row.error = "failed", redact(detail or summary(exc))[:limit]
