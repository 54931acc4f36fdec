"""Reports on AI answers: filed by the customer in the portal, decided by a DPO in the
admin, and the audit trail of both."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance.models import AnswerFlag, AnswerFlagState, AuditEvent, MessageRole
from compliance.portal.services import (
    FLAG_TRANSITIONS,
    answer_flag_create,
    answer_flag_review,
)
from compliance.services import ConflictError, ForbiddenError, ServiceError
from tests.factories import AnswerFlagFactory, MessageFactory

pytestmark = pytest.mark.django_db

COMMENT = "It told me my parcel was delivered; it never came. Call me on +44 7911 123456."


def _answer(subject):
    return subject.test_conversations[0].messages.get(role=MessageRole.ASSISTANT)


def _report_url(message) -> str:
    return f"/portal/conversations/{message.conversation_id}/answers/{message.pk}/report/"


# --- Filing a report in the portal ----------------------------------------------------------


def test_a_customer_reports_an_answer_from_the_conversation_page(ana_client, ana):
    answer = _answer(ana)
    response = ana_client.post(
        _report_url(answer),
        {f"m{answer.pk}-category": "harmful", f"m{answer.pk}-comment": COMMENT},
    )
    assert response.status_code == 302
    assert response["Location"].endswith(
        f"/portal/conversations/{answer.conversation_id}/#message-{answer.pk}"
    )
    flag = AnswerFlag.objects.get(message=answer)
    assert (flag.subject, flag.category, flag.comment, flag.state) == (
        ana,
        "harmful",
        COMMENT,
        AnswerFlagState.NEW,
    )
    page = ana_client.get(response["Location"]).content.decode()
    assert "You reported this answer as “harmful”." in page
    assert "A person will look at it soon." in page


def test_a_report_without_a_category_shows_the_form_again_with_the_error(ana_client, ana):
    answer = _answer(ana)
    response = ana_client.post(_report_url(answer), {f"m{answer.pk}-comment": "hm"})
    assert response.status_code == 400
    assert b"This field is required." in response.content
    assert b'aria-invalid="true"' in response.content or b"errorlist" in response.content
    assert not AnswerFlag.objects.exists()


def test_reporting_the_same_answer_twice_keeps_one_report(ana_client, ana):
    answer = _answer(ana)
    data = {f"m{answer.pk}-category": "wrong"}
    ana_client.post(_report_url(answer), data)
    response = ana_client.post(_report_url(answer), data)
    assert response.status_code == 302
    assert AnswerFlag.objects.filter(message=answer).count() == 1
    page = ana_client.get(response["Location"]).content.decode()
    assert "You have already reported this answer." in page


# --- The service --------------------------------------------------------------------------


def test_the_audit_event_names_the_category_but_never_the_comment(ana):
    flag = answer_flag_create(subject=ana, message=_answer(ana), category="biased", comment=COMMENT)
    event = AuditEvent.objects.get(action="answer_flag.created")
    assert event.target_id == str(flag.pk)
    assert event.actor == f"subject:{ana.pk}"
    assert event.detail["category"] == "biased"
    assert event.detail["has_comment"] is True
    assert "parcel" not in str(event.detail) and "7911" not in str(event.detail)


def test_the_service_refuses_another_customers_message(ana, bo):
    with pytest.raises(ForbiddenError):
        answer_flag_create(subject=ana, message=_answer(bo), category="wrong")
    assert not AnswerFlag.objects.exists()


def test_the_service_refuses_a_customers_own_words(ana):
    question = ana.test_conversations[0].messages.get(role=MessageRole.CUSTOMER)
    with pytest.raises(ServiceError):
        answer_flag_create(subject=ana, message=question, category="wrong")


@pytest.mark.parametrize(
    ("category", "comment"),
    [("nonsense", ""), ("wrong", "x" * 2001), ("wrong", "nul\x00byte")],
)
def test_the_service_refuses_bad_input_without_writing(ana, category, comment):
    with pytest.raises(ServiceError):
        answer_flag_create(subject=ana, message=_answer(ana), category=category, comment=comment)
    assert not AnswerFlag.objects.exists()
    assert not AuditEvent.objects.filter(action="answer_flag.created").exists()


# --- Review -------------------------------------------------------------------------------


@pytest.fixture
def dpo(db):
    user = get_user_model().objects.create_user("dpo-flags", password="pw-for-tests-only")
    user.is_staff = True
    user.save()
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_answerflag", "change_answerflag"])
    )
    # Granted globally: this DPO covers every system (per-system grants: tests/workspace).
    user.user_permissions.add(Permission.objects.get(codename="act_on_system_data"))
    return user


def test_a_review_records_who_decided_when_and_is_audited(ana, dpo):
    flag = AnswerFlagFactory(message=_answer(ana))
    flag = answer_flag_review(flag=flag, state="rectification", reviewer=dpo, actor="user:x")
    assert flag.state == "rectification"
    assert flag.reviewed_by == dpo and flag.reviewed_at is not None
    event = AuditEvent.objects.get(action="answer_flag.reviewed")
    assert event.detail == {"from": "new", "to": "rectification", "category": "wrong"}


def test_a_decided_flag_cannot_be_decided_again(ana, dpo):
    flag = AnswerFlagFactory(message=_answer(ana))
    answer_flag_review(flag=flag, state="dismissed", reviewer=dpo, actor="user:x")
    with pytest.raises(ConflictError):
        answer_flag_review(flag=flag, state="reviewed", reviewer=dpo, actor="user:x")


def test_a_stale_copy_of_a_flag_cannot_overwrite_a_decision(ana, dpo):
    flag = AnswerFlagFactory(message=_answer(ana))
    stale = AnswerFlag.objects.get(pk=flag.pk)
    answer_flag_review(flag=flag, state="dismissed", reviewer=dpo, actor="user:x")
    with pytest.raises(ConflictError):
        answer_flag_review(flag=stale, state="rectification", reviewer=dpo, actor="user:y")
    assert AnswerFlag.objects.get(pk=flag.pk).state == "dismissed"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.sampled_from(AnswerFlagState.values), max_size=5))
def test_any_sequence_of_decisions_follows_the_transition_table(ana, dpo, steps):
    flag = AnswerFlagFactory(
        message=MessageFactory(conversation=ana.test_conversations[0], role=MessageRole.ASSISTANT)
    )
    for state in steps:
        before = flag.state
        if state in FLAG_TRANSITIONS[before]:
            flag = answer_flag_review(flag=flag, state=state, reviewer=dpo, actor="user:x")
            assert flag.state == state
        else:
            with pytest.raises(ConflictError):
                answer_flag_review(flag=flag, state=state, reviewer=dpo, actor="user:x")
            assert AnswerFlag.objects.get(pk=flag.pk).state == before
    assert AnswerFlag.objects.get(pk=flag.pk).state in AnswerFlagState.values
    # Final states have no way out; only "new" and "reviewed" can still change.
    assert not FLAG_TRANSITIONS["rectification"] and not FLAG_TRANSITIONS["dismissed"]


# --- The admin review queue ---------------------------------------------------------------


def test_the_review_queue_lists_flags_and_filters_them(client, ana, bo, dpo):
    harmful = AnswerFlagFactory(message=_answer(ana), category="harmful")
    biased = AnswerFlagFactory(message=_answer(bo), category="biased")
    client.force_login(dpo)
    url = "/admin/compliance/answerflag/"

    def listed(**filters) -> set[int]:
        response = client.get(url, filters)
        assert response.status_code == 200
        found = re.findall(rb"/admin/compliance/answerflag/(\d+)/change/", response.content)
        return {int(pk) for pk in found}

    assert listed() == {harmful.pk, biased.pk}
    assert listed(category="harmful") == {harmful.pk}
    system = _answer(bo).conversation.system
    assert listed(message__conversation__system__id__exact=system.pk) == {biased.pk}
    assert listed(state="new") == {harmful.pk, biased.pk}
    assert listed(state="dismissed") == set()


def test_the_review_actions_go_through_the_service(client, ana, dpo):
    flag = AnswerFlagFactory(message=_answer(ana))
    client.force_login(dpo)
    response = client.post(
        "/admin/compliance/answerflag/",
        {"action": "mark_rectification", "_selected_action": [flag.pk]},
    )
    assert response.status_code == 302
    flag.refresh_from_db()
    assert flag.state == "rectification" and flag.reviewed_by == dpo
    assert AuditEvent.objects.filter(action="answer_flag.reviewed").count() == 1


def test_the_detail_page_cannot_edit_a_flag(client, ana, dpo):
    flag = AnswerFlagFactory(message=_answer(ana), comment="original")
    client.force_login(dpo)
    url = f"/admin/compliance/answerflag/{flag.pk}/change/"
    assert client.get(url).status_code == 200
    response = client.post(url, {"comment": "changed", "state": "dismissed"})
    assert response.status_code == 403
    flag.refresh_from_db()
    assert (flag.comment, flag.state) == ("original", "new")


def test_staff_without_the_review_permission_cannot_decide(client, ana, dpo):
    dpo.user_permissions.remove(Permission.objects.get(codename="change_answerflag"))
    flag = AnswerFlagFactory(message=_answer(ana))
    client.force_login(dpo)
    client.post(
        "/admin/compliance/answerflag/",
        {"action": "mark_dismissed", "_selected_action": [flag.pk]},
    )
    flag.refresh_from_db()
    assert flag.state == "new"


def test_a_customer_signed_in_to_the_portal_cannot_reach_the_queue(ana_client):
    response = ana_client.get("/admin/compliance/answerflag/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
