"""Connexion's validators, hardened at the edge: every bad value is a 400 naming its field, never a 500.

- Parameters: errors name the parameter; strings holding control characters or lone surrogates (PostgreSQL
  cannot store NUL) are refused; `format: date-time` is checked (jsonschema checks it only with an optional package).
- JSON bodies: read as UTF-8 (RFC 8259), refused when invalid; NaN, Infinity, numbers that overflow to
  infinity (1e400), integers outside 64 bits, NUL and lone surrogates in any string or key, and nesting
  deeper than MAX_DEPTH are refused with the path of the field.
- Error messages quote at most a short excerpt of the offending value.
- Large array bodies (bulk label submissions, image lists) are checked by a compiled validator first.
"""
from __future__ import annotations

import copy
import json
import math
import re
import threading
from datetime import datetime, timedelta, timezone

import fastjsonschema
from connexion.exceptions import BadRequestProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.utils import is_nullable, is_null
from connexion.validators import ParameterValidator
from connexion.validators.json import JSONRequestBodyValidator
from jsonschema import Draft4Validator, FormatChecker, ValidationError

FAST_PATH_MIN_ITEMS = 50  # jsonschema takes ~0.7 s on 10,000 objects; the compiled check ~20 ms
MAX_DEPTH = 32  # nesting of arrays and objects in a body (free-form metadata included)
EXCERPT_CHARS = 60
INT64 = 2 ** 63
MAX_OFFSET = timedelta(hours=16)  # PostgreSQL refuses a UTC offset of 16 hours or more

# RFC 3339 date-time; the offset may be left out (then UTC), as LabelAPI's clients do.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})?")

FORMAT_CHECKER = FormatChecker()
for _name, _check in Draft4Validator.FORMAT_CHECKER.checkers.items():
    FORMAT_CHECKER.checkers[_name] = _check


@FORMAT_CHECKER.checks("date-time", raises=(ValueError, OverflowError))
def is_date_time(value) -> bool:
    """An RFC 3339 date-time that exists (no month 13), with an offset PostgreSQL takes (under 16 hours; real
    zones span -12:00 to +14:00), within years 1-9999 in UTC: what can be stored, compared and read back."""
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.fullmatch(value):
        return False
    parsed = datetime.fromisoformat(value.replace("z", "Z"))
    if parsed.tzinfo is not None:
        if abs(parsed.utcoffset()) >= MAX_OFFSET:
            return False
        parsed.astimezone(timezone.utc)  # OverflowError past year 9999
    return True


def _date_time_or_false(value) -> bool:
    """The same check for the compiled validator, which expects a verdict, not an exception."""
    try:
        return is_date_time(value)
    except (ValueError, OverflowError):
        return False


def excerpt(value) -> str:
    text = repr(value)
    return text if len(text) <= EXCERPT_CHARS else f"{text[:EXCERPT_CHARS - 1]}…"


def _storable_text(text: str) -> str | None:
    """Why PostgreSQL could not store this string, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode)"
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _control(text: str) -> str | None:
    """Parameters are names, ids and filters: a control character is never meant (and a pattern's `$` would
    let a trailing newline through: Python's `$` matches before it)."""
    return "contains a control character" if _CONTROL.search(text) else None


def _message(error: ValidationError) -> str:
    """jsonschema's message with the value cut to an excerpt (a too-long array was once echoed whole)."""
    message = error.message
    instance = repr(error.instance)
    if len(instance) > EXCERPT_CHARS:
        message = message.replace(instance, excerpt(error.instance))
    return message


class NamedParameterValidator(ParameterValidator):
    @staticmethod
    def validate_parameter(parameter_type, value, param, param_name=None):
        name = param_name or param.get("name")
        if is_nullable(param) and is_null(value):
            return None
        if value is None:
            return f"Missing {parameter_type} parameter '{name}'" if param.get("required") else None
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and (why := _storable_text(text) or _control(text)):
                return f"{parameter_type} parameter '{name}': {why}"
        try:
            Draft4Validator(param.get("schema", param), format_checker=FORMAT_CHECKER).validate(value)
        except ValidationError as error:
            return f"{parameter_type} parameter '{name}': {_message(error)}"
        return None


def _plain_json_schema(schema):
    """OpenAPI 3.0's `nullable` as JSON Schema, which the compiler understands."""
    if isinstance(schema, list):
        return [_plain_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _plain_json_schema(v) for k, v in schema.items() if k != "nullable" and not k.startswith("x-")}
    return {"anyOf": [out, {"type": "null"}]} if schema.get("nullable") else out


def _path(parts) -> str:
    return ".".join(str(p) for p in parts)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def check_values(body) -> str | None:
    """What the store cannot take in the body, naming the field ("body field 'a.0.b': ..."); None when all
    fits. Walks without recursion."""
    stack = [(body, ())]
    while stack:
        value, path = stack.pop()
        if len(path) >= MAX_DEPTH and isinstance(value, (dict, list)):
            return f"body field '{_path(path)}': nested deeper than {MAX_DEPTH} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            if isinstance(key, str) and (why := _storable_text(key)):
                return f"body field '{_path(path)}': a key {excerpt(key)} {why}"
            kind, why = type(item), None
            if kind is str:
                why = _storable_text(item)
            elif kind is float and not math.isfinite(item):
                why = "a number too large to represent"
            elif kind is int and not -INT64 <= item < INT64:
                why = "an integer outside 64 bits"
            elif kind is dict or kind is list:
                stack.append((item, (*path, key)))
            if why:
                return f"body field '{_path((*path, key))}': {why}"
    return None


class FastJSONBodyValidator(JSONRequestBodyValidator):
    """Strict parsing (above), then Connexion's verdicts and messages: a large array body that the compiled
    validator accepts is valid; anything it refuses is validated again by the standard one, which words the
    error."""

    _lock = threading.Lock()

    @property
    def _validator(self):
        return Draft4RequestValidator(self._schema, format_checker=FORMAT_CHECKER)

    def _compiled(self):
        with self._lock:
            if not hasattr(self, "_fast"):
                self._fast = fastjsonschema.compile(_plain_json_schema(copy.deepcopy(self._schema)),
                                                    formats={"date-time": _date_time_or_false})
            return self._fast

    async def wrap_receive(self, receive, *, scope):
        """A body sent without Content-Type is validated as JSON (the operation's only type): say so
        downstream too, or the handler would be given raw bytes."""
        if not any(name == b"content-type" for name, _ in scope["headers"]):
            scope = {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}
        return await super().wrap_receive(receive, scope=scope)

    async def _parse(self, stream, scope):
        raw = b"".join([message async for message in stream])
        try:
            text = raw.decode("utf-8")  # JSON is UTF-8 (RFC 8259), whatever charset the request claims
        except UnicodeDecodeError as error:
            raise BadRequestProblem(detail=f"The body is not valid UTF-8 (byte {error.start}); send JSON as UTF-8.")
        if not text:
            return None
        try:
            body = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise BadRequestProblem(detail=f"The body is nested deeper than {MAX_DEPTH} levels.")
        except ValueError as error:  # JSONDecodeError, NaN/Infinity, an integer of thousands of digits
            raise BadRequestProblem(detail=f"The body is not valid JSON: {str(error)[:200]}")
        if why := check_values(body):
            raise BadRequestProblem(detail=why)
        return body

    def _validate(self, body):
        if isinstance(body, list) and len(body) >= FAST_PATH_MIN_ITEMS:
            try:
                self._compiled()(body)
                return None
            except fastjsonschema.JsonSchemaException:
                pass
        if not self._nullable and body is None:
            raise BadRequestProblem("Request body must not be empty")
        try:
            self._validator.validate(body)
        except ValidationError as error:
            where = f" - '{_path(error.path)}'" if error.path else ""
            raise BadRequestProblem(detail=f"{_message(error)}{where}")
        return None


VALIDATOR_MAP = {"parameter": NamedParameterValidator, "body": {"application/json": FastJSONBodyValidator}}
