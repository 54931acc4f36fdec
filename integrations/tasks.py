"""Thin Celery tasks: they take ids and call a service. The database holds every state."""

from __future__ import annotations

from celery import shared_task

from integrations import services


@shared_task(acks_late=True, ignore_result=True)
def webhook_deliver_task(delivery_id: int) -> str:
    # acks_late: a worker killed mid-send leaves the message to be redelivered; the lease
    # in webhook_deliver makes the second run harmless.
    return services.webhook_deliver(delivery_id=delivery_id)


@shared_task(ignore_result=True)
def webhook_dispatch_due_task() -> int:
    return services.webhook_dispatch_due()


@shared_task(ignore_result=True)
def idempotency_purge_task() -> int:
    return services.idempotency_records_purge()
