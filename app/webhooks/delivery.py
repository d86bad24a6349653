"""One attempt of one delivery (the deliver_webhook job, app.jobs.webhook_tasks), and what follows it.

The job names the delivery and the attempt it is for (the delivery's `attempts` when it was queued). It runs
alone on the delivery (an advisory lock, app.jobs.exclusive), reads what to send, POSTs it with no transaction
open, then records the answer: delivered on a 2xx; otherwise the next attempt is queued after a backoff
(WEBHOOK_FIRST_RETRY_SECONDS doubling up to WEBHOOK_MAX_RETRY_SECONDS) in the same transaction, until
WEBHOOK_RETRY_FOR_SECONDS after the delivery was queued, when it is marked failed. A job whose attempt was
already recorded (a duplicate, a schedule overtaken by a redelivery) ends without sending. A worker killed
mid-POST records nothing, so the re-run job sends again: at least once, always with the same event id and body.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from app.errors import WorkInterrupted
from app.extensions import db
from app.ingest import fetch
from app.logs import redact
from app.models import WebhookDelivery
from app.services.failures import shown_to_users
from app.state import app_state
from app.unit_of_work import unit_of_work
from app.webhooks import service, signing

logger = logging.getLogger(__name__)

EXCERPT_CHARS = 500


def body_of(delivery: WebhookDelivery) -> bytes:
    """What every attempt of the event sends, byte for byte."""
    event = delivery.event
    return json.dumps({"id": str(event.id), "type": event.type, "created_at": event.created_at.isoformat(),
                       "data": event.payload}, sort_keys=True, separators=(",", ":")).encode()


def deliver(delivery_id: int, attempt: int, *, should_stop: Callable[[], bool] = lambda: False) -> None:
    with unit_of_work():
        delivery = db.session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != "pending" or delivery.attempts != attempt:
            return  # deleted with its webhook, already settled, or this attempt was made
        webhook = service.get(delivery.webhook_id)
        url, event_id, event_type, body = webhook.url, str(delivery.event_id), delivery.event.type, body_of(delivery)
        try:
            secret = signing.decrypt(webhook.secret_encrypted, service.pepper())
        except signing.SecretUnreadable as unreadable:
            secret, problem = None, str(unreadable)
    if should_stop():
        raise WorkInterrupted(f"webhook delivery {delivery_id} was stopped before its attempt")
    if secret is None:
        posted = fetch.Posted(None, b"", problem)
    else:
        timestamp = str(int(time.time()))
        posted = fetch.post_once(url, body, signing.headers(secret, event_id, event_type, timestamp, body),
                                 service.guard_options(), timeout=app_state().settings.webhook_timeout_seconds)
    _record(delivery_id, attempt, posted, secret)


def _locked(delivery_id: int) -> WebhookDelivery | None:
    return db.session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                             .with_for_update(of=WebhookDelivery))


def _excerpt(head: bytes, secret: str | None) -> str | None:
    if not head:
        return None
    text = head.decode("utf-8", "replace")
    if secret:
        text = text.replace(secret, "REDACTED")
    text = "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in redact(text))
    return text[:EXCERPT_CHARS]


def _record(delivery_id: int, attempt: int, posted: fetch.Posted, secret: str | None) -> None:
    settings = app_state().settings
    with unit_of_work():
        delivery = _locked(delivery_id)
        if delivery is None or delivery.attempts != attempt:
            return
        now = datetime.now(timezone.utc)
        delivery.attempts += 1
        delivery.last_attempt_at, delivery.last_status = now, posted.status
        delivery.last_response = _excerpt(posted.head, secret)
        ok = posted.status is not None and 200 <= posted.status < 300
        delivery.last_error = None if ok else (posted.error or f"HTTP {posted.status}")[:1000]
        if ok:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
            logger.info("webhook delivered", extra={"delivery_id": delivery_id, "attempts": delivery.attempts})
            return
        delivery.failures += 1
        wait = min(settings.webhook_first_retry_seconds * 2 ** (delivery.failures - 1),
                   settings.webhook_max_retry_seconds)
        next_at = now + timedelta(seconds=wait)
        if next_at > delivery.queued_at + timedelta(seconds=settings.webhook_retry_for_seconds):
            delivery.status, delivery.next_attempt_at = "failed", None
            logger.warning("webhook delivery failed for good", extra={
                "delivery_id": delivery_id, "attempts": delivery.attempts, "error": delivery.last_error})
            return
        delivery.next_attempt_at = next_at
        service.defer_attempt(delivery, next_at)
        logger.info("webhook delivery attempt failed; retrying", extra={
            "delivery_id": delivery_id, "attempt": delivery.attempts, "retry_at": next_at.isoformat(),
            "error": delivery.last_error})


def give_up(delivery_id: int, exc: BaseException) -> None:
    """The job itself kept failing (not the endpoint: the database, a bug): the delivery shows where to look."""
    db.session.rollback()
    with unit_of_work():
        delivery = _locked(delivery_id)
        if delivery is not None and delivery.status == "pending":
            delivery.status, delivery.last_error, delivery.next_attempt_at = "failed", shown_to_users(exc), None
