"""Logging to stdout, configured once, with the request id on every line and secrets scrubbed."""
from __future__ import annotations

import contextvars
import logging
import re
import sys

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Anything that looks like a SAS signature, an account key or our secret header is masked,
# whatever logger (ours, uvicorn's, azure's) wrote it.
_SECRET_PATTERNS = [
    (re.compile(r"(?i)(\bsig=)[^&\s'\"]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(AccountKey=)[^;\s'\"]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(SharedAccessSignature=)[^;\s'\"]+"), r"\1REDACTED"),
    (re.compile(r"(?i)(authentication-secret['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"), r"\1REDACTED"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class _Formatter(logging.Formatter):
    """`time level logger [request id] message key=value...`, secrets masked."""

    _standard = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"request_id", "message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{k}={v!r}" for k, v in record.__dict__.items() if k not in self._standard)
        return redact(f"{line} {extras}" if extras else line)


def configure(level: str = "INFO") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_label_store", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler._label_store = True
    handler.addFilter(_ContextFilter())
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # The Azure SDK logs every request and its headers at INFO.
    for noisy in ("azure", "azure.core.pipeline.policies.http_logging_policy", "urllib3", "httpx", "procrastinate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # we log each request ourselves
