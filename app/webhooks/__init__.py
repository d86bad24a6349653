"""Webhooks: admins register endpoints for events; each event is written to an outbox in the transaction of the
change it tells of (`service.emit`), with a delivery per subscribed endpoint and a durable job that POSTs it,
signed (`signing`), at least once, with backoff for about a day (`delivery`)."""

EVENTS = ("image_set.finished", "image_set.failed", "import.finished", "campaign.completed", "campaign.finished",
          "dataset.exported", "dataset.registered", "dataset.failed", "key.revoked")
TASK = "deliver_webhook"  # app.jobs.webhook_tasks
