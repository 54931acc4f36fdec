"""Webhooks in the admin: subscriptions through the service, deliveries read-only with a
"retry now" action."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from integrations.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from tests.factories import SystemFactory, WebhookSubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def dpo(client):
    user = get_user_model().objects.create_superuser("dpo", "dpo@example.com", "pw-not-secret")
    client.force_login(user)
    return client


def failed_delivery() -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        subscription=WebhookSubscriptionFactory(),
        event_type="erasure.requested",
        sequence=1,
        payload={"request_id": "r-1"},
        status=DeliveryStatus.FAILED,
        attempts=20,
        last_status_code=503,
        last_error="HTTP 503",
    )


def test_the_dpo_sees_a_delivery_with_its_attempts_read_only(dpo):
    delivery = failed_delivery()
    delivery.attempt_log.create(status_code=503, error="HTTP 503", duration_ms=12)
    response = dpo.get(f"/admin/integrations/webhookdelivery/{delivery.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "HTTP 503" in page
    assert 'name="_save"' not in page
    # Posting a change is refused: the outbox is evidence.
    refused = dpo.post(
        f"/admin/integrations/webhookdelivery/{delivery.pk}/change/", {"status": "delivered"}
    )
    assert refused.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED


def test_retry_now_puts_a_failed_delivery_back_in_the_queue(dpo):
    delivery = failed_delivery()
    response = dpo.post(
        "/admin/integrations/webhookdelivery/",
        {"action": "retry_now", "_selected_action": [delivery.pk]},
    )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING


def test_adding_a_subscription_shows_its_secret_once(dpo):
    system = SystemFactory()
    response = dpo.post(
        "/admin/integrations/webhooksubscription/add/",
        {
            "system": system.pk,
            "target_url": "https://crm.example.com/hooks",
            "event_types": ["erasure.requested"],
            "description": "",
        },
        follow=True,
    )
    assert response.status_code == 200
    subscription = WebhookSubscription.objects.get()
    assert subscription.event_types == ["erasure.requested"]
    assert subscription.secret in response.content.decode()
    detail = dpo.get(f"/admin/integrations/webhooksubscription/{subscription.pk}/change/")
    assert subscription.secret not in detail.content.decode()
    assert subscription.secret[:8] in detail.content.decode()


def test_staff_without_rights_cannot_see_deliveries(client):
    user = get_user_model().objects.create_user("clerk", password="pw-not-secret", is_staff=True)
    client.force_login(user)
    assert client.get("/admin/integrations/webhookdelivery/").status_code == 403


def test_deliveries_can_be_searched_by_event_id_or_subject_id(dpo):
    delivery = failed_delivery()
    found = dpo.get("/admin/integrations/webhookdelivery/", {"q": str(delivery.event_id)})
    assert found.status_code == 200
    assert found.context["cl"].result_count == 1
    nonsense = dpo.get("/admin/integrations/webhookdelivery/", {"q": "not-an-id"})
    assert nonsense.status_code == 200
    assert nonsense.context["cl"].result_count == 0
