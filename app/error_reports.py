"""Unexpected errors reported to Sentry when SENTRY_DSN is set: tagged with the request id, the server name
and the environment, with API secrets, SAS signatures and account keys scrubbed from the whole event."""
from __future__ import annotations

import logging
import re
import socket

from app.logs import redact, request_id_var

# Values under keys like these are dropped whatever they look like (headers, extra fields, settings).
_SECRET_KEY = re.compile(r"(?i)secret|password|passwd|pepper|token|signature|accountkey|account_key|"
                         r"connection_string|dsn|^sig$|authorization|cookie")
_FILTERED = "[Filtered]"


def init(settings, release: str) -> bool:
    """Start reporting (once per process) when SENTRY_DSN is set; True when it is."""
    if settings.sentry_dsn is None:
        return False
    # Imported only when reporting is on: the SDK costs every process ~75 ms to import (a worker starts in ~0.8 s).
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment,
        server_name=settings.server_name or socket.gethostname(),
        release=f"label-store@{release}",
        send_default_pii=False,
        include_local_variables=False,  # a frame's locals may hold a secret under any name
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, "authentication-secret", "authentication_secret",
                                               "apisecret", "api_key_pepper", "accountkey", "sig"]),
        # An ERROR log line with an exception is what our error handler writes for every unexpected error
        # (and the worker for a job out of attempts); lower lines become breadcrumbs.
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        auto_enabling_integrations=False,
        traces_sample_rate=None,
        before_send=before_send,
        before_breadcrumb=lambda crumb, _hint: scrub(crumb),
    )
    return True


def before_send(event: dict, _hint: dict) -> dict | None:
    request_id = request_id_var.get()
    if request_id != "-":
        event.setdefault("tags", {})["request_id"] = request_id
    return scrub(event)


def scrub(value, key: str | None = None):
    """Every string masked with app.logs.redact; values under secret-looking keys dropped."""
    if key is not None and _SECRET_KEY.search(key) and isinstance(value, (str, bytes, int)):
        return _FILTERED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        # Headers may come as [name, value] pairs.
        if len(value) == 2 and isinstance(value[0], str) and _SECRET_KEY.search(value[0]):
            return [value[0], _FILTERED]
        return [scrub(v) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(list(value)))
    return value
