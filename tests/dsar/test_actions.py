"""Rectification (GDPR Art. 16), restriction (Art. 18), objection (Art. 21) and the CCPA
opt-outs: requests answered by changing this service's own records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compliance.models import DataSubject, SubjectIdentity
from compliance.services import ConflictError
from consent.models import SALE_SHARING, ConsentState, ConsentStatus, LawfulBasis, Purpose
from consent.selectors import consent_check
from dsar import services
from dsar.models import DataSubjectRequest, RequestStatus, SupplementaryStatement
from tests.dsar.support import committed
from tests.factories import SubjectFactory

pytestmark = pytest.mark.django_db

S = RequestStatus


def file(type, email="ana@example.com", **kwargs):
    with committed():
        return services.request_create(
            type=type,
            identity={"email": email},
            channel="api",
            actor="t",
            pre_verified=True,
            **kwargs,
        )


def test_a_rectification_corrects_a_stored_identity(ana):
    dsr = file(
        "rectification",
        details={
            "corrections": [{"type": "email", "old": "ana@example.com", "new": "Ana@New.com"}]
        },
    )
    assert dsr.status == S.COMPLETED
    assert list(ana.identities.filter(type="email").values_list("value", flat=True)) == [
        "ana@new.com"
    ]


def test_a_rectification_attaches_the_subject_s_statement(ana):
    dsr = file("rectification", details={"statement": "My address changed in May."})
    assert dsr.status == S.COMPLETED
    statement = SupplementaryStatement.objects.get(subject=ana)
    assert statement.text == "My address changed in May."
    assert statement.request == dsr


def test_a_correction_to_a_value_someone_else_holds_is_left_for_the_dpo(ana):
    SubjectFactory(identities={"email": "taken@example.com"})
    dsr = file(
        "rectification",
        details={
            "corrections": [{"type": "email", "old": "ana@example.com", "new": "taken@example.com"}]
        },
    )
    assert dsr.status == S.PARTIALLY_COMPLETED
    assert "review" in dsr.outcome_note
    assert ana.identities.filter(type="email", value="ana@example.com").exists()
    assert SubjectIdentity.objects.filter(value="taken@example.com").count() == 1


def test_a_correction_of_a_value_we_do_not_hold_changes_nothing(ana):
    dsr = file(
        "rectification",
        details={"corrections": [{"type": "phone", "old": "+14155550100", "new": "+14155550101"}]},
    )
    assert dsr.status == S.COMPLETED
    assert "no record" in dsr.outcome_note
    assert not ana.identities.filter(type="phone").exists()


def test_a_restriction_makes_every_consent_check_say_no(ana):
    Purpose.objects.create(
        slug="support-quality",
        name="Support quality",
        description="Improve answers.",
        lawful_basis=LawfulBasis.LEGITIMATE_INTEREST,
    )
    assert consent_check(subject="email:ana@example.com", purpose="support-quality").result.allowed
    dsr = file("restriction")
    assert dsr.status == S.COMPLETED
    ana.refresh_from_db()
    assert ana.restricted_at is not None
    outcome = consent_check(subject="email:ana@example.com", purpose="support-quality")
    assert not outcome.result.allowed
    assert outcome.result.reason == "restricted"


def test_a_restriction_is_lifted_only_after_the_subject_was_told(ana, settings, mailoutbox):
    settings.DSAR_RESTRICTION_LIFT_NOTICE_DAYS = 14
    dsr = file("restriction")
    with pytest.raises(ConflictError, match="Tell the subject"):
        services.restriction_lift(request=dsr, actor="user:1")
    with committed():
        services.restriction_lift_announce(request=dsr, actor="user:1")
    assert mailoutbox[-1].subject == "The restriction of your data will be lifted"
    with pytest.raises(ConflictError, match="notice period"):
        services.restriction_lift(request=dsr, actor="user:1")
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(
        restriction_lift_announced_at=timezone.now() - timedelta(days=15)
    )
    dsr.refresh_from_db()
    services.restriction_lift(request=dsr, actor="user:1")
    ana.refresh_from_db()
    assert ana.restricted_at is None


def test_an_objection_withdraws_every_legitimate_interest_purpose(ana):
    for slug, basis in [
        ("analytics", LawfulBasis.LEGITIMATE_INTEREST),
        ("marketing", LawfulBasis.LEGITIMATE_INTEREST),
        ("newsletter", LawfulBasis.CONSENT),
    ]:
        Purpose.objects.create(slug=slug, name=slug, description=slug, lawful_basis=basis)
    dsr = file("objection")
    assert dsr.status == S.COMPLETED
    objected = set(
        ConsentState.objects.filter(subject=ana, status=ConsentStatus.OBJECTED).values_list(
            "purpose__slug", flat=True
        )
    )
    assert objected == {"analytics", "marketing"}


def test_an_opt_out_of_sale_needs_no_verification_and_is_recorded(db):
    subject = SubjectFactory(jurisdiction="US-CA", identities={"email": "cal@example.com"})
    with committed():
        dsr = services.request_create(
            type="opt_out_sale", identity={"email": "cal@example.com"}, channel="portal", actor="p"
        )
    assert dsr.status == S.COMPLETED
    assert dsr.verification_method == "not_required"
    state = ConsentState.objects.get(subject=subject, purpose__slug=SALE_SHARING)
    assert state.status == ConsentStatus.OPTED_OUT


def test_a_direct_request_for_nobody_completes_without_changing_anything(db):
    before = DataSubject.objects.count()
    dsr = file("restriction", email="nobody@example.com")
    assert dsr.status == S.COMPLETED
    assert DataSubject.objects.count() == before
