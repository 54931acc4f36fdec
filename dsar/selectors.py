"""Named read queries of data subject requests."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from compliance.models import ApiClient
from dsar.models import (
    OPEN_STATUSES,
    DataSubjectRequest,
    SourceTask,
    SourceTaskStatus,
)


def requests_open() -> QuerySet[DataSubjectRequest]:
    return DataSubjectRequest.objects.filter(status__in=OPEN_STATUSES)


def requests_overdue(*, now=None) -> QuerySet[DataSubjectRequest]:
    """Open requests past their deadline (GDPR Art. 12(3), CCPA §7021)."""
    now = now or timezone.now()
    return requests_open().filter(due_at__lt=now).order_by("due_at")


def requests_due_soon(*, days: int = 7, now=None) -> QuerySet[DataSubjectRequest]:
    """Open requests whose deadline falls within ``days`` (and has not passed)."""
    now = now or timezone.now()
    return (
        requests_open()
        .filter(due_at__gte=now, due_at__lt=now + timedelta(days=days))
        .order_by("due_at")
    )


def requests_confirmation_due(*, now=None) -> QuerySet[DataSubjectRequest]:
    """CCPA §7021(a): requests whose receipt has not been confirmed (no email to send the
    notice to); staff must confirm another way before confirmation_due_at."""
    return (
        DataSubjectRequest.objects.filter(
            confirmation_due_at__isnull=False, confirmed_at__isnull=True
        )
        .exclude(status__in=["cancelled"])
        .order_by("confirmation_due_at")
    )


def requests_visible_to(client: ApiClient) -> QuerySet[DataSubjectRequest]:
    """A client bound to a system sees only the requests it filed itself; an unbound
    client (the company's own back office) sees all."""
    queryset = DataSubjectRequest.objects.select_related("subject")
    if client.system_id is not None:
        queryset = queryset.filter(filed_by=client)
    return queryset


def request_progress(request: DataSubjectRequest) -> dict:
    """Sources done of total and records found."""
    rows = list(
        SourceTask.objects.filter(request=request)
        .values("status")
        .annotate(n=Count("pk"), found=Sum("records_found"))
    )
    by_status = {row["status"]: row["n"] for row in rows}
    return {
        "sources_total": sum(by_status.values()),
        "sources_done": by_status.get(SourceTaskStatus.DONE, 0)
        + by_status.get(SourceTaskStatus.HELD, 0),
        "sources_failed": by_status.get(SourceTaskStatus.FAILED, 0),
        "records_found": sum(row["found"] or 0 for row in rows),
    }


def source_tasks_failed() -> QuerySet[SourceTask]:
    return SourceTask.objects.filter(status=SourceTaskStatus.FAILED).select_related(
        "request", "source"
    )


def request_type_metrics(*, since, until) -> list[dict]:
    """CCPA §7102-style figures per type: received, complied (in whole or part), denied."""
    return list(
        DataSubjectRequest.objects.filter(received_at__gte=since, received_at__lt=until)
        .values("type")
        .annotate(
            received=Count("pk"),
            complied=Count("pk", filter=Q(status__in=["completed", "partially_completed"])),
            denied=Count("pk", filter=Q(status="rejected")),
        )
        .order_by("type")
    )
