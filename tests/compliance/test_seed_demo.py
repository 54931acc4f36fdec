"""manage.py seed_demo: realistic demo data, and running it again changes nothing."""

from __future__ import annotations

import io
import re

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from compliance.audit import audit_verify
from compliance.identities import InvalidIdentity, normalize_phone
from compliance.models import (
    AIDisclosure,
    Conversation,
    DataSubject,
    LogSource,
    Message,
    SubjectIdentity,
    System,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def every_table_count() -> dict[str, int]:
    return {
        model._meta.label: model._base_manager.count()
        for model in apps.get_models()
        if model._meta.managed and not model._meta.proxy
    }


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", allow_production=True, stdout=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker):
    """Seed once for the module (2,000 conversations take a while), inside a transaction
    rolled back at the end so other modules see an empty database."""
    from django.db import transaction

    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            first_output = seed()
            after_first = every_table_count()
            second_output = seed()
            after_second = every_table_count()
            yield {
                "first": first_output,
                "second": second_output,
                "after_first": after_first,
                "after_second": after_second,
            }
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


def test_it_creates_three_plugins_with_versioned_disclosures(seeded):
    systems = {s.slug: s for s in System.objects.all()}
    assert set(systems) == {"shop-assistant", "travel-concierge", "bank-helpdesk"}
    versions = {
        slug: list(
            AIDisclosure.objects.filter(system=s)
            .order_by("version")
            .values_list("version", flat=True)
        )
        for slug, s in systems.items()
    }
    assert versions == {
        "shop-assistant": [1, 2],
        "travel-concierge": [1],
        "bank-helpdesk": [1, 2, 3],
    }
    assert LogSource.objects.filter(connector="builtin").count() == 3
    assert all(s.data_categories.exists() for s in systems.values())


def test_it_creates_about_fifty_customers_from_several_jurisdictions(seeded):
    assert 45 <= DataSubject.objects.count() <= 55
    assert DataSubject.objects.exclude(display_name="").count() == DataSubject.objects.count()
    assert DataSubject.objects.values("jurisdiction").distinct().count() >= 3
    for identity_type in ("customer_id", "email", "phone"):
        assert SubjectIdentity.objects.filter(type=identity_type).count() == (
            DataSubject.objects.count()
        )
    assert SubjectIdentity.objects.filter(type="phone").exclude(value__startswith="+44").exists()


def test_it_creates_2000_conversations_with_their_disclosure_and_messages(seeded):
    assert Conversation.objects.count() == 2000
    assert Message.objects.count() >= 2000 * 3
    assert not Conversation.objects.filter(disclosure__isnull=True).exists()
    anonymous = Conversation.objects.filter(subject__isnull=True).count()
    assert 0 < anonymous < 300
    assert Conversation.objects.values("system").distinct().count() == 3


def test_some_customers_typed_their_email_into_the_chat(seeded):
    emails = SubjectIdentity.objects.filter(type="email").values_list("value", flat=True)
    typed = [e for e in emails if Message.objects.filter(text__icontains=e).exists()]
    assert len(typed) >= 5


def test_some_customers_typed_their_phone_into_the_chat(seeded):
    phones = set(SubjectIdentity.objects.filter(type="phone").values_list("value", flat=True))
    found = set()
    for text in Message.objects.filter(text__startswith="You can call me on ").values_list(
        "text", flat=True
    ):
        written = re.match(r"You can call me on (.+) after 5pm", text).group(1)
        try:
            found.add(normalize_phone(written))
        except InvalidIdentity:
            continue
    assert len(found & phones) >= 5


def test_it_creates_the_demo_dpo(seeded):
    dpo = get_user_model().objects.get(username="dpo")
    assert dpo.is_superuser and dpo.is_staff


def test_running_it_twice_creates_nothing_new(seeded):
    assert seeded["after_second"] == seeded["after_first"]
    assert "(unchanged)" in seeded["second"]


def test_the_seeded_audit_trail_is_intact_and_free_of_personal_data(seeded):
    assert audit_verify().intact
    from compliance.models import AuditEvent

    emails = list(SubjectIdentity.objects.filter(type="email").values_list("value", flat=True))
    names = list(DataSubject.objects.values_list("display_name", flat=True))
    for detail in AuditEvent.objects.values_list("detail", flat=True):
        text = str(detail)
        assert not any(e in text for e in emails)
        assert not any(n in text for n in names)


def test_it_refuses_to_seed_a_production_database_unless_told(db, settings):
    settings.EMBEDDED = False
    settings.DEBUG = False
    before = every_table_count()
    with pytest.raises(CommandError):
        call_command("seed_demo", stdout=io.StringIO())
    assert every_table_count() == before
