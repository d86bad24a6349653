"""Open endpoints outside /api/v1: version, health, metrics."""
from __future__ import annotations

import os
import subprocess
from functools import lru_cache

from flask import current_app

from app import __version__, metrics
from app.services import health


@lru_cache(maxsize=1)
def _commit() -> str | None:
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2,
                              cwd=os.path.dirname(__file__), check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def version():
    return {"version": __version__, "commit": _commit()}


def status():
    healthy, checks = health.status(current_app._get_current_object())  # its probes run on other threads
    body = {"status": "ok" if healthy else "unavailable", "checks": {n: c.as_dict() for n, c in checks.items()}}
    return body, 200 if healthy else 503


def metrics_text():
    return metrics.exposition(), 200, {"Content-Type": "text/plain"}
