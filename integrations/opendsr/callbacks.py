"""The OpenDSR status of a request, and the signed callbacks that report each change of it.

A data subject request moves through this service's own lifecycle; the controller sees the
four statuses of the specification. Every transition of a request calls
``opendsr_status_changed`` inside its transaction (``dsar.services.lifecycle._transition``):
when the OpenDSR status it maps to differs from the one last announced, one outbox row per
``status_callback_urls`` entry is written there and then, and sent after commit. The sending
reuses the webhooks' transport (no redirects, private targets refused in production) and
their backoff settings; reports to one URL about one request go out in order.

Not to be imported by ``dsar.services`` indirectly through ``integrations.opendsr.services``:
that module files requests through ``dsar.services`` and would make an import cycle.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from compliance.audit import audit_record
from compliance.dispatch import task_publish
from dsar.links import download_url
from dsar.models import EXPORT_TYPES, DataSubjectRequest, RequestStatus
from integrations.models import DeliveryStatus
from integrations.opendsr.models import OpenDsrCallback, OpenDsrRequest, OpenDsrStatus
from integrations.opendsr.selectors import (
    opendsr_callbacks_due,
    opendsr_callbacks_earlier_pending,
)
from integrations.opendsr.signing import SigningUnavailable, processor_domain, signature_headers
from integrations.services import outbox_retryable, webhook_backoff_seconds
from integrations.transport import SendResult, webhook_send

S = RequestStatus
D = OpenDsrStatus
_STATUS = {
    S.RECEIVED: D.PENDING,
    S.AWAITING_VERIFICATION: D.PENDING,
    S.VERIFIED: D.PENDING,
    S.AWAITING_APPROVAL: D.PENDING,
    S.IN_PROGRESS: D.IN_PROGRESS,
    # Its failed sources are tried again: the request is not fulfilled yet.
    S.PARTIALLY_COMPLETED: D.IN_PROGRESS,
    S.COMPLETED: D.COMPLETED,
    # OpenDSR has no "rejected": the request ended without being carried out.
    S.REJECTED: D.CANCELLED,
    S.CANCELLED: D.CANCELLED,
}


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def effective_request(link: OpenDsrRequest) -> DataSubjectRequest:
    """The request that answers the controller, read afresh. One filed while an identical
    request of the same person was open is cancelled as its duplicate at once; that open
    request answers both, so its status is the one reported."""
    dsr = DataSubjectRequest.objects.get(pk=link.request_id)
    if dsr.duplicate_of_id is not None and dsr.status == S.CANCELLED:
        return DataSubjectRequest.objects.get(pk=dsr.duplicate_of_id)
    return dsr


def opendsr_status_of(link: OpenDsrRequest, dsr: DataSubjectRequest | None = None) -> str:
    if link.cancelled_at is not None:
        return D.CANCELLED
    # A status added to the lifecycle later counts as work going on until it is mapped
    # here: a status change must never fail because its announcement cannot be named.
    return _STATUS.get((dsr or effective_request(link)).status, D.IN_PROGRESS)


def public_base() -> str:
    """Where links in callbacks point: DSAR_PUBLIC_BASE_URL, else the processor domain."""
    return settings.DSAR_PUBLIC_BASE_URL.rstrip("/") or f"https://{processor_domain()}"


def results_url_of(dsr: DataSubjectRequest, *, base: str) -> str | None:
    """The download link of a completed access or portability request, while it lives."""
    if (
        dsr.type not in EXPORT_TYPES
        or dsr.status != S.COMPLETED
        or not dsr.export_path
        or dsr.export_deleted_at is not None
        or dsr.export_expires_at is None
        or dsr.export_expires_at <= timezone.now()
    ):
        return None
    return f"{base}{download_url(dsr)}"


def status_body(
    link: OpenDsrRequest, *, dsr: DataSubjectRequest, status: str, base: str
) -> dict[str, object]:
    """The status object of section 8.3, as ``GET /requests/{id}`` answers it."""
    return {
        "controller_id": str(link.client_id),
        "expected_completion_time": rfc3339(dsr.due_at),
        "subject_request_id": str(link.subject_request_id),
        "request_status": status,
        "api_version": link.api_version,
        "results_url": results_url_of(dsr, base=base),
    }


def _dispatch(callback_id: int, countdown: int | None = None) -> None:
    from integrations.opendsr.tasks import opendsr_callback_deliver_task

    task_publish(opendsr_callback_deliver_task, [callback_id], countdown=countdown)


def _write(link: OpenDsrRequest, *, dsr: DataSubjectRequest, status: str) -> list[OpenDsrCallback]:
    written = []
    base = public_base()
    for url in link.status_callback_urls:
        last = OpenDsrCallback.objects.filter(opendsr_request=link, url=url).aggregate(
            last=Max("sequence")
        )["last"]
        body = {
            **status_body(link, dsr=dsr, status=status, base=base),
            "status_callback_url": url,
        }
        written.append(
            OpenDsrCallback.objects.create(
                opendsr_request=link,
                url=url,
                sequence=(last or 0) + 1,
                request_status=status,
                body=json.dumps(body, sort_keys=True, separators=(",", ":")),
            )
        )
    for callback in written:
        transaction.on_commit(lambda pk=callback.pk: _dispatch(pk))
    return written


def opendsr_announce(*, link: OpenDsrRequest, initial: bool = False) -> list[OpenDsrCallback]:
    """Write the callbacks of a status change of ``link``, if its OpenDSR status changed
    since the last announcement. ``initial``: the request was just received, which is
    announced as ``pending`` even when it has already moved on. The caller holds the row
    of ``link`` locked (or just created it), inside the transaction of the change."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("OpenDSR callbacks are written inside the transaction of the change.")
    dsr = effective_request(link)
    status = opendsr_status_of(link, dsr)
    statuses = [D.PENDING] if initial and status != D.PENDING else []
    if status != link.announced_status:
        statuses.append(status)
    written = []
    for each in statuses:
        written += _write(link, dsr=dsr, status=each)
    if statuses:
        OpenDsrRequest.objects.filter(pk=link.pk).update(announced_status=status)
        link.announced_status = status
    return written


def opendsr_status_changed(*, request: DataSubjectRequest) -> list[OpenDsrCallback]:
    """Hook of every status change of a data subject request, called in its transaction:
    announce the change to the controllers of the OpenDSR requests it answers (its own, and
    those of requests cancelled as its duplicates)."""
    answered = [
        request.pk,
        *DataSubjectRequest.objects.filter(duplicate_of_id=request.pk).values_list("pk", flat=True),
    ]
    written = []
    # The lock orders concurrent announcements of one request: each sees the last one's.
    links = (
        OpenDsrRequest.objects.select_for_update().filter(request_id__in=answered).order_by("pk")
    )
    for link in links:
        written += opendsr_announce(link=link)
    return written


def _dispatch_lane_head(callback: OpenDsrCallback) -> None:
    head = (
        OpenDsrCallback.objects.filter(
            opendsr_request_id=callback.opendsr_request_id,
            url=callback.url,
            status=DeliveryStatus.PENDING,
        )
        .order_by("sequence")
        .values_list("pk", "next_attempt_at")
        .first()
    )
    if head is not None and head[1] <= timezone.now():
        _dispatch(head[0])


def opendsr_callback_deliver(*, callback_id: int) -> str:
    """Try to send one callback; return what happened in a word. Safe to run twice at once
    or after a crash: the attempt is claimed with a guarded update and a lease, and only the
    holder of the lease writes the result (as ``integrations.services.webhook_deliver``).

    Not to be called inside a transaction: it waits on the network."""
    now = timezone.now()
    callback = OpenDsrCallback.objects.filter(pk=callback_id).first()
    if callback is None or callback.status != DeliveryStatus.PENDING:
        return "not_pending"
    if callback.next_attempt_at > now:
        return "not_due"
    # OpenDSR 8.5: the controller follows the request's statuses; an older report arriving
    # after a newer one would move it backwards.
    if opendsr_callbacks_earlier_pending(callback=callback).exists():
        return "waiting"
    token = uuid.uuid4()
    lease = settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 30
    claimed = OpenDsrCallback.objects.filter(
        pk=callback.pk, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(lease_token=token, next_attempt_at=now + timedelta(seconds=lease))
    if not claimed:
        return "claimed_elsewhere"

    body = callback.body.encode()
    started = time.monotonic()
    try:
        headers = signature_headers(body)
    except SigningUnavailable as exc:
        result = SendResult(None, f"not signed: {exc}", int((time.monotonic() - started) * 1000))
    else:
        result = webhook_send(
            url=callback.url,
            body=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE_TARGETS,
        )

    finished = timezone.now()
    attempts = callback.attempts + 1
    mine = OpenDsrCallback.objects.filter(
        pk=callback.pk, status=DeliveryStatus.PENDING, lease_token=token
    )
    common = {
        "attempts": F("attempts") + 1,
        "last_status_code": result.status_code,
        "last_error": result.error[:300],
        "lease_token": None,
    }
    with transaction.atomic():
        if result.ok:
            if mine.update(status=DeliveryStatus.DELIVERED, delivered_at=finished, **common):
                transaction.on_commit(lambda: _dispatch_lane_head(callback))
                return "delivered"
            return "lease_lost"
        if attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            if mine.update(status=DeliveryStatus.FAILED, **common):
                # Giving up on one report must not hold back the later ones forever.
                transaction.on_commit(lambda: _dispatch_lane_head(callback))
                return "failed"
            return "lease_lost"
        delay = webhook_backoff_seconds(attempts)
        if mine.update(next_attempt_at=finished + timedelta(seconds=delay), **common):
            transaction.on_commit(lambda: _dispatch(callback.pk, countdown=delay))
            return "retry_scheduled"
        return "lease_lost"


def opendsr_callbacks_dispatch_due(*, limit: int = 500) -> int:
    """Queue every callback that is due and first in its lane: the periodic safety net for
    dispatches lost with a broker or a worker. Sending twice is harmless."""
    due = opendsr_callbacks_due(limit=limit)
    for pk in due:
        _dispatch(pk)
    return len(due)


def opendsr_callback_retry(*, callback: OpenDsrCallback, actor: str) -> bool:
    """Send a failed callback, or a pending one out of its backoff, now. Returns False when
    it is delivered or being sent right now."""
    now = timezone.now()
    with transaction.atomic():
        updated = (
            OpenDsrCallback.objects.filter(pk=callback.pk)
            .filter(outbox_retryable(now))
            .update(status=DeliveryStatus.PENDING, next_attempt_at=now, lease_token=None)
        )
        if not updated:
            return False
        audit_record(
            actor=actor,
            action="opendsr.callback.retried",
            target=callback,
            detail={"request_status": callback.request_status, "sequence": callback.sequence},
        )
        transaction.on_commit(lambda: _dispatch(callback.pk))
    return True
