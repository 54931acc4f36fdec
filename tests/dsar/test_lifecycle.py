"""Intake and the lifecycle services: who ends up where, the guards, the audit trail and the
notices to the subject."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compliance.models import AuditEvent, Jurisdiction
from compliance.services import ConflictError, ServiceError
from dsar import services
from dsar.deadlines import add_months
from dsar.models import (
    DataSubjectRequest,
    RequestRecord,
    RequestStatus,
    SourceTask,
    SourceTaskStatus,
)
from tests.dsar.support import committed
from tests.factories import LogSourceFactory, SubjectFactory

pytestmark = pytest.mark.django_db

S = RequestStatus


def file(type="access", identity=None, **kwargs):
    kwargs.setdefault("channel", "api")
    kwargs.setdefault("actor", "test")
    with committed():
        return services.request_create(
            type=type, identity=identity or {"email": "ana@example.com"}, **kwargs
        )


def test_a_trusted_client_s_access_request_starts_at_once_with_a_task_per_enabled_source(ana):
    sources = [LogSourceFactory(), LogSourceFactory()]
    LogSourceFactory(enabled=False)
    dsr = file(pre_verified=True)
    assert dsr.status == S.IN_PROGRESS
    assert dsr.subject == ana
    assert dsr.verification_method == "trusted_client"
    tasks = SourceTask.objects.filter(request=dsr)
    assert sorted(t.source_id for t in tasks) == sorted(s.pk for s in sources)
    assert {t.status for t in tasks} == {SourceTaskStatus.PENDING}


def test_an_erasure_waits_for_a_dpo_s_approval(ana):
    LogSourceFactory()
    dsr = file(type="erasure", pre_verified=True)
    assert dsr.status == S.AWAITING_APPROVAL
    assert not SourceTask.objects.filter(request=dsr).exists()
    services.request_approve(request=dsr, actor="user:1")
    dsr.refresh_from_db()
    assert dsr.status == S.IN_PROGRESS
    assert dsr.approved_by == "user:1"
    assert SourceTask.objects.filter(request=dsr).count() == 1


def test_which_types_need_approval_is_a_setting(ana, settings):
    settings.DSAR_APPROVAL_REQUIRED_TYPES = ["access"]
    assert file(pre_verified=True).status == S.AWAITING_APPROVAL
    assert file(type="erasure", pre_verified=True).status == S.IN_PROGRESS


def test_a_portal_request_waits_for_the_emailed_code(ana, mailoutbox):
    dsr = file(channel="portal")
    assert dsr.status == S.AWAITING_VERIFICATION
    subjects = [m.subject for m in mailoutbox]
    assert subjects == ["We received your privacy request", "Your verification code"]
    assert all(m.to == ["ana@example.com"] for m in mailoutbox)


def test_a_request_entered_by_staff_waits_for_staff_to_verify_it(ana, mailoutbox):
    dsr = file(channel="phone")
    assert dsr.status == S.AWAITING_VERIFICATION
    assert dsr.verification_codes.count() == 0
    services.request_verify(request=dsr, actor="user:1")
    dsr.refresh_from_db()
    assert dsr.status == S.IN_PROGRESS
    assert dsr.verification_method == "staff"


def test_opt_out_requests_need_no_verification(ana):
    dsr = file(type="opt_out_sale", channel="portal", regulation="ccpa")
    assert dsr.verification_method == "not_required"
    assert dsr.status == S.COMPLETED


def test_regulation_follows_the_subject_s_jurisdiction():
    SubjectFactory(jurisdiction=Jurisdiction.US_CA, identities={"email": "cal@example.com"})
    SubjectFactory(jurisdiction=Jurisdiction.EU, identities={"email": "eu@example.com"})
    assert file(identity={"email": "cal@example.com"}).regulation == "ccpa"
    assert file(identity={"email": "eu@example.com"}).regulation == "gdpr"
    assert (
        file(identity={"email": "eu@example.com"}, type="erasure", regulation="ccpa").regulation
        == "ccpa"
    )


def test_deadlines_are_set_at_receipt():
    SubjectFactory(jurisdiction=Jurisdiction.US_CA, identities={"email": "cal@example.com"})
    dsr = file(identity={"email": "cal@example.com"})
    assert dsr.due_at - dsr.received_at == timedelta(days=45)
    assert dsr.confirmation_due_at is not None
    assert dsr.confirmed_at is not None  # the receipt email is the confirmation


def test_a_second_open_request_of_the_same_type_is_a_duplicate_and_not_run(ana):
    LogSourceFactory()
    first = file(pre_verified=True)
    second = file(identity={"customer_id": ana.external_id}, pre_verified=True)
    assert second.duplicate_of == first
    assert second.status == S.CANCELLED
    assert SourceTask.objects.filter(request=second).count() == 0
    assert SourceTask.objects.filter(request=first).count() == 1


def test_a_request_of_another_type_is_no_duplicate(ana):
    first = file(pre_verified=True)
    other = file(type="portability", pre_verified=True)
    assert other.duplicate_of is None
    assert first.status == other.status == S.IN_PROGRESS


def test_a_new_request_after_the_first_was_answered_is_no_duplicate(ana):
    first = file(type="restriction", pre_verified=True)
    assert first.status == S.COMPLETED
    assert file(type="restriction", pre_verified=True).duplicate_of is None


def test_an_identity_matching_nobody_is_filed_like_any_other(mailoutbox):
    LogSourceFactory()
    dsr = file(identity={"email": "nobody@example.com"}, pre_verified=True)
    assert dsr.subject is None
    assert dsr.status == S.IN_PROGRESS
    assert SourceTask.objects.filter(request=dsr).count() == 1
    assert [m.to for m in mailoutbox] == [["nobody@example.com"]]


def test_exactly_one_identity_is_taken():
    with pytest.raises(ServiceError) as error:
        file(identity={"email": "a@example.com", "customer_id": "C-1"})
    assert error.value.field == "identity"


def test_an_unknown_request_type_is_refused_and_nothing_is_written():
    with pytest.raises(ServiceError) as error:
        file(type="delete_everything")
    assert error.value.field == "type"
    assert DataSubjectRequest.objects.count() == 0


def test_an_authorized_agent_needs_the_signed_permission_noted(ana):
    with pytest.raises(ServiceError) as error:
        file(agent_name="Agent Smith")
    assert error.value.field == "agent.permission_note"
    dsr = file(agent_name="Agent Smith", agent_permission_note="Signed form #12 on file")
    assert dsr.agent_name == "Agent Smith"


def test_every_transition_leaves_an_audit_event_without_personal_data(ana):
    dsr = file(type="erasure", pre_verified=True)
    actions = list(
        AuditEvent.objects.filter(target_id=str(dsr.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "dsar.request.received",
        "dsar.request.verified",
        "dsar.request.awaiting_approval",
    ]
    for event in AuditEvent.objects.filter(target_id=str(dsr.pk)):
        assert "ana@example.com" not in str(event.detail)


def test_approving_twice_is_a_conflict_and_fans_out_once(ana):
    LogSourceFactory()
    dsr = file(type="erasure", pre_verified=True)
    stale = DataSubjectRequest.objects.get(pk=dsr.pk)
    services.request_approve(request=dsr, actor="user:1")
    with pytest.raises(ConflictError):
        services.request_approve(request=stale, actor="user:2")
    assert SourceTask.objects.filter(request=dsr).count() == 1


def test_a_stale_copy_cannot_overwrite_a_newer_status(ana):
    dsr = file(type="erasure", pre_verified=True)
    stale = DataSubjectRequest.objects.get(pk=dsr.pk)
    services.request_reject(request=dsr, actor="user:1", reason="Manifestly unfounded.")
    with pytest.raises(ConflictError):
        services.request_approve(request=stale, actor="user:2")
    dsr.refresh_from_db()
    assert dsr.status == S.REJECTED


def test_rejection_needs_a_reason_the_subject_is_told(ana, mailoutbox):
    dsr = file(type="erasure", pre_verified=True)
    with pytest.raises(ServiceError):
        services.request_reject(request=dsr, actor="user:1", reason="  ")
    with committed():
        services.request_reject(request=dsr, actor="user:1", reason="We must keep invoices.")
    dsr.refresh_from_db()
    assert dsr.status == S.REJECTED
    assert dsr.rejection_reason == "We must keep invoices."
    assert "We must keep invoices." in mailoutbox[-1].body
    assert "supervisory authority" in mailoutbox[-1].body
    record = RequestRecord.objects.get(request_id=dsr.pk)
    assert record.outcome == S.REJECTED
    assert record.denial_basis == "We must keep invoices."


def test_a_request_in_progress_cannot_be_cancelled(ana):
    LogSourceFactory()
    dsr = file(pre_verified=True)
    with pytest.raises(ConflictError):
        services.request_cancel(request=dsr, actor="test")


def test_a_waiting_request_can_be_cancelled(ana):
    dsr = file(channel="portal")
    services.request_cancel(request=dsr, actor="test")
    dsr.refresh_from_db()
    assert dsr.status == S.CANCELLED
    assert dsr.verification_codes.filter(revoked_at__isnull=True).count() == 0


def test_the_deadline_is_extended_once_with_a_reason_the_subject_is_told(ana, mailoutbox):
    dsr = file(type="erasure", pre_verified=True)
    due = dsr.due_at
    with committed():
        services.request_extend(request=dsr, actor="user:1", reason="Many sources to search.")
    dsr.refresh_from_db()
    assert dsr.due_at == add_months(due, 2)
    assert dsr.extended_at is not None
    assert dsr.extension_reason == "Many sources to search."
    assert "Many sources to search." in mailoutbox[-1].body
    with pytest.raises(ConflictError):
        services.request_extend(request=dsr, actor="user:1", reason="Again.")


def test_an_extension_after_the_first_period_is_refused(ana):
    dsr = file(type="erasure", pre_verified=True)
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(due_at=timezone.now() - timedelta(days=1))
    dsr.refresh_from_db()
    with pytest.raises(ConflictError):
        services.request_extend(request=dsr, actor="user:1", reason="Too late.")


def test_a_ccpa_opt_out_cannot_be_extended():
    SubjectFactory(jurisdiction=Jurisdiction.US_CA, identities={"email": "cal@example.com"})
    dsr = file(type="limit_sensitive", identity={"email": "cal@example.com"}, pre_verified=False)
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(status=S.IN_PROGRESS)
    dsr.refresh_from_db()
    with pytest.raises(ConflictError):
        services.request_extend(request=dsr, actor="user:1", reason="Busy.")
