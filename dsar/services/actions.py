"""Requests answered by changing this service's own records, in the transaction that starts
them: rectification, restriction, objection, opt-out of sale/sharing and limit of sensitive
use. Plus lifting a restriction, which the subject must be told about first."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compliance.audit import audit_record
from compliance.models import DataSubject, IdentityType, SubjectIdentity
from compliance.services import ConflictError
from dsar.models import (
    Channel,
    DataSubjectRequest,
    RequestStatus,
    RequestType,
    SupplementaryStatement,
)
from dsar.notifications import notify_subject
from dsar.services import events

S = RequestStatus
SYSTEM_ACTOR = "system:dsar"

_CONSENT_SOURCE = {
    Channel.PORTAL: "portal",
    Channel.API: "api",
    Channel.ADMIN: "admin",
    Channel.EMAIL: "admin",
    Channel.PHONE: "admin",
}


def request_perform_direct(*, request: DataSubjectRequest, actor: str) -> DataSubjectRequest:
    """Carry out a request that needs no log source, and complete it (partially when part
    of it needs a person to look at it). Called inside the transaction that starts it."""
    from dsar.services.execution import request_record_keep
    from dsar.services.lifecycle import _transition

    subject = DataSubject.objects.filter(pk=request.subject_id).first()
    handlers = {
        RequestType.RECTIFICATION: _rectify,
        RequestType.RESTRICTION: _restrict,
        RequestType.OBJECTION: _object,
        RequestType.OPT_OUT_SALE: _opt_out_sale,
        RequestType.LIMIT_SENSITIVE: _limit_sensitive,
    }
    if subject is None:
        # Nothing is held under this identity, so nothing needs changing. The subject is told
        # the request is answered, exactly as when something was changed.
        outcome, note, detail = S.COMPLETED, "", {"matched": False}
    else:
        outcome, note, detail = handlers[RequestType(request.type)](request, subject, actor)
    with transaction.atomic():
        _transition(
            request,
            to=outcome,
            actor=actor,
            detail=detail,
            completed_at=timezone.now(),
            outcome_note=note,
        )
        request_record_keep(request=request)
        notify_subject(request, "completed", note=note)
    return request


def _rectify(request: DataSubjectRequest, subject: DataSubject, actor: str):
    """GDPR Art. 16: correct stored identities; complete the data with the subject's own
    statement. A correction to a value that already belongs to another record needs a
    person (it may be a merge, or a mistake), so it is left for the DPO."""
    details = request.details or {}
    applied, not_found, needs_review = [], [], []
    corrected = []
    for correction in details.get("corrections", []):
        identity_type, old, new = correction["type"], correction["old"], correction["new"]
        owner = SubjectIdentity.objects.filter(type=identity_type, value=new).first()
        if owner is not None and owner.subject_id == subject.pk:
            SubjectIdentity.objects.filter(subject=subject, type=identity_type, value=old).delete()
            applied.append(identity_type)
            corrected.append(correction)
            continue
        if owner is not None:
            needs_review.append(identity_type)
            continue
        updated = SubjectIdentity.objects.filter(
            subject=subject, type=identity_type, value=old
        ).update(value=new, verified=False)
        if not updated:
            not_found.append(identity_type)
            continue
        if identity_type == IdentityType.CUSTOMER_ID and subject.external_id == old:
            DataSubject.objects.filter(pk=subject.pk).update(
                external_id=new, updated_at=timezone.now()
            )
        applied.append(identity_type)
        corrected.append(correction)
    if applied:
        # The consent check caches which subject an identity names; an update() sends no
        # signal that would tell it (consent/cache.py).
        _consent_cache_changed(subject)
    statement = details.get("statement") or ""
    if statement:
        SupplementaryStatement.objects.create(subject=subject, request=request, text=statement)
    audit_record(
        actor=actor,
        action="subject.rectified",
        target=subject,
        detail={
            "request": str(request.pk),
            "corrected": applied,
            "not_found": not_found,
            "needs_review": needs_review,
            "statement_added": bool(statement),
        },
    )
    if corrected:
        events.rectification_completed(request, corrected)
    notes = []
    if not_found:
        notes.append("We hold no record matching the old value of: " + ", ".join(not_found) + ".")
    if needs_review:
        notes.append(
            "Our privacy team will review the correction of: " + ", ".join(needs_review) + "."
        )
    outcome = S.PARTIALLY_COMPLETED if needs_review else S.COMPLETED
    # Art. 19: recipients heard of the correction above (rectification.completed).
    return outcome, " ".join(notes), {"corrected": len(applied), "review": len(needs_review)}


def _restrict(request: DataSubjectRequest, subject: DataSubject, actor: str):
    """GDPR Art. 18: keep the data, but every consent check answers no until lifted."""
    now = timezone.now()
    changed = DataSubject.objects.filter(pk=subject.pk, restricted_at__isnull=True).update(
        restricted_at=now, updated_at=now
    )
    audit_record(
        actor=actor,
        action="subject.restricted",
        target=subject,
        detail={"request": str(request.pk), "already_restricted": not changed},
    )
    if changed:
        events.restriction_changed(request, restricted=True)
    _consent_cache_changed(subject)
    return S.COMPLETED, "", {"restricted": True}


def _consent_cache_changed(subject: DataSubject) -> None:
    try:
        from consent import cache
    except ImportError:
        return
    invalidate = getattr(cache, "subjects_changed_on_commit", None)
    if invalidate is not None:
        invalidate([subject.pk])


def _object(request: DataSubjectRequest, subject: DataSubject, actor: str):
    """GDPR Art. 21: stop every processing based on legitimate interest."""
    from consent.services import consent_object_legitimate_interests

    events = consent_object_legitimate_interests(
        subject=subject, actor=actor, source=_CONSENT_SOURCE[Channel(request.channel)]
    )
    return S.COMPLETED, "", {"purposes_objected": len(events)}


def _opt_out(request: DataSubjectRequest, subject: DataSubject, actor: str, slug: str):
    from consent.models import Purpose
    from consent.services import consent_opt_out

    purpose = Purpose.objects.filter(slug=slug).first()
    if purpose is None:
        return S.COMPLETED, "", {"purpose_missing": slug}
    consent_opt_out(
        subject=subject,
        purpose=purpose,
        source=_CONSENT_SOURCE[Channel(request.channel)],
        actor=actor,
        evidence={"dsar_request": str(request.pk)},
    )
    return S.COMPLETED, "", {"purpose": slug}


def _opt_out_sale(request, subject, actor):
    """CCPA §7026: opt-out of sale/sharing, no verification."""
    from consent.models import SALE_SHARING

    return _opt_out(request, subject, actor, SALE_SHARING)


def _limit_sensitive(request, subject, actor):
    """CCPA §7027: limit the use of sensitive personal information, no verification."""
    from consent.models import SENSITIVE_PI

    return _opt_out(request, subject, actor, SENSITIVE_PI)


def restriction_lift_announce(*, request: DataSubjectRequest, actor: str) -> DataSubjectRequest:
    """GDPR Art. 18(3): tell the subject before the restriction is lifted."""
    if request.type != RequestType.RESTRICTION or request.status != S.COMPLETED:
        raise ConflictError("Only a completed restriction can be lifted.", field="status")
    if request.restriction_lifted_at is not None:
        raise ConflictError("This restriction was already lifted.", field="status")
    now = timezone.now()
    lift_on = now + timedelta(days=settings.DSAR_RESTRICTION_LIFT_NOTICE_DAYS)
    with transaction.atomic():
        updated = DataSubjectRequest.objects.filter(
            pk=request.pk, restriction_lift_announced_at__isnull=True
        ).update(restriction_lift_announced_at=now, updated_at=now)
        if updated != 1:
            raise ConflictError("The lifting was already announced.", field="status")
        audit_record(
            actor=actor, action="dsar.restriction.lift_announced", target=request, detail={}
        )
        request.restriction_lift_announced_at = now
        notify_subject(request, "restriction_lift", lift_on=lift_on)
    return request


def restriction_lift(*, request: DataSubjectRequest, actor: str) -> DataSubjectRequest:
    """Lift the restriction: only after the subject was told, and once the notice period
    (DSAR_RESTRICTION_LIFT_NOTICE_DAYS) has passed."""
    if request.restriction_lift_announced_at is None:
        raise ConflictError(
            "Tell the subject first (GDPR Art. 18(3)): announce the lifting.", field="status"
        )
    now = timezone.now()
    earliest = request.restriction_lift_announced_at + timedelta(
        days=settings.DSAR_RESTRICTION_LIFT_NOTICE_DAYS
    )
    if now < earliest:
        raise ConflictError("The notice period has not passed yet.", field="status")
    with transaction.atomic():
        updated = DataSubjectRequest.objects.filter(
            pk=request.pk, restriction_lifted_at__isnull=True
        ).update(restriction_lifted_at=now, updated_at=now)
        if updated != 1:
            raise ConflictError("This restriction was already lifted.", field="status")
        if request.subject_id is not None:
            DataSubject.objects.filter(pk=request.subject_id).update(
                restricted_at=None, updated_at=now
            )
            _consent_cache_changed(request.subject)
        audit_record(actor=actor, action="dsar.restriction.lifted", target=request, detail={})
        events.restriction_changed(request, restricted=False)
        request.restriction_lifted_at = now
    return request
