"""The webhook delivery task (app.webhooks.delivery): registered beside app.jobs.tasks through the app's import
paths; alone on its delivery while it runs. The endpoint's failures are not the job's: each attempt is recorded
and the next one scheduled by the delivery itself (about a day of backoff); the queue's own retries (BACKOFF)
are for the job failing (the database away, a bug)."""
from __future__ import annotations

from procrastinate import JobContext

from app.jobs import procrastinate_app
from app.jobs.tasks import BACKOFF, one_run
from app.webhooks import TASK, delivery

# advisory locks are (hashtext(kind), int4 key): a delivery id past 2**31 still gets a lock, shared with one other
_KEYS = 2 ** 32


@procrastinate_app.task(name=TASK, retry=BACKOFF, pass_context=True)
def deliver_webhook(context: JobContext, delivery_id: int, attempt: int) -> None:
    """Attempt number `attempt` (counting from 0) of the delivery: POST the signed event, record the answer."""
    key = (delivery_id + 2 ** 31) % _KEYS - 2 ** 31
    with one_run(context, "webhook_delivery", key, on_final_failure=lambda exc: delivery.give_up(delivery_id, exc)):
        delivery.deliver(delivery_id, attempt, should_stop=context.should_abort)
