"""The one place that renders every error of a request as application/problem+json (app.errors has the
domain errors and the document's shape): domain errors, Connexion's validation and security problems, HTTP
errors, a database outage (503 with Retry-After) and anything unexpected (500, logged once, nothing internal)."""
from __future__ import annotations

import json
import logging

from connexion.exceptions import OAuthProblem, ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from app.errors import RETRY_AFTER, DomainError, database_unavailable, problem_document
from app.http_status import reason

logger = logging.getLogger(__name__)


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
