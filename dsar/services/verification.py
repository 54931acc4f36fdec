"""Identity verification by a one-time code emailed to the subject (GDPR Art. 12(6): confirm
the identity when in doubt; CCPA: a reasonable degree of certainty, free of charge).

Only a keyed hash of the code is stored. A code expires, allows a few attempts, and a
request gets a limited number of codes, so guessing stays hopeless."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from compliance.audit import audit_record
from compliance.services import ConflictError, ServiceError
from dsar.models import DataSubjectRequest, RequestStatus, VerificationCode
from dsar.notifications import notify_subject

CODE_DIGITS = 6


def _code_hash(request_id: object, code: str) -> str:
    key = f"dsar-verification:{settings.SECRET_KEY}".encode()
    return hmac.new(key, f"{request_id}:{code}".encode(), hashlib.sha256).hexdigest()


def verification_code_send(*, request: DataSubjectRequest, actor: str) -> bool:
    """Email a fresh code (earlier ones stop working). False when the request has no email
    to send it to: staff must then verify the identity another way."""
    if request.status != RequestStatus.AWAITING_VERIFICATION:
        raise ConflictError("This request is not waiting for verification.", field="status")
    if not request.contact_email:
        return False
    with transaction.atomic():
        DataSubjectRequest.objects.select_for_update().filter(pk=request.pk).first()
        issued = request.verification_codes.count()
        if issued >= settings.DSAR_VERIFICATION_MAX_CODES:
            raise ConflictError(
                "No more codes can be sent for this request; contact us to verify.",
                field="code",
            )
        now = timezone.now()
        request.verification_codes.filter(used_at__isnull=True, revoked_at__isnull=True).update(
            revoked_at=now
        )
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        VerificationCode.objects.create(
            request=request,
            code_hash=_code_hash(request.pk, code),
            created_at=now,
            expires_at=now + timedelta(minutes=settings.DSAR_VERIFICATION_CODE_MINUTES),
        )
        audit_record(
            actor=actor,
            action="dsar.verification.code_sent",
            target=request,
            detail={"codes_issued": issued + 1},
        )
        notify_subject(
            request,
            "code",
            code=code,
            minutes=settings.DSAR_VERIFICATION_CODE_MINUTES,
        )
    return True


def verification_code_check(
    *, request: DataSubjectRequest, code: str, actor: str
) -> DataSubjectRequest:
    """Verify the request with the code the subject typed. A wrong code costs an attempt
    even though the call fails: the attempt is counted in its own transaction first."""
    if request.status != RequestStatus.AWAITING_VERIFICATION:
        raise ConflictError("This request is not waiting for verification.", field="status")
    code = (code or "").strip().replace(" ", "")
    now = timezone.now()
    current = (
        request.verification_codes.filter(used_at__isnull=True, revoked_at__isnull=True)
        .order_by("-created_at")
        .first()
    )
    if current is None:
        raise ServiceError("No code is active for this request; ask for a new one.", field="code")
    if current.expires_at <= now:
        raise ServiceError("The code has expired; ask for a new one.", field="code")
    with transaction.atomic():
        counted = VerificationCode.objects.filter(
            pk=current.pk,
            used_at__isnull=True,
            revoked_at__isnull=True,
            attempts__lt=settings.DSAR_VERIFICATION_MAX_ATTEMPTS,
        ).update(attempts=F("attempts") + 1)
    if counted != 1:
        raise ServiceError("Too many wrong attempts; ask for a new code.", field="code")
    if not hmac.compare_digest(current.code_hash, _code_hash(request.pk, code)):
        with transaction.atomic():
            audit_record(
                actor=actor,
                action="dsar.verification.code_wrong",
                target=request,
                detail={"attempt": current.attempts + 1},
            )
        raise ServiceError("The code is not right.", field="code")
    from dsar.services.lifecycle import request_verify

    with transaction.atomic():
        used = VerificationCode.objects.filter(pk=current.pk, used_at__isnull=True).update(
            used_at=now
        )
        if used != 1:
            raise ConflictError("This code was already used.", field="code")
        return request_verify(request=request, actor=actor, method="email_code")
