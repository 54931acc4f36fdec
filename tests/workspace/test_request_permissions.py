"""The permission matrix of the request queue: Beta's staff on Alpha's requests, Alpha's
view-only staff, staff with no system; every page and every action."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from dsar.models import DataSubjectRequest, SourceTask
from dsar.services import request_assign
from tests.factories import DataSubjectRequestFactory
from tests.workspace.conftest import file_request

pytestmark = pytest.mark.django_db

# Every action of the queue, with the form fields an intermediate page would ask for.
ACTIONS = {
    "verify_identity": {"apply": "1", "note": "Seen."},
    "approve": {},
    "reject": {"apply": "1", "reason": "No."},
    "extend": {"apply": "1", "reason": "Busy."},
    "assign": {"apply": "1", "assignee": ""},
    "assign_to_me": {},
    "retry_failed_sources": {},
    "cancel": {},
    "announce_restriction_lift": {},
    "lift_restriction": {},
}
PAGES = ["change", "history", "delete"]


def url(page: str, dsr=None) -> str:
    args = [dsr.pk] if dsr is not None else []
    return reverse(f"admin:dsar_datasubjectrequest_{page}", args=args)


def refused(response) -> bool:
    if response.status_code == 403:
        return True
    return response.status_code == 302 and response["Location"] == reverse("admin:index")


def snapshot(dsr) -> tuple:
    row = DataSubjectRequest.objects.get(pk=dsr.pk)
    return (row.status, row.assignee_id, row.due_at, row.verified_at, row.completed_at)


@pytest.fixture
def alpha_requests(alpha, people):
    """One of Alpha's requests in each state an action applies to."""
    waiting = file_request(alpha)
    approval = file_request(alpha, "erasure", pre_verified=True)
    partial = DataSubjectRequestFactory(
        subject=alpha.subject,
        type="portability",
        status="partially_completed",
        completed_at=timezone.now(),
    )
    SourceTask.objects.create(request=partial, source=alpha.source, status="failed")
    return [waiting, approval, partial]


@pytest.mark.parametrize("action", list(ACTIONS))
def test_another_systems_staff_cannot_run_any_action_on_its_requests(
    signed_in, people, alpha_requests, action
):
    before = [snapshot(d) for d in alpha_requests]
    signed_in(people.beta_actor).post(
        url("changelist"),
        {
            "action": action,
            ACTION_CHECKBOX_NAME: [str(d.pk) for d in alpha_requests],
            **ACTIONS[action],
        },
    )
    assert [snapshot(d) for d in alpha_requests] == before


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_viewer_cannot_run_any_action(signed_in, people, alpha_requests, action):
    before = [snapshot(d) for d in alpha_requests]
    signed_in(people.alpha_viewer).post(
        url("changelist"),
        {
            "action": action,
            ACTION_CHECKBOX_NAME: [str(d.pk) for d in alpha_requests],
            **ACTIONS[action],
        },
    )
    assert [snapshot(d) for d in alpha_requests] == before


@pytest.mark.parametrize("page", PAGES)
def test_another_systems_staff_cannot_open_its_requests(signed_in, people, alpha_requests, page):
    client = signed_in(people.beta_actor)
    for dsr in alpha_requests:
        assert refused(client.get(url(page, dsr)))


def test_another_systems_staff_do_not_list_or_find_its_requests(
    signed_in, people, alpha, beta, alpha_requests
):
    mine = file_request(beta)
    client = signed_in(people.beta_actor)

    listed = {o.pk for o in client.get(url("changelist")).context["cl"].result_list}
    assert listed == {mine.pk}
    found = client.get(url("changelist"), {"q": "alpha-customer@example.com"})
    assert list(found.context["cl"].result_list) == []
    by_id = client.get(url("changelist"), {"q": str(alpha_requests[0].pk)})
    assert list(by_id.context["cl"].result_list) == []


def test_the_system_filter_offers_only_the_users_systems(signed_in, people, alpha, beta):
    response = signed_in(people.beta_actor).get(url("changelist"))
    page = response.content.decode()
    assert f"?system={beta.system.pk}" in page
    assert f"?system={alpha.system.pk}" not in page


def test_a_viewer_lists_and_opens_their_requests_read_only(signed_in, people, alpha_requests):
    client = signed_in(people.alpha_viewer)
    response = client.get(url("changelist"))
    assert {o.pk for o in response.context["cl"].result_list} == {d.pk for d in alpha_requests}
    assert response.context["action_form"] is None
    detail = client.get(url("change", alpha_requests[0]))
    assert detail.status_code == 200
    assert detail.context["has_change_permission"] is False
    assert client.post(url("change", alpha_requests[0]), {}).status_code == 403


def test_staff_with_no_system_get_no_queue(signed_in, people, alpha_requests):
    client = signed_in(people.nobody)
    assert client.get(url("changelist")).status_code == 403
    assert refused(client.get(url("change", alpha_requests[0])))


def test_a_request_that_matches_nobody_is_for_staff_who_cover_every_system(signed_in, people):
    from dsar import services

    stranger = services.request_create(
        type="access", identity={"email": "nobody@example.com"}, channel="phone", actor="staff"
    )
    alpha_list = signed_in(people.alpha_actor).get(url("changelist")).context["cl"].result_list
    assert stranger.pk not in {o.pk for o in alpha_list}
    dpo_list = signed_in(people.dpo).get(url("changelist")).context["cl"].result_list
    assert stranger.pk in {o.pk for o in dpo_list}


def test_a_request_erased_away_from_its_subject_stays_with_the_systems_that_held_its_data(
    signed_in, people, alpha
):
    # After an erasure the subject and conversations are gone; the source tasks that found
    # records still tie the request to Alpha.
    dsr = DataSubjectRequestFactory(
        subject=None,
        identity_value="",
        type="erasure",
        status="completed",
        subject_ref="erased-ref",
        completed_at=timezone.now(),
    )
    SourceTask.objects.create(request=dsr, source=alpha.source, status="done", records_found=3)
    listed = signed_in(people.alpha_viewer).get(url("changelist")).context["cl"].result_list
    assert dsr.pk in {o.pk for o in listed}


def test_an_actor_acts_on_their_own_requests(signed_in, people, alpha_requests):
    signed_in(people.alpha_actor).post(
        url("changelist"),
        {"action": "assign_to_me", ACTION_CHECKBOX_NAME: [str(alpha_requests[0].pk)]},
    )
    assert DataSubjectRequest.objects.get(pk=alpha_requests[0].pk).assignee == people.alpha_actor


def test_the_assign_service_refuses_someone_outside_the_requests_systems(people, alpha):
    from compliance.services import ServiceError

    dsr = file_request(alpha)
    with pytest.raises(ServiceError):
        request_assign(request=dsr, assignee=people.beta_actor, actor="test")
    with pytest.raises(ServiceError):
        request_assign(request=dsr, assignee=people.nobody, actor="test")
    assert DataSubjectRequest.objects.get(pk=dsr.pk).assignee is None
