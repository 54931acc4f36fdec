"""Sending work to Celery. Always after commit (a worker must find the rows it is sent), and
never allowed to fail the caller: if the broker is down the rows stay pending in PostgreSQL
and the watchdog sends them again when it answers."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from compliance.dispatch import task_publish


def send_source_tasks(task_ids: Iterable[int], *, countdown: float | None = None) -> None:
    ids = list(task_ids)
    if not ids:
        return

    def publish() -> None:
        from dsar.tasks import run_source_task

        for task_id in ids:
            task_publish(run_source_task, [task_id], countdown=countdown)

    transaction.on_commit(publish)


def send_finalize(request_id: object) -> None:
    def publish() -> None:
        from dsar.tasks import finalize_request

        task_publish(finalize_request, [str(request_id)])

    transaction.on_commit(publish)
