"""Domain errors and the problem document they become: what services, jobs and the API share.

Services raise DomainError subclasses and know nothing of HTTP frameworks; app.api.problems renders every error
as application/problem+json. The body carries RFC 7807's type/title/status/detail, plus `error` with the same
text as `detail` for LabelAPI clients. Nothing here imports Connexion: workers and commands import this room.
"""
from __future__ import annotations


from app.http_status import reason

class DomainError(Exception):
    status, title = 400, "Bad Request"
    retry_after: int | None = None  # seconds, sent as Retry-After (a dependency is briefly unavailable)

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail, self.extra = detail, extra


class WorkInterrupted(Exception):
    """A background run stopped at a safe point because its worker is shutting down; a retry resumes it."""


class Unauthorized(DomainError):
    status, title = 401, "Unauthorized"


class Forbidden(DomainError):
    status, title = 403, "Forbidden"


class NotFound(DomainError):
    status, title = 404, "Not Found"


class Conflict(DomainError):
    status, title = 409, "Conflict"


class Unprocessable(DomainError):
    status, title = 422, "Unprocessable Entity"


class PayloadTooLarge(DomainError):
    status, title = 413, "Payload Too Large"


MAX_DETAIL_CHARS = 500  # a problem quotes at most a short excerpt of what was sent (a 1.5 MB array was echoed)


def problem_document(status: int, detail: str, *, title: str | None = None, **extra) -> dict:
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[:MAX_DETAIL_CHARS - 1] + "…"
    return {"type": "about:blank", "title": title or reason(status), "status": status, "detail": detail,
            "error": detail, **extra}


RETRY_AFTER = 5


def database_unavailable(exc: BaseException) -> bool:
    """Lost, refused or exhausted database connections (SQLAlchemy's pool, psycopg2, psycopg 3 and its pool)."""
    import psycopg
    import psycopg2
    from sqlalchemy import exc as sa

    return isinstance(exc, (sa.OperationalError, sa.TimeoutError, psycopg2.OperationalError, psycopg.OperationalError)) \
        or (isinstance(exc, sa.DBAPIError) and exc.connection_invalidated)
