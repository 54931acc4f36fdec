"""Carrying out access, portability and erasure requests across the log sources.

The database is the source of truth; Celery only carries work:

- a run *claims* its source task with a guarded UPDATE (pending → running, attempts + 1) and
  may only write its result while the row still holds the attempt number it claimed, so a
  second delivery of the same message, or a run the watchdog gave up on, changes nothing;
- connector operations are idempotent (an erasure run twice finds nothing the second time;
  an export part is written to a temporary file and renamed), so running again is safe;
- failures go back to pending with an exponential backoff, then the source is marked
  failed without stopping the others;
- the watchdog resends rows left pending or running too long, and requests whose sources
  are all finished but that were never finalized.

Functions here talk to external systems and write files: do not call them inside a
transaction (they open their own, short ones)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, ProtectedError, Q, RestrictedError
from django.db.models.functions import Coalesce
from django.utils import timezone

from compliance.audit import audit_record
from compliance.connectors import KEYED, SourceUnavailable, get_connector
from compliance.models import DataSubject
from dsar.dispatch import send_finalize, send_source_tasks
from dsar.exports import record_as_dict
from dsar.models import (
    ANSWERED_STATUSES,
    EXPORT_TYPES,
    FAN_OUT_TYPES,
    DataSubjectRequest,
    ErasureCertificate,
    RequestRecord,
    RequestStatus,
    SourceTask,
    SourceTaskStatus,
)
from dsar.notifications import notify_subject
from dsar.services import events
from dsar.sources import (
    StrategyMisconfigured,
    erasure_strategy_for,
    keys_for,
    part_path,
    remove_parts,
    remove_request_files,
)
from integrations.services import idempotency_records_forget

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:dsar"
T = SourceTaskStatus
S = RequestStatus
HEARTBEAT_EVERY_SECONDS = 5


class Superseded(Exception):
    """The row no longer holds our attempt: the watchdog handed it to another run."""


class PermanentFailure(Exception):
    """Retrying will not help (a misconfigured source); fail the source now."""


class RemainingAfterErasure(Exception):
    def __init__(self, remaining: int):
        super().__init__(f"{remaining} records were still found after the erasure.")


@dataclass(frozen=True)
class RunOutcome:
    ran: bool
    status: str
    retry_in: float | None = None


def _safe_error(exc: BaseException) -> str:
    """A reason that may be stored and shown: connectors promise SourceUnavailable reasons
    hold no personal data; anything else is reduced to its class name."""
    if isinstance(exc, SourceUnavailable):
        text = exc.reason
    elif isinstance(exc, PermanentFailure | StrategyMisconfigured | RemainingAfterErasure):
        text = str(exc)
    else:
        text = f"Unexpected error ({exc.__class__.__name__}); see the worker log."
    return text[:500]


def _backoff_seconds(attempt: int) -> float:
    base = settings.DSAR_RETRY_BASE_SECONDS
    return float(min(base * 2 ** max(attempt - 1, 0), settings.DSAR_RETRY_MAX_SECONDS))


class _Beat:
    """Keeps a running row's heartbeat fresh so the watchdog leaves it alone, and notices
    when the row was handed to another run."""

    def __init__(self, task_id: int, attempt: int):
        self.task_id, self.attempt = task_id, attempt
        self.last = timezone.now()

    def __call__(self, *, force: bool = False) -> None:
        now = timezone.now()
        if not force and (now - self.last).total_seconds() < HEARTBEAT_EVERY_SECONDS:
            return
        alive = SourceTask.objects.filter(
            pk=self.task_id, status=T.RUNNING, attempts=self.attempt
        ).update(heartbeat_at=now)
        if alive != 1:
            raise Superseded()
        self.last = now


def source_task_execute(*, task_id: int) -> RunOutcome:
    """Run one source of one request. Safe to call any number of times for the same row."""
    now = timezone.now()
    task = SourceTask.objects.select_related("request", "source").filter(pk=task_id).first()
    if task is None or task.status != T.PENDING:
        return RunOutcome(False, task.status if task else "missing")
    if task.request.status != S.IN_PROGRESS:
        return RunOutcome(False, "request_not_in_progress")
    if task.not_before and task.not_before > now:
        return RunOutcome(False, "backing_off")
    attempt = task.attempts + 1
    claimed = SourceTask.objects.filter(
        pk=task_id, status=T.PENDING, attempts=task.attempts
    ).update(status=T.RUNNING, attempts=attempt, started_at=now, heartbeat_at=now)
    if claimed != 1:
        return RunOutcome(False, "claimed_elsewhere")
    beat = _Beat(task_id, attempt)
    try:
        if task.request.type in EXPORT_TYPES:
            result = _run_export(task, attempt, beat)
        else:
            result = _run_erasure(task, attempt, beat)
    except Superseded:
        return RunOutcome(False, "superseded")
    except Exception as exc:  # every failure is recorded on the row; the broker learns nothing
        logger.warning(
            "source task %s attempt %s failed: %s", task_id, attempt, exc.__class__.__name__
        )
        return _fail_attempt(task, attempt, exc)
    return _finish(task, attempt, result)


def _run_export(task: SourceTask, attempt: int, beat: _Beat) -> dict:
    connector = get_connector(task.source)
    keys = keys_for(task.request)
    final = part_path(task)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f"{final.name}.{attempt}.tmp")
    keyed = mentions = 0
    first = last = None
    conversations: set[str] = set()
    # No keys (an unmatched request whose identity was cleared) must search nothing, never
    # everything.
    batches = (
        iter(())
        if keys.is_empty
        else connector.export(keys, batch_size=settings.DSAR_EXPORT_BATCH_SIZE)
    )
    with open(temporary, "w", encoding="utf-8") as out:
        for batch in batches:
            for record in batch:
                out.write(json.dumps(record_as_dict(record), ensure_ascii=False, default=str))
                out.write("\n")
                if record.match == KEYED:
                    keyed += 1
                else:
                    mentions += 1
                conversations.add(record.conversation_id)
                if record.sent_at is not None:
                    first = record.sent_at if first is None else min(first, record.sent_at)
                    last = record.sent_at if last is None else max(last, record.sent_at)
            beat()
        out.flush()
        os.fsync(out.fileno())
    beat(force=True)
    os.replace(temporary, final)
    skipped = [{"location": s.location, "reason": s.reason} for s in connector.skipped[:100]]
    return {
        "records_found": keyed + mentions,
        "mentions_found": mentions,
        "summary": {
            "keyed": keyed,
            "mentions": mentions,
            "conversations": len(conversations),
            "first": first.isoformat() if first else None,
            "last": last.isoformat() if last else None,
            "skipped": len(connector.skipped),
            "skipped_examples": skipped,
        },
    }


def _run_erasure(task: SourceTask, attempt: int, beat: _Beat) -> dict:
    try:
        strategy = erasure_strategy_for(task.source)
    except StrategyMisconfigured as exc:
        raise PermanentFailure(str(exc)) from None
    connector = get_connector(task.source)
    keys = keys_for(task.request)
    if keys.is_empty:
        raise PermanentFailure("The request has no identity left to search by.")
    before = connector.count(keys)
    beat(force=True)
    # The first count is what the certificate reports as "before": a run after a crash
    # finds less, because the first run already erased some.
    SourceTask.objects.filter(
        pk=task.pk, attempts=attempt, status=T.RUNNING, records_found__isnull=True
    ).update(records_found=before.total, mentions_found=before.mentions, strategy=strategy)
    erased = connector.erase(keys, strategy=strategy)
    beat(force=True)
    SourceTask.objects.filter(pk=task.pk, attempts=attempt, status=T.RUNNING).update(
        records_erased=Coalesce(F("records_erased"), 0) + erased.keyed + erased.mentions
    )
    after = connector.count(keys)
    skipped = [{"location": s.location, "reason": s.reason} for s in connector.skipped[:100]]
    if after.total:
        raise RemainingAfterErasure(after.total)
    return {
        "records_remaining": after.total,
        "strategy": strategy,
        "summary": {
            "skipped": max(before.skipped, erased.skipped, after.skipped),
            "skipped_examples": skipped,
        },
    }


def _finish(task: SourceTask, attempt: int, result: dict) -> RunOutcome:
    now = timezone.now()
    fields = {k: v for k, v in result.items() if k != "summary"}
    with transaction.atomic():
        # Lock the request so two sources finishing together cannot both miss that they
        # were the last (each would see the other still running).
        DataSubjectRequest.objects.select_for_update().filter(pk=task.request_id).first()
        done = SourceTask.objects.filter(pk=task.pk, status=T.RUNNING, attempts=attempt).update(
            status=T.DONE,
            finished_at=now,
            heartbeat_at=now,
            not_before=None,
            error="",
            summary=result.get("summary", {}),
            **fields,
        )
        if done != 1:
            return RunOutcome(False, "superseded")
        audit_record(
            actor=SYSTEM_ACTOR,
            action="dsar.source_task.done",
            target=task,
            detail={
                "request": str(task.request_id),
                "source": task.source_id,
                "attempt": attempt,
                **{k: v for k, v in fields.items() if k != "strategy"},
            },
        )
        _finalize_if_ready(task.request_id)
    return RunOutcome(True, T.DONE)


def _fail_attempt(task: SourceTask, attempt: int, exc: BaseException) -> RunOutcome:
    now = timezone.now()
    error = _safe_error(exc)
    used = attempt - task.retries_from
    permanent = isinstance(exc, PermanentFailure)
    with transaction.atomic():
        if not permanent and used < settings.DSAR_SOURCE_TASK_MAX_ATTEMPTS:
            delay = _backoff_seconds(used)
            again = SourceTask.objects.filter(
                pk=task.pk, status=T.RUNNING, attempts=attempt
            ).update(
                status=T.PENDING,
                not_before=now + timedelta(seconds=delay),
                dispatched_at=now,
                heartbeat_at=None,
                error=error,
            )
            if again == 1:
                send_source_tasks([task.pk], countdown=delay)
                return RunOutcome(True, T.PENDING, retry_in=delay)
            return RunOutcome(False, "superseded")
        DataSubjectRequest.objects.select_for_update().filter(pk=task.request_id).first()
        failed = SourceTask.objects.filter(pk=task.pk, status=T.RUNNING, attempts=attempt).update(
            status=T.FAILED, finished_at=now, heartbeat_at=now, error=error
        )
        if failed != 1:
            return RunOutcome(False, "superseded")
        audit_record(
            actor=SYSTEM_ACTOR,
            action="dsar.source_task.failed",
            target=task,
            detail={
                "request": str(task.request_id),
                "source": task.source_id,
                "attempts": used,
                "error": error,
            },
        )
        _finalize_if_ready(task.request_id)
    return RunOutcome(True, T.FAILED)


def _finalize_if_ready(request_id: object) -> None:
    unfinished = SourceTask.objects.filter(
        request_id=request_id, status__in=[T.PENDING, T.RUNNING]
    ).exists()
    if not unfinished:
        send_finalize(request_id)


# --- finalization ----------------------------------------------------------------------------


def request_finalize(*, request_id: object) -> str:
    """Once every source is finished: build the export package, or count again and certify
    the erasure; then complete the request (partially, if a source failed). Idempotent: a
    request no longer in progress, or with sources still running, is left alone."""
    request = DataSubjectRequest.objects.select_related("subject").filter(pk=request_id).first()
    if request is None or request.status != S.IN_PROGRESS or request.type not in FAN_OUT_TYPES:
        return "noop"
    tasks = list(request.source_tasks.select_related("source", "source__system").order_by("pk"))
    if any(t.status in (T.PENDING, T.RUNNING) for t in tasks):
        return "not_ready"
    if request.type in EXPORT_TYPES:
        return _finalize_export(request, tasks)
    return _finalize_erasure(request, tasks)


def _finalize_export(request: DataSubjectRequest, tasks: list[SourceTask]) -> str:
    from dsar.exports import build_export_package

    DataSubjectRequest.objects.filter(pk=request.pk).update(finalize_heartbeat_at=timezone.now())
    package = build_export_package(request=request, tasks=tasks)
    failed = [t for t in tasks if t.status == T.FAILED]
    now = timezone.now()
    previous = request.export_path
    expires = now + timedelta(days=settings.DSAR_EXPORT_LINK_DAYS)
    outcome = S.PARTIALLY_COMPLETED if failed else S.COMPLETED
    from compliance.services import ConflictError
    from dsar.links import download_url
    from dsar.services.lifecycle import _transition

    try:
        with transaction.atomic():
            _transition(
                request,
                to=outcome,
                actor=SYSTEM_ACTOR,
                detail={
                    "sources": len(tasks),
                    "failed_sources": [t.source_id for t in failed],
                    "records": sum(t.records_found or 0 for t in tasks),
                    "package_sha256": package.sha256,
                },
                completed_at=now,
                export_path=str(package.path),
                export_sha256=package.sha256,
                export_size=package.size,
                export_expires_at=expires,
                export_deleted_at=None,
                outcome_note=_failed_sources_note(failed),
            )
            request_record_keep(request=request)
            notify_subject(
                request,
                "completed",
                download_url=download_url(request, absolute=True),
                expires_at=expires,
                failed_sources=[t.source.name for t in failed],
            )
    except ConflictError:
        package.path.unlink(missing_ok=True)  # another finalizer won; ours is not needed
        return "noop"
    if previous and previous != str(package.path):
        _unlink_quietly(previous)
    if not failed:
        remove_parts(request.pk)
    return outcome


def _failed_sources_note(failed: list[SourceTask]) -> str:
    if not failed:
        return ""
    names = ", ".join(t.source.name for t in failed)
    return f"These sources could not be searched and will be tried again: {names}."


def _finalize_erasure(request: DataSubjectRequest, tasks: list[SourceTask]) -> str:
    """Count again in every erased source: the request completes only when nothing is
    left outside the sources a legal hold keeps."""
    keys = keys_for(request)
    recounts: dict[int, tuple[int | None, str]] = {}
    for task in tasks:
        if task.status != T.DONE or keys.is_empty:
            continue
        try:
            remaining = get_connector(task.source).count(keys).total
            recounts[task.pk] = (remaining, "")
        except Exception as exc:  # the count right after the erasure stands; say so
            recounts[task.pk] = (None, _safe_error(exc))
    now = timezone.now()
    from compliance.services import ConflictError
    from dsar.services.lifecycle import _transition

    try:
        with transaction.atomic():
            for task in tasks:
                if task.pk not in recounts:
                    continue
                remaining, _reason = recounts[task.pk]
                if remaining:
                    SourceTask.objects.filter(pk=task.pk, status=T.DONE).update(
                        status=T.FAILED,
                        records_remaining=remaining,
                        error=f"{remaining} records were found at the final count.",
                    )
                    task.status, task.records_remaining = T.FAILED, remaining
                elif remaining == 0:
                    SourceTask.objects.filter(pk=task.pk).update(records_remaining=0)
                    task.records_remaining = 0
            failed = [t for t in tasks if t.status == T.FAILED]
            held = [t for t in tasks if t.status == T.HELD]
            outcome = S.PARTIALLY_COMPLETED if failed else S.COMPLETED
            note = _erasure_note(failed, held)
            _transition(
                request,
                to=outcome,
                actor=SYSTEM_ACTOR,
                detail={
                    "sources": len(tasks),
                    "failed_sources": [t.source_id for t in failed],
                    "held_sources": [t.source_id for t in held],
                    "records_before": sum(t.records_found or 0 for t in tasks),
                    "records_remaining": sum(t.records_remaining or 0 for t in tasks),
                },
                completed_at=now,
                outcome_note=note,
            )
            certificate = _certify(request, tasks, recounts, issued_at=now)
            events.erasure_completed(request, certificate.body)
            request_record_keep(request=request)
            from dsar.links import certificate_url

            notify_subject(
                request,
                "completed",
                certificate_url=certificate_url(request, absolute=True),
                held_sources=[(t.source.name, t.held_reason) for t in held],
                failed_sources=[t.source.name for t in failed],
                certificate=certificate.body,
            )
            if outcome == S.COMPLETED:
                _forget_subject(request, keep_subject=bool(held))
    except ConflictError:
        return "noop"
    return outcome


def _erasure_note(failed: list[SourceTask], held: list[SourceTask]) -> str:
    parts = []
    for task in held:
        # GDPR Art. 17(3): the subject is told which exception applied.
        parts.append(f"Kept in {task.source.name}: {task.held_reason}")
    if failed:
        parts.append(
            "Not yet erased (will be tried again): " + ", ".join(t.source.name for t in failed)
        )
    return "\n".join(parts)


def _certify(
    request: DataSubjectRequest,
    tasks: list[SourceTask],
    recounts: dict[int, tuple[int | None, str]],
    *,
    issued_at,
) -> ErasureCertificate:
    sources = []
    for task in tasks:
        recount, recount_error = recounts.get(task.pk, (None, ""))
        sources.append(
            {
                "source_id": task.source_id,
                "source": task.source.name,
                "system": task.source.system.name,
                "connector": task.source.connector,
                "status": task.status,
                "strategy": task.strategy or None,
                "records_before": task.records_found,
                "mentions_before": task.mentions_found,
                "records_erased": task.records_erased,
                "records_after": task.records_remaining,
                "final_count": recount,
                "final_count_unavailable": recount_error or None,
                "held_reason": task.held_reason or None,
                "error": task.error or None if task.status == T.FAILED else None,
                "finished_at": task.finished_at.isoformat() if task.finished_at else None,
            }
        )
    body = {
        "certificate": "erasure",
        "request_id": str(request.pk),
        "regulation": request.regulation,
        "subject_reference": request.subject_ref,
        "received_at": request.received_at.isoformat(),
        "completed_at": issued_at.isoformat(),
        "complete": request.status == S.COMPLETED,
        "sources": sources,
        "totals": {
            "records_before": sum(t.records_found or 0 for t in tasks),
            "records_after": sum(t.records_remaining or 0 for t in tasks),
        },
    }
    certificate, _ = ErasureCertificate.objects.update_or_create(
        request=request, defaults={"issued_at": issued_at, "body": body}
    )
    audit_record(
        actor=SYSTEM_ACTOR,
        action="dsar.erasure.certified",
        target=request,
        detail={"complete": body["complete"], **body["totals"]},
    )
    return certificate


def _forget_subject(request: DataSubjectRequest, *, keep_subject: bool) -> None:
    """After a complete erasure, what this service itself holds about the subject goes too:
    the subject row with its identities (and, by cascade, consents and statements), earlier
    export packages, and the identities in their answered requests. The request keeps only
    its keyed subject reference (CCPA §7101). With a legal hold the subject row stays, so the
    erasure can be run again when the hold is lifted."""
    subject_id = request.subject_id
    if subject_id is not None:
        # Stored API answers (idempotent replays) may hold the subject's identities.
        idempotency_records_forget(subject_id=subject_id)
    related = DataSubjectRequest.objects.filter(
        Q(pk=request.pk) | Q(subject_ref=request.subject_ref)
    )
    if subject_id is not None:
        related = related | DataSubjectRequest.objects.filter(subject_id=subject_id)
    answered = related.filter(status__in=ANSWERED_STATUSES)
    for earlier in answered.exclude(export_path="").filter(export_deleted_at__isnull=True):
        _unlink_quietly(earlier.export_path)
        remove_request_files(earlier.pk)
    answered.exclude(export_path="").filter(export_deleted_at__isnull=True).update(
        export_deleted_at=timezone.now()
    )
    answered.update(
        identity_value="",
        contact_email="",
        agent_name="",
        agent_permission_note="",
        details={},
    )
    from dsar.models import VerificationCode

    VerificationCode.objects.filter(request__in=answered).delete()
    request.identity_value = request.contact_email = ""
    if subject_id is None or keep_subject or not settings.DSAR_ERASURE_DELETES_SUBJECT:
        return
    try:
        with transaction.atomic():
            deleted, _ = DataSubject.objects.filter(pk=subject_id).delete()
    except (ProtectedError, RestrictedError):
        audit_record(
            actor=SYSTEM_ACTOR,
            action="dsar.subject.kept",
            target_type="compliance.datasubject",
            target_id=str(subject_id),
            detail={"request": str(request.pk), "reason": "protected by another record"},
        )
        return
    if deleted:
        audit_record(
            actor=SYSTEM_ACTOR,
            action="dsar.subject.erased",
            target_type="compliance.datasubject",
            target_id=str(subject_id),
            detail={"request": str(request.pk)},
        )


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# --- retry, records, watchdog, expiry -------------------------------------------------------


def request_retry_failed(*, request: DataSubjectRequest, actor: str) -> DataSubjectRequest:
    """Run the failed sources of a partially completed request again (each with a fresh
    budget of attempts); the sources already done are not touched."""
    from compliance.services import ConflictError
    from dsar.services.lifecycle import _transition

    if request.status != S.PARTIALLY_COMPLETED:
        raise ConflictError("Only a partially completed request can be retried.", field="status")
    now = timezone.now()
    with transaction.atomic():
        failed_ids = list(request.source_tasks.filter(status=T.FAILED).values_list("pk", flat=True))
        _transition(
            request,
            to=S.IN_PROGRESS,
            actor=actor,
            detail={"retried_tasks": failed_ids},
            completed_at=None,
            outcome_note="",
        )
        if request.type in FAN_OUT_TYPES:
            SourceTask.objects.filter(pk__in=failed_ids, status=T.FAILED).update(
                status=T.PENDING,
                retries_from=F("attempts"),
                not_before=None,
                error="",
                finished_at=None,
                heartbeat_at=None,
                dispatched_at=now,
            )
            if failed_ids:
                send_source_tasks(failed_ids)
            else:
                send_finalize(request.pk)
        else:
            from dsar.services.actions import request_perform_direct

            request_perform_direct(request=request, actor=actor)
    return request


def request_record_keep(*, request: DataSubjectRequest) -> RequestRecord:
    """CCPA §7101: the minimal, pseudonymized record of a request and its response, kept
    for DSAR_RECORD_RETENTION_DAYS (24 months) after the response."""
    now = timezone.now()
    responded = request.completed_at or now
    record, _ = RequestRecord.objects.update_or_create(
        request_id=request.pk,
        defaults={
            "type": request.type,
            "regulation": request.regulation,
            "channel": request.channel,
            "subject_hash": request.subject_ref,
            "received_at": request.received_at,
            "responded_at": responded,
            "due_at": request.due_at,
            "extended": request.extended_at is not None,
            "outcome": request.status,
            "denial_basis": request.rejection_reason or request.cancelled_reason,
            "via_agent": bool(request.agent_name),
            "keep_until": responded + timedelta(days=settings.DSAR_RECORD_RETENTION_DAYS),
        },
    )
    return record


@dataclass(frozen=True)
class WatchdogReport:
    reset: int
    resent: int
    gave_up: int
    finalize_resent: int


def source_tasks_watchdog(
    *, stale_after: timedelta | None = None, resend_after: timedelta | None = None
) -> WatchdogReport:
    """Find work the broker lost or a dead worker dropped, and send it again.

    - running rows whose heartbeat stopped (the worker died): back to pending and resent,
      or failed once they have used up their attempts (a source that kills its worker must
      not loop forever);
    - pending rows not sent for a while (the broker was down, a message was lost): resent;
    - requests whose sources are all finished but which were never finalized: resent."""
    now = timezone.now()
    if stale_after is None:
        stale_after = timedelta(seconds=settings.DSAR_STALE_TASK_SECONDS)
    if resend_after is None:
        resend_after = timedelta(seconds=settings.DSAR_RESEND_PENDING_SECONDS)
    reset = resent = gave_up = finalize_resent = 0

    stale = SourceTask.objects.filter(
        status=T.RUNNING, heartbeat_at__lt=now - stale_after, request__status=S.IN_PROGRESS
    ).values("pk", "attempts", "retries_from", "request_id", "source_id")
    for row in stale:
        with transaction.atomic():
            if row["attempts"] - row["retries_from"] >= settings.DSAR_SOURCE_TASK_MAX_ATTEMPTS:
                DataSubjectRequest.objects.select_for_update().filter(pk=row["request_id"]).first()
                changed = SourceTask.objects.filter(
                    pk=row["pk"], status=T.RUNNING, attempts=row["attempts"]
                ).update(
                    status=T.FAILED,
                    finished_at=now,
                    error="The worker stopped responding on every attempt; gave up.",
                )
                if changed:
                    gave_up += 1
                    audit_record(
                        actor=SYSTEM_ACTOR,
                        action="dsar.source_task.failed",
                        target_type="dsar.sourcetask",
                        target_id=str(row["pk"]),
                        detail={"request": str(row["request_id"]), "reason": "worker_lost"},
                    )
                    _finalize_if_ready(row["request_id"])
                continue
            changed = SourceTask.objects.filter(
                pk=row["pk"], status=T.RUNNING, attempts=row["attempts"]
            ).update(status=T.PENDING, not_before=None, heartbeat_at=None, dispatched_at=now)
            if changed:
                reset += 1
                audit_record(
                    actor=SYSTEM_ACTOR,
                    action="dsar.source_task.reset",
                    target_type="dsar.sourcetask",
                    target_id=str(row["pk"]),
                    detail={"request": str(row["request_id"]), "attempts": row["attempts"]},
                )
                send_source_tasks([row["pk"]])

    lost = SourceTask.objects.filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - resend_after),
        Q(not_before__isnull=True) | Q(not_before__lte=now),
        status=T.PENDING,
        request__status=S.IN_PROGRESS,
    ).values_list("pk", flat=True)
    lost_ids = list(lost)
    if lost_ids:
        with transaction.atomic():
            SourceTask.objects.filter(pk__in=lost_ids, status=T.PENDING).update(dispatched_at=now)
            send_source_tasks(lost_ids)
        resent = len(lost_ids)

    unfinalized = (
        DataSubjectRequest.objects.filter(
            Q(finalize_heartbeat_at__isnull=True) | Q(finalize_heartbeat_at__lt=now - stale_after),
            status=S.IN_PROGRESS,
            type__in=FAN_OUT_TYPES,
            updated_at__lt=now - resend_after,
        )
        .exclude(source_tasks__status__in=[T.PENDING, T.RUNNING])
        .values_list("pk", flat=True)
    )
    for request_id in unfinalized:
        with transaction.atomic():
            send_finalize(request_id)
        finalize_resent += 1
    return WatchdogReport(reset, resent, gave_up, finalize_resent)


def exports_purge_expired() -> int:
    """Delete export packages whose link has expired: the data is not kept a day longer
    than the subject needs to fetch it."""
    now = timezone.now()
    expired = list(
        DataSubjectRequest.objects.filter(
            export_expires_at__lte=now, export_deleted_at__isnull=True
        ).exclude(export_path="")
    )
    for request in expired:
        _unlink_quietly(request.export_path)
        remove_request_files(request.pk)
        with transaction.atomic():
            updated = DataSubjectRequest.objects.filter(
                pk=request.pk, export_deleted_at__isnull=True
            ).update(export_deleted_at=now)
            if updated:
                audit_record(
                    actor=SYSTEM_ACTOR,
                    action="dsar.export.deleted",
                    target=request,
                    detail={"reason": "expired"},
                )
    return len(expired)


def request_records_purge() -> int:
    """CCPA §7101 asks for 24 months; nothing obliges us to keep the record longer."""
    with transaction.atomic():
        deleted, _ = RequestRecord.objects.filter(keep_until__lt=timezone.now()).delete()
        if deleted:
            audit_record(
                actor=SYSTEM_ACTOR, action="dsar.records.purged", detail={"records": deleted}
            )
    return deleted
