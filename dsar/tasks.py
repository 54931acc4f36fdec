"""Celery tasks of data subject requests: thin, take ids, call a service. All run with late
acknowledgement (a worker killed mid-run leaves the message to be delivered again) and are
idempotent through the guarded state changes in dsar.services.execution."""

from __future__ import annotations

from celery import shared_task

from dsar import services


@shared_task(name="dsar.run_source_task", acks_late=True, ignore_result=True)
def run_source_task(task_id: int) -> str:
    # Retries are not Celery's: the service puts the row back to pending with a backoff and
    # sends it again, so the schedule survives a lost broker (the watchdog resends).
    return services.source_task_execute(task_id=task_id).status


@shared_task(name="dsar.finalize_request", acks_late=True, ignore_result=True)
def finalize_request(request_id: str) -> str:
    return services.request_finalize(request_id=request_id)


@shared_task(name="dsar.watchdog", acks_late=True, ignore_result=True)
def watchdog() -> dict:
    report = services.source_tasks_watchdog()
    return {
        "reset": report.reset,
        "resent": report.resent,
        "gave_up": report.gave_up,
        "finalize_resent": report.finalize_resent,
    }


@shared_task(name="dsar.purge_expired_exports", acks_late=True, ignore_result=True)
def purge_expired_exports() -> int:
    return services.exports_purge_expired()


@shared_task(name="dsar.purge_request_records", acks_late=True, ignore_result=True)
def purge_request_records() -> int:
    return services.request_records_purge()
