"""consent.changed: every consent event is announced through the webhook outbox in its
own transaction (the consent services call webhook_emit)."""

from __future__ import annotations

import pytest
from django.db import transaction

from consent import services as consent_services
from integrations.models import WebhookDelivery
from tests.factories import PurposeFactory, SubjectFactory, WebhookSubscriptionFactory

pytestmark = pytest.mark.django_db


def test_a_grant_and_a_withdrawal_are_announced_in_order_without_personal_data():
    subscription = WebhookSubscriptionFactory(event_types=["consent.changed"])
    ana = SubjectFactory(identities={"email": "ana@example.com"})
    purpose = PurposeFactory(slug="marketing-emails")
    consent_services.consent_grant(subject=ana, purpose=purpose, source="api", actor="test")
    consent_services.consent_withdraw(subject=ana, purpose=purpose, source="portal", actor="t")
    deliveries = list(
        WebhookDelivery.objects.filter(subscription=subscription).order_by("sequence")
    )
    assert [d.ordering_key for d in deliveries] == [str(ana.pk)] * 2
    payloads = [d.payload for d in deliveries]
    assert [(p["purpose"], p["action"], p["state"], p["source"]) for p in payloads] == [
        ("marketing-emails", "grant", "granted", "api"),
        ("marketing-emails", "withdraw", "withdrawn", "portal"),
    ]
    assert set(payloads[0]) == {"purpose", "action", "state", "source", "occurred_at"}


def test_a_consent_change_that_rolls_back_is_never_announced():
    WebhookSubscriptionFactory(event_types=["consent.changed"])
    ana = SubjectFactory()
    purpose = PurposeFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        consent_services.consent_grant(subject=ana, purpose=purpose, source="api", actor="t")
        assert WebhookDelivery.objects.count() == 1
        raise RuntimeError("the surrounding change failed")
    assert not WebhookDelivery.objects.exists()
