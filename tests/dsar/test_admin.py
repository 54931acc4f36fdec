"""The DPO's queue: the list, and actions that go through the services."""

from __future__ import annotations

import pytest

from dsar import services
from dsar.models import RequestStatus, SourceTask
from tests.dsar.support import committed
from tests.factories import LogSourceFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/dsar/datasubjectrequest/"


def waiting(ana, type="access", channel="phone"):
    with committed():
        return services.request_create(
            type=type, identity={"email": "ana@example.com"}, channel=channel, actor="staff"
        )


def test_the_queue_lists_requests_with_their_deadline(admin_client, ana):
    dsr = waiting(ana)
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert str(dsr.pk)[:8] in response.content.decode()
    detail = admin_client.get(f"{CHANGELIST}{dsr.pk}/change/")
    assert detail.status_code == 200


def test_the_queue_is_closed_to_people_who_are_not_staff(client, django_user_model, ana):
    user = django_user_model.objects.create_user("visitor", password="pw-visitor-1")
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 302


def test_verifying_from_the_admin_starts_the_request(admin_client, ana):
    LogSourceFactory()
    dsr = waiting(ana)
    with committed():
        admin_client.post(
            CHANGELIST,
            {
                "action": "verify_identity",
                "_selected_action": [dsr.pk],
                "apply": "1",
                "note": "Checked by phone.",
            },
        )
    dsr.refresh_from_db()
    assert dsr.status == RequestStatus.IN_PROGRESS
    assert dsr.verification_method == "staff"
    assert SourceTask.objects.filter(request=dsr).count() == 1


def test_rejecting_asks_for_the_reason_first(admin_client, ana, mailoutbox):
    dsr = waiting(ana)
    form = admin_client.post(CHANGELIST, {"action": "reject", "_selected_action": [dsr.pk]})
    assert form.status_code == 200
    assert "reason" in form.content.decode()
    dsr.refresh_from_db()
    assert dsr.status == RequestStatus.AWAITING_VERIFICATION
    with committed():
        admin_client.post(
            CHANGELIST,
            {
                "action": "reject",
                "_selected_action": [dsr.pk],
                "apply": "1",
                "reason": "We could not confirm your identity.",
            },
        )
    dsr.refresh_from_db()
    assert dsr.status == RequestStatus.REJECTED
    assert "We could not confirm your identity." in mailoutbox[-1].body


def test_an_action_that_does_not_apply_is_reported_not_crashed(admin_client, ana):
    dsr = waiting(ana)
    response = admin_client.post(
        CHANGELIST, {"action": "approve", "_selected_action": [dsr.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "cannot become" in response.content.decode()
    dsr.refresh_from_db()
    assert dsr.status == RequestStatus.AWAITING_VERIFICATION


def test_searching_the_queue_with_any_text_does_not_crash(admin_client, ana):
    dsr = waiting(ana)
    assert admin_client.get(CHANGELIST, {"q": "not-a-uuid"}).status_code == 200
    found = admin_client.get(CHANGELIST, {"q": str(dsr.pk)})
    assert str(dsr.pk)[:8] in found.content.decode()
