"""The request queue in the admin: every action (state, audit event, email to the subject),
the list's columns, filters and search, and a request's page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from compliance.models import AuditEvent
from dsar.models import DataSubjectRequest, SourceTask, SourceTaskStatus
from tests.factories import DataSubjectRequestFactory, LogSourceFactory
from tests.workspace.conftest import file_request

pytestmark = pytest.mark.django_db

QUEUE = "admin:dsar_datasubjectrequest_changelist"


def queue_url() -> str:
    return reverse(QUEUE)


def act(client, action: str, *requests, **form):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(r.pk) for r in requests], **form}
    return client.post(queue_url(), data)


def events(dsr, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(target_id=str(dsr.pk), action=action).order_by("id"))


def fresh(dsr) -> DataSubjectRequest:
    return DataSubjectRequest.objects.get(pk=dsr.pk)


# --- Actions -----------------------------------------------------------------------------------


def test_verifying_asks_what_staff_checked_before_it_changes_anything(signed_in, dpo, alpha):
    dsr = file_request(alpha)
    response = act(signed_in(dpo), "verify_identity", dsr)

    assert response.status_code == 200
    assert 'name="note"' in response.content.decode()
    assert fresh(dsr).status == "awaiting_verification"


def test_verifying_with_a_note_starts_the_request_and_tells_the_subject(
    signed_in, dpo, alpha, committed, mailoutbox
):
    dsr = file_request(alpha)
    client = signed_in(dpo)
    with committed():
        response = act(
            client, "verify_identity", dsr, apply="1", note="Called back; postcode matched."
        )

    assert response.status_code == 302
    dsr = fresh(dsr)
    assert dsr.status == "in_progress"
    assert dsr.verification_method == "staff"
    assert dsr.verification_note == "Called back; postcode matched."
    assert SourceTask.objects.filter(request=dsr).count() == 1
    (verified,) = events(dsr, "dsar.request.verified")
    assert verified.actor == f"user:{dpo.pk}"
    assert verified.detail["has_note"] is True
    assert "postcode" not in str(verified.detail)
    assert mailoutbox[-1].subject == "Your identity is verified"
    assert mailoutbox[-1].to == ["alpha-customer@example.com"]


def test_verifying_without_a_note_is_refused(signed_in, dpo, alpha):
    dsr = file_request(alpha)
    response = act(signed_in(dpo), "verify_identity", dsr, apply="1", note="  ")
    assert response.status_code == 200
    assert response.context["form"].errors["note"]
    assert fresh(dsr).status == "awaiting_verification"


def test_approving_an_erasure_starts_it(signed_in, dpo, alpha, committed):
    dsr = file_request(alpha, "erasure", pre_verified=True)
    assert dsr.status == "awaiting_approval"

    with committed():
        act(signed_in(dpo), "approve", dsr)

    dsr = fresh(dsr)
    assert dsr.status == "in_progress"
    assert dsr.approved_by == f"user:{dpo.pk}"
    assert SourceTask.objects.filter(request=dsr).exists()
    (started,) = events(dsr, "dsar.request.in_progress")
    assert started.detail["approved"] is True


def test_rejecting_tells_the_subject_the_reason(signed_in, dpo, alpha, committed, mailoutbox):
    dsr = file_request(alpha)
    client = signed_in(dpo)
    form = act(client, "reject", dsr)
    assert form.status_code == 200 and fresh(dsr).status == "awaiting_verification"

    with committed():
        act(client, "reject", dsr, apply="1", reason="We could not confirm it is you.")

    dsr = fresh(dsr)
    assert dsr.status == "rejected"
    assert dsr.rejection_reason == "We could not confirm it is you."
    assert events(dsr, "dsar.request.rejected")
    assert mailoutbox[-1].subject == "Your privacy request was refused"
    assert "We could not confirm it is you." in mailoutbox[-1].body


def test_extending_moves_the_deadline_once_and_tells_the_subject(
    signed_in, dpo, alpha, committed, mailoutbox
):
    dsr = file_request(alpha)
    due = dsr.due_at
    client = signed_in(dpo)
    with committed():
        act(client, "extend", dsr, apply="1", reason="Many systems to search.")

    dsr = fresh(dsr)
    assert dsr.extended_at is not None and dsr.due_at > due
    (extended,) = events(dsr, "dsar.request.extended")
    assert extended.actor == f"user:{dpo.pk}"
    assert mailoutbox[-1].subject == "We need more time for your privacy request"
    assert "Many systems to search." in mailoutbox[-1].body

    response = act(client, "extend", dsr, apply="1", reason="Again.")
    assert fresh(dsr).due_at == dsr.due_at
    assert any("already extended" in str(m) for m in response.wsgi_request._messages)


def test_assigning_offers_only_staff_of_the_requests_systems(signed_in, dpo, people, alpha):
    dsr = file_request(alpha)
    response = act(signed_in(dpo), "assign", dsr)

    offered = set(response.context["form"].fields["assignee"].queryset)
    assert {people.alpha_actor, people.alpha_viewer, people.dpo} <= offered
    assert people.beta_actor not in offered
    assert people.nobody not in offered


def test_assigning_sets_the_assignee_and_is_audited(signed_in, dpo, people, alpha):
    dsr = file_request(alpha)
    act(signed_in(dpo), "assign", dsr, apply="1", assignee=people.alpha_actor.pk)

    assert fresh(dsr).assignee == people.alpha_actor
    (assigned,) = events(dsr, "dsar.request.assigned")
    assert assigned.detail == {"assignee": people.alpha_actor.pk, "previous": None}


def test_a_request_cannot_be_assigned_to_staff_of_another_system(signed_in, dpo, people, alpha):
    dsr = file_request(alpha)
    response = act(signed_in(dpo), "assign", dsr, apply="1", assignee=people.beta_actor.pk)
    assert response.status_code == 200
    assert response.context["form"].errors
    assert fresh(dsr).assignee is None


def test_assign_to_me(signed_in, people, alpha):
    dsr = file_request(alpha)
    act(signed_in(people.alpha_actor), "assign_to_me", dsr)
    assert fresh(dsr).assignee == people.alpha_actor


def test_retrying_failed_sources_sends_them_again(signed_in, dpo, alpha, committed):
    dsr = DataSubjectRequestFactory(
        subject=alpha.subject,
        type="access",
        status="partially_completed",
        completed_at=timezone.now(),
    )
    task = SourceTask.objects.create(
        request=dsr, source=alpha.source, status=SourceTaskStatus.FAILED, error="timeout"
    )
    with committed():
        act(signed_in(dpo), "retry_failed_sources", dsr)

    assert fresh(dsr).status == "in_progress"
    task.refresh_from_db()
    assert task.status == SourceTaskStatus.PENDING and task.error == ""
    (retried,) = events(dsr, "dsar.request.in_progress")
    assert retried.detail["retried_tasks"] == [task.pk]


def test_cancelling_tells_the_subject(signed_in, dpo, alpha, committed, mailoutbox):
    dsr = file_request(alpha)
    with committed():
        act(signed_in(dpo), "cancel", dsr)

    assert fresh(dsr).status == "cancelled"
    assert events(dsr, "dsar.request.cancelled")
    assert mailoutbox[-1].subject == "Your privacy request was cancelled"


def test_an_action_that_does_not_apply_is_reported_and_changes_nothing(signed_in, dpo, alpha):
    dsr = file_request(alpha)
    response = act(signed_in(dpo), "approve", dsr)
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("cannot become" in m for m in messages)
    assert fresh(dsr).status == "awaiting_verification"


# --- The list ----------------------------------------------------------------------------------


def test_the_list_marks_overdue_red_and_due_soon_amber(signed_in, dpo, alpha, beta):
    now = timezone.now()
    overdue = DataSubjectRequestFactory(
        subject=alpha.subject, status="in_progress", due_at=now - timedelta(days=3)
    )
    soon = DataSubjectRequestFactory(
        subject=beta.subject, status="received", due_at=now + timedelta(days=2, hours=1)
    )
    later = DataSubjectRequestFactory(
        status="verified", type="erasure", due_at=now + timedelta(days=20, hours=1)
    )
    response = signed_in(dpo).get(queue_url())
    page = response.content.decode()

    assert listed(response) == {overdue.pk, soon.pk, later.pk}
    assert '<span class="ws-days-overdue"' in page and "3 days overdue" in page
    assert '<span class="ws-days-soon"' in page and ">2 days<" in page
    assert '<span class="ws-days-ok"' in page and ">20 days<" in page
    assert "workspace/workspace.css" in page
    assert "style=" not in page.split('id="result_list"')[1].split("</table>")[0]


def test_the_list_shows_the_assignee_and_the_progress(signed_in, dpo, people, alpha):
    dsr = DataSubjectRequestFactory(
        subject=alpha.subject, status="in_progress", assignee=people.alpha_actor
    )
    other = LogSourceFactory(system=alpha.system, name="second")
    SourceTask.objects.create(request=dsr, source=alpha.source, status="done", records_found=4)
    SourceTask.objects.create(request=dsr, source=other, status="failed", error="timeout")
    page = signed_in(dpo).get(queue_url()).content.decode()
    assert "alpha-actor" in page
    assert "1/2 sources, 1 failed; 4 records" in page


@pytest.fixture
def mixed_queue(people, alpha, beta):
    now = timezone.now()
    return {
        "alpha_overdue": DataSubjectRequestFactory(
            subject=alpha.subject,
            type="erasure",
            status="in_progress",
            due_at=now - timedelta(days=1),
            assignee=people.alpha_actor,
        ),
        "alpha_ccpa": DataSubjectRequestFactory(
            subject=alpha.subject,
            type="access",
            regulation="ccpa",
            status="received",
        ),
        "beta_open": DataSubjectRequestFactory(subject=beta.subject, status="received"),
        "beta_done": DataSubjectRequestFactory(
            subject=beta.subject,
            type="erasure",
            status="completed",
            due_at=now - timedelta(days=5),
            completed_at=now - timedelta(days=9),
        ),
    }


def listed(response) -> set:
    return {obj.pk for obj in response.context["cl"].result_list}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"due": "overdue"}, {"alpha_overdue"}),
        ({"status__exact": "received"}, {"alpha_ccpa", "beta_open"}),
        ({"type__exact": "erasure"}, {"alpha_overdue", "beta_done"}),
        ({"regulation__exact": "ccpa"}, {"alpha_ccpa"}),
        ({"assignee": "none"}, {"alpha_ccpa", "beta_open", "beta_done"}),
        ({"system": "ALPHA"}, {"alpha_overdue", "alpha_ccpa"}),
    ],
)
def test_the_filters(signed_in, dpo, alpha, mixed_queue, query, expected):
    if query.get("system") == "ALPHA":
        query = {"system": str(alpha.system.pk)}
    response = signed_in(dpo).get(queue_url(), query)
    assert listed(response) == {mixed_queue[name].pk for name in expected}


def test_the_assignee_filter_finds_my_requests(signed_in, people, mixed_queue):
    response = signed_in(people.alpha_actor).get(queue_url(), {"assignee": "me"})
    assert listed(response) == {mixed_queue["alpha_overdue"].pk}


@pytest.mark.parametrize(
    "term",
    ["ALPHA-Customer@Example.com", "alpha-customer@example.com", "SHORT_ID", "FULL_ID", "EXT_ID"],
)
def test_search_finds_a_request_by_any_identity_or_its_id(signed_in, dpo, alpha, beta, term):
    dsr = file_request(alpha)
    file_request(beta)
    term = {
        "SHORT_ID": str(dsr.pk)[:8],
        "FULL_ID": str(dsr.pk),
        "EXT_ID": alpha.subject.external_id,
    }.get(term, term)
    response = signed_in(dpo).get(queue_url(), {"q": term})
    assert listed(response) == {dsr.pk}


def test_search_by_phone_number_in_another_format(signed_in, dpo, alpha):
    from compliance.models import SubjectIdentity

    SubjectIdentity.objects.create(subject=alpha.subject, type="phone", value="+442079460000")
    dsr = file_request(alpha)
    response = signed_in(dpo).get(queue_url(), {"q": "+44 20 7946 0000"})
    assert listed(response) == {dsr.pk}


def test_search_with_any_text_does_not_crash(signed_in, dpo, alpha):
    file_request(alpha)
    for term in ["not-a-uuid", "%%", "' OR 1=1", "\x00x"]:
        assert signed_in(dpo).get(queue_url(), {"q": term}).status_code == 200


# --- A request's page ------------------------------------------------------------------------


def test_a_requests_page_shows_its_timeline_and_source_tasks(signed_in, dpo, alpha, committed):
    dsr = file_request(alpha)
    client = signed_in(dpo)
    with committed():
        act(client, "verify_identity", dsr, apply="1", note="ID seen at the counter.")
    SourceTask.objects.filter(request=dsr).update(
        status="failed", error="The source timed out.", records_found=7
    )

    page = client.get(
        reverse("admin:dsar_datasubjectrequest_change", args=[dsr.pk])
    ).content.decode()

    assert "dsar.request.received" in page
    assert "dsar.request.verified" in page
    assert "dsar.request.fanned_out" in page
    assert "head-dpo" in page  # the actor, by name
    assert "awaiting_verification → verified" in page
    assert "The source timed out." in page
    assert "alpha-logs" in page
    assert "ID seen at the counter." in page
    assert "Alpha" in page  # the systems the request touches


def test_a_requests_page_offers_the_actions_that_apply_and_runs_them(
    signed_in, dpo, alpha, committed
):
    dsr = file_request(alpha, "erasure", pre_verified=True)
    client = signed_in(dpo)
    page = client.get(reverse("admin:dsar_datasubjectrequest_change", args=[dsr.pk]))

    offered = [name for name, _label in page.context["request_actions"]]
    assert "approve" in offered and "reject" in offered
    assert "verify_identity" not in offered and "retry_failed_sources" not in offered
    assert 'name="_save"' not in page.content.decode()

    with committed():
        client.post(queue_url(), {"action": "approve", ACTION_CHECKBOX_NAME: str(dsr.pk)})
    assert fresh(dsr).status == "in_progress"


def test_a_requests_page_cannot_be_saved_even_by_a_superuser(signed_in, dpo, alpha):
    dsr = file_request(alpha)
    response = signed_in(dpo).post(
        reverse("admin:dsar_datasubjectrequest_change", args=[dsr.pk]), {"status": "completed"}
    )
    assert response.status_code == 403
    assert fresh(dsr).status == "awaiting_verification"


def test_a_viewer_gets_no_action_buttons(signed_in, people, alpha):
    dsr = file_request(alpha, "erasure", pre_verified=True)
    page = signed_in(people.alpha_viewer).get(
        reverse("admin:dsar_datasubjectrequest_change", args=[dsr.pk])
    )
    assert page.context["request_actions"] == []
