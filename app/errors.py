"""Domain errors, and the one place that renders every error as application/problem+json.

Services raise DomainError subclasses and know nothing of HTTP frameworks. The body carries RFC 7807's
type/title/status/detail, plus `error` with the same text as `detail` for LabelAPI clients.
"""
from __future__ import annotations

import json
import logging

from connexion.exceptions import OAuthProblem, ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from app.http_status import reason

logger = logging.getLogger(__name__)


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


def problem(status: int, detail: str, *, title: str | None = None, headers: dict | None = None,
            **extra) -> ConnexionResponse:
    body = problem_document(status, detail, title=title, **extra)
    return ConnexionResponse(status_code=status, mimetype="application/problem+json",
                             content_type="application/problem+json", body=json.dumps(body), headers=headers)


def _domain_error(_request: ConnexionRequest, exc: DomainError) -> ConnexionResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return problem(exc.status, exc.detail, title=exc.title, headers=headers, **exc.extra)


def _problem_exception(_request: ConnexionRequest, exc: ProblemException) -> ConnexionResponse:
    # Connexion's own validation and security problems (400, 401, 403, 415, ...).
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    if isinstance(exc, OAuthProblem):  # Connexion found no credentials
        detail = "Missing credentials. Send your key pair in the Authentication-Key and Authentication-Secret headers."
    if exc.status >= 500:  # e.g. a response that breaks the spec: log it, tell the client nothing internal
        logger.error("request failed: %s", detail)
        return problem(500, _INTERNAL)
    return problem(exc.status, detail, title=exc.title, headers=exc.headers, **(exc.ext or {}))


def _http_exception(_request: ConnexionRequest, exc: HTTPException) -> ConnexionResponse:
    detail = _DEFAULT_DETAIL.get(exc.status_code) or exc.detail or reason(exc.status_code)
    return problem(exc.status_code, detail, headers=exc.headers)


def _unexpected(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    if database_unavailable(exc):
        # An outage, not a bug: one line, no traceback, and a client told when to come back.
        logger.warning("database unavailable", extra={"reason": str(exc).strip().splitlines()[0][:200] if str(exc)
                                                      else type(exc).__name__})
        return problem(503, "The database is unavailable or did not answer in time; nothing was changed. "
                       "Retry shortly.", title="Database Unavailable", headers={"Retry-After": str(RETRY_AFTER)})
    logger.error("unexpected error", exc_info=exc)
    return problem(500, _INTERNAL)


RETRY_AFTER = 5


def database_unavailable(exc: BaseException) -> bool:
    """Lost, refused or exhausted database connections (SQLAlchemy's pool, psycopg2, psycopg 3 and its pool)."""
    import psycopg
    import psycopg2
    from sqlalchemy import exc as sa

    return isinstance(exc, (sa.OperationalError, sa.TimeoutError, psycopg2.OperationalError, psycopg.OperationalError)) \
        or (isinstance(exc, sa.DBAPIError) and exc.connection_invalidated)


_INTERNAL = "The server met an unexpected error. Quote the X-Request-ID header when reporting it."


_DEFAULT_DETAIL = {
    404: "No such resource: check the path (the API lives under /api/v1).",
    405: "This method is not allowed on this path.",
}


def register(connexion_app) -> None:
    connexion_app.add_error_handler(DomainError, _domain_error)
    connexion_app.add_error_handler(ProblemException, _problem_exception)
    connexion_app.add_error_handler(HTTPException, _http_exception)
    connexion_app.add_error_handler(Exception, _unexpected)
