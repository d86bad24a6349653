"""What a user sees when background work gives up: the row's status becomes failed, with a short reason.

A reason written for users (a domain error's text, or the `detail` a caller words) is shown as it is; anything
else (a database error, a bug) is shown only as a reference into the log, which keeps the detail: its class and
message could name tables, constraints and the values of a request."""
from __future__ import annotations

from collections.abc import Callable

from app.errors import DomainError
from app.extensions import db
from app.logs import redact, request_id_var
from app.services import audit
from app.unit_of_work import unit_of_work


def summary(exc: BaseException) -> str:
    """`ErrorClass: first line of its message`, secrets masked."""
    text = str(exc)
    return redact(f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}")


def shown_to_users(exc: BaseException) -> str:
    """A domain error's own words; for anything else, where in the log to find what happened."""
    if isinstance(exc, DomainError):
        return summary(exc)
    where = request_id_var.get()
    return (f"failed unexpectedly; the service's log has the detail under {where}: quote it when reporting this"
            if where != "-" else "failed unexpectedly; the service's log has the detail")


def record_failure(model, row_id: int, exc: BaseException, *, applies: Callable[[object], bool],
                   detail: str | None = None, limit: int = 1000,
                   on_failed: Callable[[object], None] = lambda row: None, audited_as: str | None = None) -> None:
    """Mark the row failed with `detail` (else what `shown_to_users` says), if `applies` to its current state,
    then `on_failed(row)` in the same transaction (an event to emit), and the status move in the audit trail as
    entity `audited_as` (a job's move: no key). Runs in a fresh unit of work: whatever the failed attempt left
    in the session is rolled back first."""
    db.session.rollback()
    with unit_of_work():
        row = db.session.get(model, row_id)
        if row is not None and applies(row):
            before = row.status
            row.status, row.error = "failed", redact(detail or shown_to_users(exc))[:limit]
            if audited_as:
                audit.record("status", audited_as, row_id, {"status": before}, {"status": "failed", "error": row.error})
            on_failed(row)
