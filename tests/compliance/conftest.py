"""Fixtures of the core domain's tests."""

from __future__ import annotations

import pytest

from compliance.models import (
    AuditEvent,
    Conversation,
    DataSubject,
    Message,
    SubjectIdentity,
)

COUNTED = {
    "subjects": DataSubject,
    "identities": SubjectIdentity,
    "conversations": Conversation,
    "messages": Message,
    "audit_events": AuditEvent,
}


def count_rows() -> dict[str, int]:
    return {name: model.objects.count() for name, model in COUNTED.items()}


@pytest.fixture
def table_counts():
    """Row counts of every table a request could write to, to prove nothing was written."""
    return count_rows


@pytest.fixture
def system(db):
    from tests.factories import DisclosureFactory, SystemFactory

    system = SystemFactory(slug="shop-assistant")
    DisclosureFactory(system=system, version=1, text="You are chatting with an AI assistant.")
    DisclosureFactory(system=system, version=2, text="You are chatting with an AI, not a person.")
    return system


@pytest.fixture
def other_system(db):
    from tests.factories import SystemFactory

    return SystemFactory(slug="travel-concierge")
