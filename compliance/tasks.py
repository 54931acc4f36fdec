"""Celery tasks of the core app. Thin: they take primary keys and call a service; the
database holds every run's state, so a task delivered twice or after a crash does no harm."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from compliance.dispatch import task_publish
from compliance.models import RetentionRunStatus
from compliance.retention import retention_run_dispatch, retention_run_execute, retention_runs_due


# acks_late: a worker killed mid-run leaves the message on the broker and the run resumes
# from its cursors; the guarded state changes in retention_run_execute make the redelivery
# harmless.
@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def retention_run_execute_task(run_id: int) -> None:
    run = retention_run_execute(run_id=run_id)
    if run.status in (RetentionRunStatus.PENDING, RetentionRunStatus.RUNNING):
        # A source is still held by a worker that may have died: look again once its lease
        # has run out, when this task may take the source over and resume it.
        task_publish(
            retention_run_execute_task, [run_id], countdown=settings.RETENTION_LEASE_SECONDS
        )


@shared_task(acks_late=True, ignore_result=True)
def retention_enforce_scheduled() -> None:
    """The daily run (settings.RETENTION_SCHEDULE, GDPR Art. 5(1)(e)): resume any unfinished
    run, plan a new one, and hand each to a worker once the plan is committed."""
    for run_id in retention_runs_due(actor="celery-beat"):
        retention_run_dispatch(run_id=run_id)


@shared_task(acks_late=True, ignore_result=True)
def mentions_index_task(scan_id: int) -> None:
    """Index the mentions of the messages one ingest stored (compliance.mention_index)."""
    from compliance.mention_index import mentions_index_pending

    mentions_index_pending(scan_ids=[scan_id], wait=False)


@shared_task(acks_late=True, ignore_result=True)
def mentions_index_sweep() -> None:
    """Index whatever pending scan a lost task or a broker outage left behind."""
    from compliance.mention_index import mentions_index_pending

    mentions_index_pending(wait=False)
