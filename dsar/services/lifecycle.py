"""The request lifecycle: intake, verification, approval, rejection, cancellation,
extension and start. Every status change goes through ``_transition``: a guarded UPDATE
(``WHERE status = <the status we read>``) so two callers racing on one request cannot both
win, and an audit event in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.audit import audit_record
from compliance.models import ApiClient, DataSubject, IdentityType, Jurisdiction, LogSource
from compliance.selectors import subject_find_by_identity
from compliance.services import (
    ConflictError,
    ForbiddenError,
    ServiceError,
    normalize_identities,
)
from dsar import deadlines
from dsar.dispatch import send_finalize, send_source_tasks
from dsar.holds import held_sources_for
from dsar.models import (
    FAN_OUT_TYPES,
    OPEN_STATUSES,
    TRANSITIONS,
    UNVERIFIED_TYPES,
    Channel,
    DataSubjectRequest,
    Regulation,
    RequestStatus,
    RequestType,
    SourceTask,
    SourceTaskStatus,
)
from dsar.notifications import notify_subject
from dsar.records import subject_ref
from dsar.services import events
from dsar.sources import keys_for

S = RequestStatus
# Channels where the subject proves who they are with a code sent to their email; requests
# staff enter (email, phone, admin) are verified by staff, who saw the evidence.
CODE_VERIFIED_CHANNELS = frozenset({Channel.PORTAL, Channel.API})
MAX_REASON_CHARS = 2000


def _label(status: str) -> str:
    return str(RequestStatus(status).label).lower()


def _transition(
    request: DataSubjectRequest,
    *,
    to: str,
    actor: str,
    detail: dict | None = None,
    **fields: object,
) -> DataSubjectRequest:
    """Move ``request`` from the status it holds to ``to``; ConflictError if that is not a
    transition of the lifecycle or if someone else moved it first."""
    current = request.status
    if to not in TRANSITIONS[current]:
        raise ConflictError(
            f"A request that is {_label(current)} cannot become {_label(to)}.", field="status"
        )
    now = timezone.now()
    with transaction.atomic():
        try:
            updated = DataSubjectRequest.objects.filter(pk=request.pk, status=current).update(
                status=to, updated_at=now, **fields
            )
        except IntegrityError:
            # The partial unique index allows one open request per subject and type.
            raise ConflictError(
                "Another open request of this type exists for this subject.", field="status"
            ) from None
        if updated != 1:
            raise ConflictError(
                "The request was changed by someone else meanwhile; reload it.", field="status"
            )
        audit_record(
            actor=actor,
            action=f"dsar.request.{to}",
            target=request,
            detail={"from": current, "to": to, "type": request.type, **(detail or {})},
        )
        events.status_changed(request, old=current, new=to)
    request.status = to
    request.updated_at = now
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def _regulation_for(subject: DataSubject | None, given: str | None) -> str:
    if given:
        if given not in Regulation.values:
            raise ServiceError(
                f"Unknown regulation; use one of: {', '.join(Regulation.values)}.",
                field="regulation",
            )
        return given
    if subject is not None:
        return Regulation.CCPA if subject.jurisdiction == Jurisdiction.US_CA else Regulation.GDPR
    return settings.DSAR_DEFAULT_REGULATION


def _contact_email(subject: DataSubject | None, identities: dict[str, str]) -> str:
    if IdentityType.EMAIL in identities:
        return identities[IdentityType.EMAIL]
    if subject is None:
        return ""
    identity = (
        subject.identities.filter(type=IdentityType.EMAIL).order_by("-verified", "id").first()
    )
    return identity.value if identity else ""


def _check_details(request_type: str, details: Mapping[str, object] | None) -> dict:
    details = dict(details or {})
    if request_type != RequestType.RECTIFICATION:
        if details:
            raise ServiceError("Only a rectification takes details.", field="details")
        return {}
    unknown = set(details) - {"corrections", "statement"}
    if unknown:
        raise ServiceError(f"Unknown detail: {sorted(unknown)[0]}.", field="details")
    corrections = details.get("corrections") or []
    statement = details.get("statement") or ""
    if not isinstance(corrections, list) or not isinstance(statement, str):
        raise ServiceError(
            "corrections is a list of {type, old, new}; statement is text.", field="details"
        )
    if not corrections and not statement.strip():
        raise ServiceError(
            "A rectification needs corrections or a supplementary statement.", field="details"
        )
    if len(statement) > 10_000:
        raise ServiceError("The statement holds at most 10,000 characters.", field="details")
    cleaned = []
    for index, item in enumerate(corrections[:20]):
        field = f"details.corrections[{index}]"
        if not isinstance(item, Mapping) or set(item) != {"type", "old", "new"}:
            raise ServiceError("A correction is {type, old, new}.", field=field)
        if item["type"] not in IdentityType.values:
            raise ServiceError(
                f"type is one of: {', '.join(IdentityType.values)}.", field=f"{field}.type"
            )
        old = normalize_identities({item["type"]: item["old"]}, field=f"{field}.old")
        new = normalize_identities({item["type"]: item["new"]}, field=f"{field}.new")
        cleaned.append({"type": item["type"], "old": old[item["type"]], "new": new[item["type"]]})
    if len(corrections) > 20:
        raise ServiceError("At most 20 corrections per request.", field="details.corrections")
    return {"corrections": cleaned, "statement": statement.strip()}


def request_create(
    *,
    type: str,
    identity: Mapping[str, object],
    channel: str,
    actor: str,
    regulation: str | None = None,
    filed_by: ApiClient | None = None,
    pre_verified: bool = False,
    agent_name: str = "",
    agent_permission_note: str = "",
    details: Mapping[str, object] | None = None,
    received_at: datetime | None = None,
) -> DataSubjectRequest:
    """File a request. The answer is the same whether or not the identity matches anyone:
    an unmatched request is searched for by the identity given, never refused for it."""
    if type not in RequestType.values:
        raise ServiceError(
            f"Unknown request type; use one of: {', '.join(RequestType.values)}.", field="type"
        )
    if channel not in Channel.values:
        raise ServiceError("Unknown channel.", field="channel")
    if not isinstance(identity, Mapping) or len([v for v in identity.values() if v]) != 1:
        raise ServiceError(
            "Give exactly one identity: customer_id, email or phone.", field="identity"
        )
    identities = normalize_identities(identity, field="identity")
    ((identity_type, identity_value),) = identities.items()
    agent_name = agent_name.strip()
    if agent_name and not agent_permission_note.strip():
        # CCPA §7063: an agent acts only with the consumer's signed permission.
        raise ServiceError(
            "An authorized agent needs the consumer's signed permission noted.",
            field="agent.permission_note",
        )
    checked_details = _check_details(type, details)
    received_at = received_at or timezone.now()

    subject = subject_find_by_identity(identity_type=identity_type, value=identity_value)
    regulation = _regulation_for(subject, regulation)
    ref = subject_ref(
        subject_id=subject.pk if subject else None,
        identity_type=identity_type,
        identity_value=identity_value,
    )
    for _attempt in range(2):
        try:
            with transaction.atomic():
                return _create(
                    type=type,
                    channel=channel,
                    actor=actor,
                    regulation=regulation,
                    subject=subject,
                    identity_type=identity_type,
                    identity_value=identity_value,
                    contact_email=_contact_email(subject, identities),
                    ref=ref,
                    filed_by=filed_by,
                    pre_verified=pre_verified,
                    agent_name=agent_name,
                    agent_permission_note=agent_permission_note.strip() if agent_name else "",
                    details=checked_details,
                    received_at=received_at,
                )
        except IntegrityError:
            continue  # a concurrent request of the same type won the race: ours is its duplicate
    raise ConflictError("This request is being filed concurrently; retry.", field="type")


def _create(
    *,
    type: str,
    channel: str,
    actor: str,
    regulation: str,
    subject: DataSubject | None,
    identity_type: str,
    identity_value: str,
    contact_email: str,
    ref: str,
    filed_by: ApiClient | None,
    pre_verified: bool,
    agent_name: str,
    agent_permission_note: str,
    details: dict,
    received_at: datetime,
) -> DataSubjectRequest:
    original = (
        DataSubjectRequest.objects.filter(
            subject_ref=ref, type=type, status__in=OPEN_STATUSES, duplicate_of__isnull=True
        )
        .order_by("received_at")
        .first()
    )
    request = DataSubjectRequest.objects.create(
        type=type,
        regulation=regulation,
        channel=channel,
        subject=subject,
        identity_type=identity_type,
        identity_value=identity_value,
        contact_email=contact_email,
        subject_ref=ref,
        filed_by=filed_by,
        agent_name=agent_name,
        agent_permission_note=agent_permission_note,
        details=details,
        duplicate_of=original,
        received_at=received_at,
        due_at=deadlines.due_at_for(
            regulation=regulation, request_type=type, received_at=received_at
        ),
        confirmation_due_at=deadlines.confirmation_due_at_for(
            regulation=regulation, received_at=received_at
        ),
    )
    audit_record(
        actor=actor,
        action="dsar.request.received",
        target=request,
        detail={
            "type": type,
            "regulation": regulation,
            "channel": channel,
            "matched": subject is not None,
            "via_agent": bool(agent_name),
            "duplicate_of": str(original.pk) if original else None,
        },
    )
    events.request_created(request)
    if original is not None:
        # Not run twice: the open request answers both.
        return _transition(
            request,
            to=S.CANCELLED,
            actor=actor,
            detail={"reason": "duplicate"},
            cancelled_reason="Duplicate of an open request of the same type.",
        )

    code_needed = False
    if type in UNVERIFIED_TYPES:
        # CCPA §7026(e)/§7027: opt-out and limit requests need no verification.
        _transition(
            request,
            to=S.VERIFIED,
            actor=actor,
            detail={"method": "not_required"},
            verified_at=timezone.now(),
            verification_method="not_required",
        )
    elif pre_verified:
        _transition(
            request,
            to=S.VERIFIED,
            actor=actor,
            detail={"method": "trusted_client"},
            verified_at=timezone.now(),
            verification_method="trusted_client",
        )
    else:
        _transition(request, to=S.AWAITING_VERIFICATION, actor=actor)
        code_needed = channel in CODE_VERIFIED_CHANNELS

    if notify_subject(request, "received"):
        # CCPA §7021(a): the receipt notice is the confirmation.
        DataSubjectRequest.objects.filter(pk=request.pk).update(confirmed_at=timezone.now())
        request.confirmed_at = timezone.now()
    if code_needed:
        from dsar.services.verification import verification_code_send

        verification_code_send(request=request, actor=actor)
    if request.status == S.VERIFIED:
        _advance(request, actor=actor)
    return request


def _needs_approval(request: DataSubjectRequest) -> bool:
    return request.type in settings.DSAR_APPROVAL_REQUIRED_TYPES


def _advance(request: DataSubjectRequest, *, actor: str) -> DataSubjectRequest:
    """From verified: wait for a DPO's approval where the settings ask for one, else start."""
    if _needs_approval(request):
        return _transition(request, to=S.AWAITING_APPROVAL, actor=actor)
    return request_start(request=request, actor=actor)


def request_verify(
    *, request: DataSubjectRequest, actor: str, method: str = "staff", note: str = ""
) -> DataSubjectRequest:
    """Mark the identity verified (by staff who saw the evidence, or by a correct code) and
    move on: to approval, or straight to work. ``note`` says what staff saw; it may name
    documents, so it stays on the request (staff only) and never enters the audit trail."""
    note = (note or "").strip()
    if len(note) > MAX_REASON_CHARS:
        raise ServiceError(f"A note holds at most {MAX_REASON_CHARS} characters.", field="note")
    with transaction.atomic():
        _transition(
            request,
            to=S.VERIFIED,
            actor=actor,
            detail={"method": method, "has_note": bool(note)},
            verified_at=timezone.now(),
            verification_method=method,
            verification_note=note,
        )
        request.verification_codes.filter(used_at__isnull=True, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        notify_subject(request, "verified")
        return _advance(request, actor=actor)


def request_approve(*, request: DataSubjectRequest, actor: str) -> DataSubjectRequest:
    """Approve and start a request waiting for approval. A large erasure under the four-eyes
    rule (dsar.services.oversight) needs two approvals by two people: the first one is
    recorded and the request keeps waiting; the same person cannot give the second."""
    from dsar.services import oversight

    detail: dict = {"approved": True}
    if request.status == S.AWAITING_APPROVAL and oversight.four_eyes_applies(request):
        if not request.first_approved_by:
            # Counted before any transaction: it asks every log source.
            records = oversight.erasure_records_estimate(request=request)
            if oversight.second_approval_needed(records):
                return oversight.request_first_approval(
                    request=request, actor=actor, records=records
                )
            detail["records"] = records
        elif request.first_approved_by == actor:
            raise ForbiddenError(
                "This erasure needs a second approval by someone else (four-eyes rule).",
                field="status",
            )
        else:
            detail["first_approved_by"] = request.first_approved_by
            detail["records"] = request.approval_records_estimate
    with transaction.atomic():
        _transition(
            request,
            to=S.IN_PROGRESS,
            actor=actor,
            detail=detail,
            approved_at=timezone.now(),
            approved_by=actor,
            started_at=timezone.now(),
        )
        _begin_work(request, actor=actor)
    return request


def request_start(*, request: DataSubjectRequest, actor: str) -> DataSubjectRequest:
    """Start a verified request that needs no approval."""
    if request.status == S.AWAITING_APPROVAL:
        raise ConflictError("This request waits for approval; approve it.", field="status")
    with transaction.atomic():
        _transition(request, to=S.IN_PROGRESS, actor=actor, started_at=timezone.now())
        _begin_work(request, actor=actor)
    return request


def _begin_work(request: DataSubjectRequest, *, actor: str) -> None:
    if request.type == RequestType.ERASURE:
        events.erasure_requested(request, keys_for(request))
    if request.type in FAN_OUT_TYPES:
        _fan_out(request, actor=actor)
    else:
        from dsar.services.actions import request_perform_direct

        request_perform_direct(request=request, actor=actor)


def _fan_out(request: DataSubjectRequest, *, actor: str) -> None:
    """One task row per enabled log source, sent to the workers after commit. Holds are
    looked up once, here: a source under a legal hold is not touched by the erasure."""
    sources = list(LogSource.objects.filter(enabled=True).order_by("pk"))
    holds = held_sources_for(request) if request.type == RequestType.ERASURE else {}
    now = timezone.now()
    tasks = SourceTask.objects.bulk_create(
        [
            SourceTask(
                request=request,
                source=source,
                status=SourceTaskStatus.HELD if source.pk in holds else SourceTaskStatus.PENDING,
                held_reason=holds.get(source.pk, "")[:300],
                finished_at=now if source.pk in holds else None,
                dispatched_at=None if source.pk in holds else now,
            )
            for source in sources
        ]
    )
    audit_record(
        actor=actor,
        action="dsar.request.fanned_out",
        target=request,
        detail={
            "sources": [s.pk for s in sources],
            "held_sources": sorted(holds),
        },
    )
    pending = [t.pk for t in tasks if t.status == SourceTaskStatus.PENDING]
    if pending:
        send_source_tasks(pending)
    else:
        send_finalize(request.pk)


def _check_reason(reason: str, *, field: str = "reason") -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Give a reason; the subject is told it.", field=field)
    if len(reason) > MAX_REASON_CHARS:
        raise ServiceError(f"A reason holds at most {MAX_REASON_CHARS} characters.", field=field)
    return reason


def request_reject(*, request: DataSubjectRequest, actor: str, reason: str) -> DataSubjectRequest:
    """Refuse the request (GDPR Art. 12(4)/(5): manifestly unfounded or excessive, identity
    not confirmed...). The reason is told to the subject with their right to complain."""
    reason = _check_reason(reason)
    with transaction.atomic():
        _transition(
            request,
            to=S.REJECTED,
            actor=actor,
            rejection_reason=reason,
            completed_at=timezone.now(),
        )
        request.verification_codes.filter(used_at__isnull=True).update(revoked_at=timezone.now())
        from dsar.services.execution import request_record_keep

        request_record_keep(request=request)
        notify_subject(request, "rejected", reason=reason)
    return request


def request_cancel(
    *, request: DataSubjectRequest, actor: str, reason: str = ""
) -> DataSubjectRequest:
    """Withdraw a request that has not started. Work in progress is not cancelled: half an
    erasure is worse than a whole one."""
    if request.status == S.IN_PROGRESS:
        raise ConflictError("A request in progress cannot be cancelled.", field="status")
    with transaction.atomic():
        _transition(
            request,
            to=S.CANCELLED,
            actor=actor,
            cancelled_reason=(reason or "Cancelled on request.").strip()[:200],
            completed_at=timezone.now(),
        )
        request.verification_codes.filter(used_at__isnull=True).update(revoked_at=timezone.now())
        from dsar.services.execution import request_record_keep

        request_record_keep(request=request)
        notify_subject(request, "cancelled")
    return request


def request_extend(*, request: DataSubjectRequest, actor: str, reason: str) -> DataSubjectRequest:
    """GDPR Art. 12(3) / CCPA §7021(b): extend the deadline once (two months / 45 days),
    telling the subject why, and only while the first period runs."""
    reason = _check_reason(reason)
    if request.status not in OPEN_STATUSES:
        raise ConflictError("Only an open request can be extended.", field="status")
    if not deadlines.can_extend(regulation=request.regulation, request_type=request.type):
        raise ConflictError(
            "CCPA opt-out and limit requests cannot be extended (15 business days).",
            field="status",
        )
    if request.extended_at is not None:
        raise ConflictError("The deadline was already extended once.", field="status")
    now = timezone.now()
    if now > request.due_at:
        raise ConflictError(
            "The deadline has passed; an extension must be told within the first period.",
            field="status",
        )
    new_due = deadlines.extended_due_at(regulation=request.regulation, due_at=request.due_at)
    with transaction.atomic():
        updated = DataSubjectRequest.objects.filter(
            pk=request.pk, extended_at__isnull=True, status__in=OPEN_STATUSES
        ).update(due_at=new_due, extended_at=now, extension_reason=reason, updated_at=now)
        if updated != 1:
            raise ConflictError("The request was changed meanwhile; reload it.", field="status")
        audit_record(
            actor=actor,
            action="dsar.request.extended",
            target=request,
            detail={"previous_due_at": request.due_at, "due_at": new_due},
        )
        request.due_at, request.extended_at, request.extension_reason = new_due, now, reason
        notify_subject(request, "extended", reason=reason)
    return request
