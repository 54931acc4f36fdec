"""Sending work to Celery. Always after commit (a worker must find the rows it is sent), and
never allowed to fail the caller: if the broker is down the rows stay pending in PostgreSQL
and the watchdog sends them again when it answers."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

logger = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}


def _publish(task, args: list, countdown: float | None = None) -> bool:
    try:
        # One quick retry (it replaces a pooled connection the broker dropped, e.g. after a
        # restart), no more: a dead broker must not hold up an API answer or a worker; the
        # row in the database is what guarantees the work gets done.
        task.apply_async(args=args, countdown=countdown, retry=True, retry_policy=RETRY_POLICY)
    except Exception as exc:  # any broker failure: the watchdog resends
        logger.warning(
            "could not publish %s (%s); the watchdog will resend it",
            task.name,
            exc.__class__.__name__,
        )
        return False
    return True


def send_source_tasks(task_ids: Iterable[int], *, countdown: float | None = None) -> None:
    ids = list(task_ids)
    if not ids:
        return

    def publish() -> None:
        from dsar.tasks import run_source_task

        for task_id in ids:
            _publish(run_source_task, [task_id], countdown)

    transaction.on_commit(publish)


def send_finalize(request_id: object) -> None:
    def publish() -> None:
        from dsar.tasks import finalize_request

        _publish(finalize_request, [str(request_id)])

    transaction.on_commit(publish)
