"""Thin Celery tasks: they take ids and call a service. The database holds every state."""

from __future__ import annotations

from celery import shared_task

from integrations.opendsr import callbacks


@shared_task(acks_late=True, ignore_result=True)
def opendsr_callback_deliver_task(callback_id: int) -> str:
    # acks_late: a worker killed mid-send leaves the message to be redelivered; the lease
    # in opendsr_callback_deliver makes the second run harmless.
    return callbacks.opendsr_callback_deliver(callback_id=callback_id)


@shared_task(ignore_result=True)
def opendsr_callbacks_dispatch_due_task() -> int:
    return callbacks.opendsr_callbacks_dispatch_due()
