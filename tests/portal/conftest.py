"""Personas and helpers for the portal's tests: a customer (Ana) with conversations, a
stranger (Bo) with conversations of their own, and a signed-in test client."""

from __future__ import annotations

import importlib
import re
import uuid
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from compliance.models import MessageRole
from tests.factories import (
    ConversationFactory,
    DisclosureFactory,
    MessageFactory,
    SubjectFactory,
    SystemFactory,
)

ANA_EMAIL = "ana@example.com"
BO_EMAIL = "bo@example.com"
CODE_RE = re.compile(r"\b(\d{6})\b")


def ensure_builtin_purposes() -> None:
    """The two CCPA purposes come from a data migration, which a transactional test's flush
    wipes for every test after it; put them back the way the migration makes them."""
    from django.apps import apps

    migration = importlib.import_module("consent.migrations.0002_builtin_purposes")
    migration.create(apps, None)


@pytest.fixture(autouse=True)
def builtin_purposes(db):
    ensure_builtin_purposes()


@pytest.fixture(autouse=True)
def portal_cache(settings):
    """A cache key prefix of each test's own on the shared Redis: rate-limit counters and
    codes of one test never reach the next. Never a flush: other runs share the server."""
    caches = {alias: dict(config) for alias, config in django_settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"portal-test-{uuid.uuid4().hex}"
    settings.CACHES = caches
    settings.PORTAL_SIGN_IN_MIN_SECONDS = 0


def make_customer(email: str, *, system_slug: str = "shop-assistant"):
    """A customer with two conversations with one assistant: an AI answer to report."""
    subject = SubjectFactory(identities={"email": email})
    system = SystemFactory(slug=system_slug, name=system_slug.replace("-", " ").title())
    disclosure = system.disclosures.first() or DisclosureFactory(
        system=system, version=1, text="You are chatting with an AI assistant."
    )
    conversations = []
    for days_ago in (30, 2):
        conversation = ConversationFactory(
            system=system,
            subject=subject,
            started_at=timezone.now() - timedelta(days=days_ago),
            disclosure=disclosure,
            disclosure_shown_at=timezone.now() - timedelta(days=days_ago),
        )
        MessageFactory(
            conversation=conversation,
            sequence=1,
            role=MessageRole.CUSTOMER,
            text=f"Where is my parcel? ({email})",
        )
        MessageFactory(
            conversation=conversation,
            sequence=2,
            role=MessageRole.ASSISTANT,
            text="Your parcel was delivered yesterday.",
        )
        conversations.append(conversation)
    subject.test_conversations = conversations
    return subject


@pytest.fixture
def ana(db):
    return make_customer(ANA_EMAIL)


@pytest.fixture
def bo(db):
    return make_customer(BO_EMAIL, system_slug="travel-assistant")


def code_from_outbox(outbox) -> str:
    assert outbox, "no sign-in email was sent"
    match = CODE_RE.search(outbox[-1].body)
    assert match, "the sign-in email holds no six-digit code"
    return match.group(1)


def sign_in(client, outbox, identity: str) -> None:
    response = client.post("/portal/sign-in/", {"identity": identity})
    assert response.status_code == 302, response.content
    response = client.post("/portal/sign-in/code/", {"code": code_from_outbox(outbox)})
    assert response.status_code == 302, response.content
    assert response["Location"] == "/"


@pytest.fixture
def ana_client(client, mailoutbox, ana):
    sign_in(client, mailoutbox, ANA_EMAIL)
    mailoutbox.clear()
    return client
