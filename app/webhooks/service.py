"""Registering webhooks, listing their deliveries, redelivering, and `emit`: the outbox's one way in."""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from urllib.parse import urlsplit

from sqlalchemy import select

from app import jobs
from app.auth.policy import acting_caller
from app.errors import NotFound, Unprocessable
from app.extensions import db
from app.ingest import fetch
from app.models import Webhook, WebhookDelivery, WebhookEvent
from app.services import audit
from app.services.lookup import get_or_404
from app.services.pagination import Page, decode_cursor, encode_cursor, paginate
from app.state import app_state
from app.webhooks import EVENTS, TASK, signing

logger = logging.getLogger(__name__)


def pepper() -> str:
    return app_state().settings.api_key_pepper.get_secret_value()


def guard_options() -> fetch.FetchOptions:
    """URL import's guard and its setting (URL_IMPORT_ALLOW_PRIVATE_NETWORKS), with the webhook's timeouts."""
    settings = app_state().settings
    timeout = settings.webhook_timeout_seconds
    return replace(fetch.options_from(settings), connect_timeout=timeout, read_timeout=timeout,
                         user_agent=f"{fetch.USER_AGENT.split(' ')[0]} (+webhooks)")


def register(*, url: str, events: list[str], secret: str | None = None) -> tuple[Webhook, str]:
    """A new webhook and its secret (generated when not given): the secret is returned here only."""
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise Unprocessable(f"unknown event {unknown[0]!r}; events are {', '.join(EVENTS)}", field="events")
    if refusal := fetch.check_url(url, guard_options()):
        raise Unprocessable(f"url {refusal}", field="url")
    secret = secret or signing.new_secret()
    caller = acting_caller.get()
    webhook = Webhook(url=url, events=sorted(set(events), key=EVENTS.index),
                      secret_encrypted=signing.encrypt(secret, pepper()),
                      created_by_id=caller.principal_id if caller else None)
    db.session.add(webhook)
    db.session.flush()
    audit.record("create", "webhook", webhook.id, None, _audited(webhook))
    logger.info("webhook registered", extra={"webhook_id": webhook.id, "events": webhook.events})
    return webhook, secret


def _audited(webhook: Webhook) -> dict:
    """What the trail keeps of a webhook: its events and the URL's origin only (a receiver's path or query
    often holds a token of its own; the secret is never recorded)."""
    parts = urlsplit(webhook.url)
    return {"url": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…", "events": list(webhook.events)}


def list_webhooks(*, page: int, per_page: int) -> Page:
    return paginate(select(Webhook).order_by(Webhook.id), page, per_page)


def get(webhook_id: int) -> Webhook:
    return get_or_404(Webhook, webhook_id, "webhook")


def delete(webhook_id: int) -> Webhook:
    """The webhook and its deliveries go; a delivery job still queued finds nothing and ends."""
    webhook = get(webhook_id)
    audit.record("delete", "webhook", webhook_id, _audited(webhook), None)
    db.session.delete(webhook)
    db.session.flush()
    logger.info("webhook deleted", extra={"webhook_id": webhook_id})
    return webhook


def deliveries(webhook_id: int, *, cursor: str, per_page: int,
               status: str | None = None) -> tuple[list[WebhookDelivery], str | None]:
    """Newest first, keyset-paged on id (index webhook_id, id); no count."""
    get(webhook_id)
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before := decode_cursor(cursor):
        query = query.where(WebhookDelivery.id < before)
    rows = db.session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(per_page + 1)).unique().all()
    more = len(rows) > per_page
    rows = rows[:per_page]
    return rows, encode_cursor(rows[-1].id) if more else None


def redeliver(webhook_id: int, delivery_id: int) -> WebhookDelivery:
    """Queue the delivery again, whatever its state: the same event (id, body), a fresh day of retries."""
    delivery = db.session.scalar(select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == webhook_id).with_for_update(
        of=WebhookDelivery))
    if delivery is None:
        get(webhook_id)
        raise NotFound(f"no delivery {delivery_id} of webhook {webhook_id}")
    now = datetime.now(timezone.utc)
    delivery.status, delivery.failures, delivery.queued_at, delivery.next_attempt_at = "pending", 0, now, now
    delivery.delivered_at = None
    defer_attempt(delivery)
    return delivery


def emit(event_type: str, payload: dict) -> uuid.UUID:
    """Write the event, and a delivery with its job for each active webhook subscribed to it, in the current
    transaction: the event exists exactly when the change that raised it commits."""
    assert event_type in EVENTS, event_type
    event = WebhookEvent(id=uuid.uuid4(), type=event_type,
                         payload=json.loads(json.dumps(payload, default=lambda v: v.isoformat())))
    db.session.add(event)
    subscribed = db.session.scalars(select(Webhook.id).where(
        Webhook.active.is_(True), Webhook.events.any(event_type)).order_by(Webhook.id)).all()
    if subscribed:
        db.session.flush()  # the event row first: deliveries refer to it
        now = datetime.now(timezone.utc)
        rows = [WebhookDelivery(event_id=event.id, webhook_id=w, status="pending", attempts=0, failures=0,
                                queued_at=now, next_attempt_at=now) for w in subscribed]
        db.session.add_all(rows)
        db.session.flush()
        for delivery in rows:
            defer_attempt(delivery)
    return event.id


def defer_attempt(delivery: WebhookDelivery, at: datetime | None = None) -> None:
    """The job for the delivery's next attempt (its number: attempts so far), at `at` (now when None). A job whose
    attempt was already made (a duplicate, an earlier schedule) finds the number moved on and ends."""
    jobs.defer(TASK, schedule_at=at, delivery_id=delivery.id, attempt=delivery.attempts)
