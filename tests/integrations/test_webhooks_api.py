"""GET/POST /api/v1/webhooks/ and GET/DELETE /api/v1/webhooks/{id}/."""

from __future__ import annotations

import uuid

import pytest

from compliance.models import AuditEvent
from integrations.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from tests.factories import SystemFactory, WebhookSubscriptionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/"


def body(for_system, **overrides):
    return {
        "system": for_system.slug,
        "target_url": "https://crm.example.com/hooks",
        "event_types": ["erasure.requested", "consent.changed"],
        **overrides,
    }


def test_it_subscribes_and_shows_the_secret_once(make_api):
    system = SystemFactory()
    api = make_api("webhooks:manage")
    response = api.post(URL, body(system), format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    subscription = WebhookSubscription.objects.get(pk=created["id"])
    assert created["secret"] == subscription.secret
    assert created["system"] == system.slug
    assert created["event_types"] == ["consent.changed", "erasure.requested"]
    assert created["active"] is True

    listed = api.get(URL).json()["results"]
    assert [item["id"] for item in listed] == [created["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in api.get(f"{URL}{created['id']}/").json()
    event = AuditEvent.objects.get(action="webhook.subscribed")
    assert subscription.secret not in str(event.detail)


def test_it_refuses_a_key_without_the_scope(make_api):
    system = SystemFactory()
    WebhookSubscriptionFactory(system=system)
    api = make_api("consent:read", "subjects:write")
    assert api.get(URL).status_code == 403
    response = api.post(URL, body(system), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert WebhookSubscription.objects.count() == 1


def test_it_refuses_a_request_without_a_key(client):
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"target_url": "ftp://crm.example.com/hooks"}, "target_url"),
        ({"target_url": "https://user:pw@crm.example.com/hooks"}, "target_url"),
        ({"target_url": "not a url"}, "target_url"),
        ({"event_types": ["subject.deleted"]}, "event_types[0]"),
        ({"event_types": []}, "event_types"),
        ({"system": "no-such-system"}, "system"),
        ({"secret": "mine"}, "secret"),
    ],
)
def test_it_refuses_bad_input_with_the_field_at_fault(make_api, overrides, field):
    api = make_api("webhooks:manage")
    response = api.post(URL, body(SystemFactory(), **overrides), format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in [e["field"] for e in error["errors"]]
    assert not WebhookSubscription.objects.exists()


def test_an_unbound_client_must_name_the_system(make_api):
    response = make_api("webhooks:manage").post(
        URL,
        {"target_url": "https://crm.example.com/h", "event_types": ["consent.changed"]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["errors"][0]["field"] == "system"


def test_a_client_bound_to_a_system_subscribes_for_it_without_naming_it(make_api):
    own = SystemFactory()
    api = make_api("webhooks:manage", system=own)
    payload = body(own)
    del payload["system"]
    response = api.post(URL, payload, format="json")
    assert response.status_code == 201
    assert response.json()["system"] == own.slug


def test_a_client_bound_to_a_system_cannot_subscribe_for_another(make_api):
    own, other = SystemFactory(), SystemFactory()
    api = make_api("webhooks:manage", system=own)
    response = api.post(URL, body(other), format="json")
    assert response.status_code == 403
    assert not WebhookSubscription.objects.exists()


def test_a_client_bound_to_a_system_sees_and_deletes_only_its_own(make_api):
    own, other = SystemFactory(), SystemFactory()
    mine = WebhookSubscriptionFactory(system=own)
    theirs = WebhookSubscriptionFactory(system=other)
    api = make_api("webhooks:manage", system=own)

    assert [item["id"] for item in api.get(URL).json()["results"]] == [str(mine.pk)]
    assert api.get(f"{URL}{theirs.pk}/").status_code == 404
    response = api.delete(f"{URL}{theirs.pk}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.deleted_at is None


def test_deleting_stops_the_subscription_and_cancels_pending_deliveries(make_api):
    subscription = WebhookSubscriptionFactory()
    pending = WebhookDelivery.objects.create(
        subscription=subscription, event_type="consent.changed", sequence=1, payload={}
    )
    api = make_api("webhooks:manage")
    assert api.delete(f"{URL}{subscription.pk}/").status_code == 204
    subscription.refresh_from_db()
    pending.refresh_from_db()
    assert subscription.deleted_at is not None and subscription.active is False
    assert pending.status == DeliveryStatus.CANCELLED
    assert api.get(URL).json()["results"] == []
    assert api.delete(f"{URL}{subscription.pk}/").status_code == 404


def test_an_unknown_id_is_a_404(make_api):
    assert make_api("webhooks:manage").get(f"{URL}{uuid.uuid4()}/").status_code == 404


def test_the_event_types_are_listed_with_the_personal_data_they_carry(make_api):
    response = make_api("webhooks:manage").get(f"{URL}event-types/")
    assert response.status_code == 200
    by_name = {item["name"]: item for item in response.json()}
    assert by_name["erasure.requested"]["personal_data"] == ["identities"]
    assert by_name["consent.changed"]["personal_data"] == []


def test_a_retried_create_with_the_same_idempotency_key_subscribes_once(make_api):
    system = SystemFactory()
    api = make_api("webhooks:manage")
    first = api.post(URL, body(system), format="json", HTTP_IDEMPOTENCY_KEY="sub-1")
    again = api.post(URL, body(system), format="json", HTTP_IDEMPOTENCY_KEY="sub-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true"
    assert WebhookSubscription.objects.count() == 1
