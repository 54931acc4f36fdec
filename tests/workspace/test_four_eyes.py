"""Four-eyes: with DSAR_FOUR_EYES_ENABLED, an erasure touching more than
DSAR_FOUR_EYES_THRESHOLD records needs a second approver who is not the first."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from compliance.models import AuditEvent, LegalHold, MessageRole
from compliance.services import ForbiddenError
from dsar import services
from dsar.models import DataSubjectRequest, SourceTask
from tests.factories import LogSourceFactory, MessageFactory, StaffUserFactory
from tests.workspace.conftest import file_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def four_eyes(settings):
    settings.DSAR_FOUR_EYES_ENABLED = True
    settings.DSAR_FOUR_EYES_THRESHOLD = 2
    return settings


@pytest.fixture
def erasure(alpha):
    """Alpha's customer asks for erasure; the built-in store holds 3 of their messages, and
    no legal hold keeps any of them."""
    LegalHold.objects.all().delete()
    for _ in range(2):
        MessageFactory(conversation=alpha.conversation, role=MessageRole.CUSTOMER)
    return file_request(alpha, "erasure", pre_verified=True)


def fresh(dsr) -> DataSubjectRequest:
    return DataSubjectRequest.objects.get(pk=dsr.pk)


def test_the_estimate_counts_the_subjects_records_in_every_enabled_source(erasure):
    assert services.erasure_records_estimate(request=erasure) == 3


def test_the_estimate_leaves_out_sources_a_legal_hold_keeps(erasure, alpha):
    from tests.factories import LegalHoldFactory

    LegalHoldFactory(source=alpha.source, owner=alpha.policy.approved_by)
    assert services.erasure_records_estimate(request=erasure) == 0


def test_a_large_erasure_waits_for_a_second_approver(four_eyes, erasure):
    services.request_approve(request=erasure, actor="user:1")

    dsr = fresh(erasure)
    assert dsr.status == "awaiting_approval"
    assert (dsr.first_approved_by, dsr.approval_records_estimate) == ("user:1", 3)
    assert not SourceTask.objects.filter(request=dsr).exists()
    event = AuditEvent.objects.get(action="dsar.request.first_approval", target_id=str(dsr.pk))
    assert event.detail == {"type": "erasure", "records": 3, "threshold": 2}


def test_the_first_approver_cannot_give_the_second_approval(four_eyes, erasure):
    services.request_approve(request=erasure, actor="user:1")

    with pytest.raises(ForbiddenError):
        services.request_approve(request=fresh(erasure), actor="user:1")
    assert fresh(erasure).status == "awaiting_approval"


def test_a_second_different_approver_starts_the_erasure(four_eyes, erasure):
    services.request_approve(request=erasure, actor="user:1")
    services.request_approve(request=fresh(erasure), actor="user:2")

    dsr = fresh(erasure)
    assert dsr.status == "in_progress"
    assert (dsr.first_approved_by, dsr.approved_by) == ("user:1", "user:2")
    assert SourceTask.objects.filter(request=dsr).exists()
    started = AuditEvent.objects.get(action="dsar.request.in_progress", target_id=str(dsr.pk))
    assert started.detail["first_approved_by"] == "user:1"
    assert started.detail["records"] == 3


def test_an_erasure_under_the_threshold_needs_one_approval(four_eyes, erasure):
    four_eyes.DSAR_FOUR_EYES_THRESHOLD = 3  # "more than" the threshold: 3 records is not
    services.request_approve(request=erasure, actor="user:1")
    assert fresh(erasure).status == "in_progress"
    assert fresh(erasure).first_approved_by == ""


def test_with_the_setting_off_one_approval_is_enough(settings, erasure):
    settings.DSAR_FOUR_EYES_ENABLED = False
    settings.DSAR_FOUR_EYES_THRESHOLD = 0
    services.request_approve(request=erasure, actor="user:1")
    assert fresh(erasure).status == "in_progress"


def test_other_request_types_are_not_under_the_rule(four_eyes, alpha):
    four_eyes.DSAR_APPROVAL_REQUIRED_TYPES = ["access", "erasure"]
    four_eyes.DSAR_FOUR_EYES_THRESHOLD = 0
    access = file_request(alpha, "access", pre_verified=True)
    services.request_approve(request=access, actor="user:1")
    assert fresh(access).status == "in_progress"


def test_a_source_that_cannot_be_counted_makes_a_second_approval_necessary(
    four_eyes, erasure, alpha, tmp_path
):
    four_eyes.DSAR_FOUR_EYES_THRESHOLD = 1_000_000
    LogSourceFactory(
        system=alpha.system,
        name="gone",
        connector="jsonl",
        config={
            "path": str(tmp_path / "missing"),
            "subject_field": "customer.email",
            "identity_type": "email",
        },
    )
    assert services.erasure_records_estimate(request=erasure) is None

    services.request_approve(request=erasure, actor="user:1")

    dsr = fresh(erasure)
    assert dsr.status == "awaiting_approval"
    assert dsr.approval_records_estimate is None


def test_in_the_admin_two_people_approve_a_large_erasure(four_eyes, signed_in, dpo, erasure):
    queue = reverse("admin:dsar_datasubjectrequest_changelist")
    form = {"action": "approve", ACTION_CHECKBOX_NAME: [str(erasure.pk)]}
    client = signed_in(dpo)

    first = client.post(queue, form, follow=True)
    assert "a second person must approve it too" in first.content.decode()
    again = client.post(queue, form, follow=True)
    assert "second approval by someone else" in again.content.decode()
    assert fresh(erasure).status == "awaiting_approval"

    colleague = StaffUserFactory(username="second-dpo")
    signed_in(colleague).post(queue, form)
    assert fresh(erasure).status == "in_progress"
    assert fresh(erasure).approved_by == f"user:{colleague.pk}"
