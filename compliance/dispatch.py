"""Sending work to Celery: always after commit (a worker must find the rows it is sent), and
never allowed to fail the caller. The database row is what guarantees the work gets done;
if the broker is down the row stays pending and a periodic sweep sends it again."""

from __future__ import annotations

import logging

from django.db import transaction

logger = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}


def task_publish(task, args: list | tuple, *, countdown: float | None = None) -> bool:
    """Publish now; False (logged, without the arguments) if the broker refused."""
    try:
        # One quick retry (it replaces a pooled connection the broker dropped, e.g. after a
        # restart), no more: a dead broker must not hold up an API answer or a worker.
        task.apply_async(
            args=list(args), countdown=countdown or None, retry=True, retry_policy=RETRY_POLICY
        )
    except Exception as exc:  # any broker failure: the periodic sweep resends
        logger.warning(
            "could not publish %s (%s); the periodic sweep will resend it",
            task.name,
            exc.__class__.__name__,
        )
        return False
    return True


def task_publish_on_commit(task, args: list | tuple, *, countdown: float | None = None) -> None:
    """Publish once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: task_publish(task, args, countdown=countdown))
