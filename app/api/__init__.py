"""Thin handlers: validated input in, a service call, a shaped response out.

Operations declare application/json for success and application/problem+json for errors, so Connexion
asks every handler to name its content type; `resolver` does that once for all of them, and runs each
operation as one unit of work (app.unit_of_work): the request's edge is where it commits.
"""
from __future__ import annotations

import functools
import math

from connexion.resolver import Resolver
from connexion.utils import get_function_from_name

from app.auth.connexion_glue import current_caller
from app.auth.policy import acting_caller
from app.unit_of_work import unit_of_work

JSON = {"Content-Type": "application/json"}


def finite(value: float | None) -> float | None:
    """A number as JSON can carry it: NaN and infinities (a strict parser refuses the whole page) become null."""
    return value if value is not None and math.isfinite(value) else None


def iso(value) -> str | None:
    """A date or time as the API writes it: ISO 8601, or null."""
    return value.isoformat() if value is not None else None


def _with_content_type(result):
    if isinstance(result, (dict, list)):
        return result, 200, JSON
    if isinstance(result, tuple) and isinstance(result[0], (dict, list)):
        if len(result) == 2:
            return result[0], result[1], JSON
        if len(result) == 3 and not any(k.lower() == "content-type" for k in result[2]):
            return result[0], result[1], {**JSON, **result[2]}
    return result


def _json_handler(name: str):
    """Every operation is one unit of work: its changes commit when the handler returns, or none do."""
    function = get_function_from_name(name)

    @functools.wraps(function)
    def handler(*args, **kwargs):
        acting = acting_caller.set(_caller_or_none())
        try:
            with unit_of_work():
                result = function(*args, **kwargs)
        finally:
            acting_caller.reset(acting)
        return _with_content_type(result)

    return handler


def _caller_or_none():
    try:
        return current_caller()
    except (RuntimeError, LookupError, TypeError):  # an operation without a key (/info/...)
        return None


resolver = Resolver(function_resolver=_json_handler)
