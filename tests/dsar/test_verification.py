"""One-time codes emailed to the subject (GDPR Art. 12(6))."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from compliance.services import ConflictError, ServiceError
from dsar import services
from dsar.models import RequestStatus, VerificationCode
from tests.dsar.support import committed

pytestmark = pytest.mark.django_db


def code_from(mailoutbox) -> str:
    bodies = [m.body for m in mailoutbox if m.subject == "Your verification code"]
    return re.search(r"^\s+(\d{6})\s*$", bodies[-1], re.MULTILINE).group(1)


@pytest.fixture
def waiting(ana):
    with committed():
        return services.request_create(
            type="access", identity={"email": "ana@example.com"}, channel="portal", actor="portal"
        )


def test_the_right_code_verifies_the_request_and_starts_it(waiting, mailoutbox):
    with committed():
        dsr = services.verification_code_check(
            request=waiting, code=code_from(mailoutbox), actor="portal"
        )
    assert dsr.status == RequestStatus.IN_PROGRESS
    assert dsr.verification_method == "email_code"
    assert "Your identity is verified" in [m.subject for m in mailoutbox]


def test_the_code_is_stored_only_as_a_keyed_hash(waiting, mailoutbox):
    code = code_from(mailoutbox)
    stored = VerificationCode.objects.get(request=waiting)
    assert code not in stored.code_hash
    assert len(stored.code_hash) == 64


def test_a_wrong_code_is_refused_and_costs_an_attempt(waiting, mailoutbox):
    right = code_from(mailoutbox)
    wrong = "000000" if right != "000000" else "111111"
    with pytest.raises(ServiceError):
        services.verification_code_check(request=waiting, code=wrong, actor="portal")
    assert VerificationCode.objects.get(request=waiting).attempts == 1
    waiting.refresh_from_db()
    assert waiting.status == RequestStatus.AWAITING_VERIFICATION


def test_after_the_attempt_limit_even_the_right_code_is_refused(waiting, mailoutbox, settings):
    right = code_from(mailoutbox)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(settings.DSAR_VERIFICATION_MAX_ATTEMPTS):
        with pytest.raises(ServiceError):
            services.verification_code_check(request=waiting, code=wrong, actor="portal")
    with pytest.raises(ServiceError, match="Too many"):
        services.verification_code_check(request=waiting, code=right, actor="portal")
    waiting.refresh_from_db()
    assert waiting.status == RequestStatus.AWAITING_VERIFICATION


def test_an_expired_code_is_refused(waiting, mailoutbox):
    VerificationCode.objects.filter(request=waiting).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(ServiceError, match="expired"):
        services.verification_code_check(
            request=waiting, code=code_from(mailoutbox), actor="portal"
        )


def test_a_new_code_replaces_the_old_one(waiting, mailoutbox):
    first = code_from(mailoutbox)
    with committed():
        services.verification_code_send(request=waiting, actor="portal")
    second = code_from(mailoutbox)
    if first != second:
        with pytest.raises(ServiceError):
            services.verification_code_check(request=waiting, code=first, actor="portal")
    dsr = services.verification_code_check(request=waiting, code=second, actor="portal")
    assert dsr.status == RequestStatus.IN_PROGRESS


def test_only_a_few_codes_are_sent_per_request(waiting, settings):
    settings.DSAR_VERIFICATION_MAX_CODES = 2
    services.verification_code_send(request=waiting, actor="portal")
    with pytest.raises(ConflictError):
        services.verification_code_send(request=waiting, actor="portal")


def test_a_used_code_cannot_be_used_again(waiting, mailoutbox):
    code = code_from(mailoutbox)
    services.verification_code_check(request=waiting, code=code, actor="portal")
    waiting.refresh_from_db()
    with pytest.raises(ConflictError):
        services.verification_code_check(request=waiting, code=code, actor="portal")


def test_no_code_is_sent_where_there_is_no_email(db, mailoutbox):
    from tests.factories import SubjectFactory

    subject = SubjectFactory()
    with committed():
        dsr = services.request_create(
            type="access",
            identity={"customer_id": subject.external_id},
            channel="portal",
            actor="p",
        )
    assert dsr.status == RequestStatus.AWAITING_VERIFICATION
    assert mailoutbox == []
    assert services.verification_code_send(request=dsr, actor="p") is False
