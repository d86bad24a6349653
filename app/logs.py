"""Logging to stdout, configured once: one line per event, with the request id, secrets masked.

Two formats: `text` (`time level logger [request id] message key=value...`, a traceback folded into the
line with its newlines escaped) and `json` (one object per line, the traceback in `exception`). Whatever a
request sent (a path with %0A or %00 in it) cannot start a line of its own or reach a terminal raw: control
characters and Unicode line separators are escaped in both formats.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
from datetime import datetime, timezone

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Anything that looks like a SAS signature, an account key or our secret header is masked,
# whatever logger (ours, uvicorn's, azure's) wrote it.
_SECRET_PATTERNS = [
    (re.compile(r"(?i)(\bsig=)[^&\s'\"]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(AccountKey=)[^;\s'\"]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(SharedAccessSignature=)[^;\s'\"]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(authentication-secret['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(\bpostgres(?:ql)?(?:\+\w+)?://[^:/@\s]*:)[^@\s]+(@)"), r"\1REDACTED\2"),  # a URL's password
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"request_id", "message", "asctime"}
# Uvicorn repeats its message with ANSI colours in `color_message`; procrastinate's context is summarised.
_DROPPED = {"color_message", "_job_failure"}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k not in _DROPPED}


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class TextFormatter(logging.Formatter):
    """`time level logger [request id] message key=value...` on one line, secrets masked."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extras = " ".join(f"{k}={v!r}" for k, v in _extras(record).items())
        line = f"{line} {extras}" if extras else line
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        elif record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return redact(_one_line(line))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, the extra fields, and the
    traceback as one string in `exception`. Every string is masked before it is encoded."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _json_line(_masked(entry))


# C0 and C1 control characters, DEL, and what str.splitlines and log viewers also take for a line break
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """Each control character as a visible escape (`\\n`, `\\x00`, `\\u2028`): one event stays one line, and
    nothing a client sent can forge a line or drive a terminal."""
    return _CONTROL.sub(lambda m: _SHORT.get(m[0]) or (f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                                                       else f"\\u{ord(m[0]):04x}"), text)


def _one_line(text: str) -> str:
    """Newlines (a traceback's, a multi-line message's) become a visible `\\n`, every other control character
    its escape: one event, one line."""
    return escape_controls(text.replace("\r\n", "\n"))


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")  # json.dumps escapes C0 itself, not these


def _json_line(entry: dict) -> str:
    line = json.dumps(entry, default=str, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", line)


def _masked(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))


class RepeatFilter(logging.Filter):
    """An outage makes connection pools warn about every failed connection; the same warning from one
    logger passes once per `interval` seconds, the next one saying how many were held back."""

    def __init__(self, prefixes: tuple[str, ...], interval: float = 30.0, clock=time.monotonic):
        super().__init__()
        self.prefixes, self.interval, self.clock = prefixes, interval, clock
        self._last: dict[tuple, float] = {}
        self._held: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            if now - self._last.get(key, float("-inf")) < self.interval:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            record.repeated_since_last = held
        return True


# procrastinate's worker logs every job's start and end at INFO: only failures are kept (see JobFailureFilter).
_JOB_FAILURES = {  # action: (level, message)
    "job_error_retry": (logging.WARNING, "job attempt failed, will retry"),
    "job_aborted_retry": (logging.WARNING, "job attempt interrupted, will retry"),
    "job_error": (logging.ERROR, "job failed, no more attempts"),
    "job_aborted": (logging.WARNING, "job aborted"),
}


class JobFailureFilter(logging.Filter):
    """Each failed job attempt, logged once, says which job, which task, which attempt, and when it will be
    tried again (`retry_at`; null when it will not)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("procrastinate"):
            return True
        wanted = logging.getLogger().getEffectiveLevel()
        action = getattr(record, "action", None)
        if action not in _JOB_FAILURES:
            return record.levelno >= max(logging.WARNING, wanted) or wanted <= logging.DEBUG
        if getattr(record, "_job_failure", False):  # already rewritten (a second handler)
            return record.levelno >= wanted
        job = getattr(record, "job", None) or {}
        error = record.exc_info[1] if record.exc_info else None
        will_retry = action.endswith("_retry")
        level, message = _JOB_FAILURES[action]
        record.levelno = max(record.levelno, level)
        record.levelname = logging.getLevelName(record.levelno)
        record.msg, record.args = message, ()
        record.job_id = job.get("id")
        record.task = job.get("task_name")
        record.attempt = (job.get("attempts") or 0) + 1
        record.retry_at = _retry_at(job, error) if will_retry else None
        if error is not None:
            record.error = f"{type(error).__name__}: {error}"
        for noisy in ("job", "worker", "action", "start_timestamp", "end_timestamp", "duration", "result"):
            record.__dict__.pop(noisy, None)
        record._job_failure = True
        return record.levelno >= wanted


_task_lookup = lambda name: None  # noqa: E731  (task name -> procrastinate Task; app.jobs sets it)


def use_task_lookup(lookup) -> None:
    """How the failed-attempt log line finds a task's retry strategy (app.jobs hands in its registry, so
    logging does not import the job queue)."""
    global _task_lookup
    _task_lookup = lookup


def _retry_at(job: dict, error: BaseException | None) -> str | None:
    """The time procrastinate has just decided on, recomputed with the task's own retry strategy."""
    try:
        from types import SimpleNamespace

        task = _task_lookup(job.get("task_name"))
        decision = task.retry_strategy.get_retry_decision(
            exception=error, job=SimpleNamespace(**job)) if task and task.retry_strategy else None
        return decision.retry_at.astimezone(timezone.utc).isoformat(timespec="milliseconds") if decision else None
    except Exception:  # noqa: BLE001  (a log line must never fail the worker)
        return None


FORMATS = {"text": TextFormatter, "json": JsonFormatter}


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is when a line is written, not the one it found when configured (a test
    runner swaps stdout per test; a background thread logging later must not write to a closed stream)."""

    def __init__(self):
        super().__init__()
        self._chosen = None  # a stream handed in with setStream (tests), else the current sys.stdout

    @property
    def stream(self):
        return self._chosen if self._chosen is not None else sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        self._chosen = None if value in (sys.stdout, sys.stderr, sys.__stdout__) else value


def configure(level: str = "INFO", fmt: str = "text") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_label_store", False):
            root.removeHandler(handler)
    handler = _StdoutHandler()
    handler._label_store = True
    handler.addFilter(_ContextFilter())
    handler.addFilter(JobFailureFilter())
    handler.addFilter(RepeatFilter(("sqlalchemy.pool", "psycopg")))
    handler.setFormatter(FORMATS[fmt]())
    root.addHandler(handler)
    root.setLevel(level)
    # The Azure SDK logs every request and its headers at INFO.
    for noisy in ("azure", "azure.core.pipeline.policies.http_logging_policy", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # procrastinate logs job outcomes at INFO; the handler keeps only failures and warnings (JobFailureFilter).
    logging.getLogger("procrastinate").setLevel(min(logging.INFO, logging.getLevelName(level)))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # we log each request ourselves
    # Connexion warns "this operation accepts multiple content types" several times per request to such an
    # operation (direct upload: multipart or JSON), on every request; it is its only message there.
    logging.getLogger("connexion.operations.openapi3").setLevel(logging.ERROR)
