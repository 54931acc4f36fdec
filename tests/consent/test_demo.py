"""The consent demo seed: the purposes and a history for demo customers, idempotent."""

from __future__ import annotations

import pytest

from compliance.demo import ACTOR, demo_customers
from compliance.services import subject_create
from consent.demo import seed_consent
from consent.models import ConsentEvent, ConsentState, Purpose, PurposeNotice

pytestmark = pytest.mark.django_db


def test_it_creates_the_purposes_and_some_history_and_a_second_run_changes_nothing():
    for customer in demo_customers()[:30]:
        subject_create(
            identities={"customer_id": customer.customer_id, "email": customer.email},
            jurisdiction=customer.jurisdiction,
            actor=ACTOR,
        )
    first = seed_consent()
    assert set(Purpose.objects.values_list("slug", flat=True)) == {
        "conversation-logging",
        "ai-improvement",
        "marketing",
        "third-party-sharing",
        "analytics",
        "sale-and-sharing",
        "sensitive-pi-use",
    }
    assert Purpose.objects.get(slug="marketing").notices.count() == 2
    assert first["consent_events_created"] > 20
    assert ConsentEvent.objects.filter(source="gpc").exists()
    assert ConsentState.objects.filter(purpose__slug="conversation-logging").exists()
    counts = (ConsentEvent.objects.count(), PurposeNotice.objects.count(), Purpose.objects.count())

    second = seed_consent()
    assert second["consent_events_created"] == 0
    assert counts == (
        ConsentEvent.objects.count(),
        PurposeNotice.objects.count(),
        Purpose.objects.count(),
    )


def test_it_is_one_of_the_seeders():
    from compliance.management.commands.seed_demo import SEEDERS

    assert "consent.demo:seed_consent" in SEEDERS
