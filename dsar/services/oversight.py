"""Human oversight of requests in the DPO workspace: who works a request, and the second
approver of a large erasure (four-eyes).

An erasure cannot be undone. With ``DSAR_FOUR_EYES_ENABLED`` on, an erasure whose sources
hold more than ``DSAR_FOUR_EYES_THRESHOLD`` records of the subject needs two approvals by
two different people (GDPR Art. 5(2) accountability, Art. 32(4); EU AI Act Art. 14 where
the request came through an AI assistant). The records are counted when the first person
approves, across the enabled sources no legal hold covers; when a source cannot be counted
the rule applies anyway, because an unknown number may be a large one.

``erasure_records_estimate`` talks to the log sources: call it outside a transaction."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compliance.audit import audit_record
from compliance.connectors import SourceUnavailable, get_connector
from compliance.models import LogSource
from compliance.services import ConflictError, ServiceError
from compliance.workspace.permissions import request_systems_q, scope_filter, staff_scope
from dsar.holds import held_sources_for
from dsar.models import OPEN_STATUSES, DataSubjectRequest, RequestStatus, RequestType
from dsar.sources import keys_for

S = RequestStatus
ASSIGNABLE_STATUSES = OPEN_STATUSES | {S.PARTIALLY_COMPLETED}


def erasure_records_estimate(*, request: DataSubjectRequest) -> int | None:
    """How many records of the subject the erasure would touch now (keyed records and
    mentions, in every enabled source no hold covers); None when a source cannot say."""
    keys = keys_for(request)
    if keys.is_empty:
        return 0
    held = held_sources_for(request)
    total = 0
    for source in LogSource.objects.filter(enabled=True).exclude(pk__in=list(held)):
        try:
            counts = get_connector(source).count(keys)
        except (SourceUnavailable, ServiceError, OSError):
            return None
        if counts.skipped:
            return None  # unreadable parts may hold the subject's records
        total += counts.total
    return total


def four_eyes_applies(request: DataSubjectRequest) -> bool:
    return bool(settings.DSAR_FOUR_EYES_ENABLED) and request.type == RequestType.ERASURE


def second_approval_needed(records: int | None) -> bool:
    return records is None or records > settings.DSAR_FOUR_EYES_THRESHOLD


def request_first_approval(
    *, request: DataSubjectRequest, actor: str, records: int | None
) -> DataSubjectRequest:
    """Record the first of the two approvals; the request keeps waiting for the second."""
    now = timezone.now()
    with transaction.atomic():
        updated = DataSubjectRequest.objects.filter(
            pk=request.pk, status=S.AWAITING_APPROVAL, first_approved_by=""
        ).update(
            first_approved_by=actor,
            first_approved_at=now,
            approval_records_estimate=records,
            updated_at=now,
        )
        if updated != 1:
            raise ConflictError(
                "The request was changed by someone else meanwhile; reload it.", field="status"
            )
        audit_record(
            actor=actor,
            action="dsar.request.first_approval",
            target=request,
            detail={
                "type": request.type,
                "records": records,
                "threshold": settings.DSAR_FOUR_EYES_THRESHOLD,
            },
        )
    request.first_approved_by, request.first_approved_at = actor, now
    request.approval_records_estimate = records
    return request


def request_assign(*, request: DataSubjectRequest, assignee, actor: str) -> DataSubjectRequest:
    """Give the request to a member of the privacy staff (``assignee=None`` takes it back).
    They must be able to see it: a request is never handed to someone outside its systems."""
    if request.status not in ASSIGNABLE_STATUSES:
        raise ConflictError("Only a request still being worked on can be assigned.", field="status")
    if assignee is not None:
        if not assignee.is_active or not assignee.is_staff:
            raise ServiceError("Requests go to active staff only.", field="assignee")
        visible = scope_filter(
            DataSubjectRequest.objects.filter(pk=request.pk),
            staff_scope(assignee),
            request_systems_q,
        )
        if not visible.exists():
            raise ServiceError(
                "This person does not work on the systems of this request.", field="assignee"
            )
    previous = request.assignee_id
    new = assignee.pk if assignee is not None else None
    if previous == new:
        return request
    now = timezone.now()
    with transaction.atomic():
        DataSubjectRequest.objects.filter(pk=request.pk).update(assignee_id=new, updated_at=now)
        audit_record(
            actor=actor,
            action="dsar.request.assigned",
            target=request,
            detail={"assignee": new, "previous": previous},
        )
    request.assignee = assignee
    request.updated_at = now
    return request
