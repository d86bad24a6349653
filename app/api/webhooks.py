from app.api import iso
from app.webhooks import service


def webhook_out(webhook) -> dict:
    return {"webhook_id": webhook.id, "url": webhook.url, "events": webhook.events, "active": webhook.active,
            "date_created": iso(webhook.date_created),
            "created_by": webhook.created_by.name if webhook.created_by else None}


def delivery_out(delivery) -> dict:
    return {"delivery_id": delivery.id, "webhook_id": delivery.webhook_id, "event_id": str(delivery.event_id),
            "event_type": delivery.event.type, "event_created_at": iso(delivery.event.created_at),
            "status": delivery.status, "attempts": delivery.attempts, "next_attempt_at": iso(delivery.next_attempt_at),
            "last_attempt_at": iso(delivery.last_attempt_at), "last_status": delivery.last_status,
            "last_response": delivery.last_response, "last_error": delivery.last_error,
            "delivered_at": iso(delivery.delivered_at)}


def list_webhooks(page=1, per_page=50):
    result = service.list_webhooks(page=page, per_page=per_page)
    return {"pagination": result.pagination, "webhooks": [webhook_out(w) for w in result.items]}


def register(body):
    webhook, secret = service.register(url=body["url"], events=body["events"], secret=body.get("secret"))
    return {**webhook_out(webhook), "secret": secret}, 201


def get_webhook(webhook_id):
    return webhook_out(service.get(webhook_id))


def delete_webhook(webhook_id):
    return webhook_out(service.delete(webhook_id))


def list_deliveries(webhook_id, cursor="", per_page=50, status=None):
    rows, next_cursor = service.deliveries(webhook_id, cursor=cursor, per_page=per_page, status=status)
    return {"next_cursor": next_cursor, "deliveries": [delivery_out(d) for d in rows]}


def redeliver(webhook_id, delivery_id):
    return delivery_out(service.redeliver(webhook_id, delivery_id)), 202
