"""The built-in log store refuses new conversations of a customer who said no to
conversation logging, answers 409 with the reason, and counts the refusals per system."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections

from compliance.models import Conversation, Message
from consent import services
from consent.models import IngestRefusal, LawfulBasis
from tests.consent.helpers import assert_error
from tests.factories import PurposeFactory, SubjectFactory, SystemFactory

URL = "/api/v1/conversations/"
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def conversation(conversation_id: str, customer_id: str, *, system="shop", sequences=(0, 1)):
    return {
        "system": system,
        "conversation_id": conversation_id,
        "subject": {"customer_id": customer_id},
        "messages": [
            {
                "sequence": n,
                "role": "customer",
                "text": f"message {n}",
                "sent_at": (START + timedelta(seconds=n)).isoformat(),
            }
            for n in sequences
        ],
    }


@pytest.fixture(autouse=True)
def no_counts_left_behind():
    """Refusal counts are written through a connection of their own, outside the test's
    transaction, so rolling the test back does not remove them: delete them the same way."""
    yield
    side = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with side.cursor() as cursor:
            cursor.execute(f"DELETE FROM {IngestRefusal._meta.db_table}")
    finally:
        side.close()


@pytest.fixture
def logging_purpose(db):
    return PurposeFactory(slug="conversation-logging", lawful_basis=LawfulBasis.LEGITIMATE_INTEREST)


@pytest.fixture
def shop(db):
    return SystemFactory(slug="shop")


@pytest.fixture
def plugin(make_api, shop):
    return make_api("logs:write")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "says"),
    [("withdraw", "withdrawn consent"), ("object", "objected"), ("opt_out", "opted out")],
)
def test_a_customer_who_said_no_to_logging_is_refused_with_a_409(
    plugin, logging_purpose, action, says
):
    customer = SubjectFactory(external_id="NO-LOG")
    services.consent_record(
        subject=customer, purpose=logging_purpose, action=action, source="portal", actor="test"
    )
    batch = {"conversations": [conversation("c-ok", "OTHER"), conversation("c-1", "NO-LOG")]}
    error = assert_error(plugin.post(URL, batch, format="json"), 409, "conflict")
    assert says in error["message"]
    assert error["errors"][0]["field"] == "conversations[1].subject"
    assert "NO-LOG" not in str(error)
    assert IngestRefusal.objects.get(system_slug="shop").count == 1
    # All or nothing: the other customer's conversation was not stored either.
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_a_customer_who_granted_or_never_chose_is_logged(plugin, logging_purpose):
    customer = SubjectFactory(external_id="YES-LOG")
    services.consent_grant(subject=customer, purpose=logging_purpose, source="portal", actor="test")
    batch = {"conversations": [conversation("c-1", "YES-LOG"), conversation("c-2", "NEW")]}
    assert plugin.post(URL, batch, format="json").status_code == 201
    assert Conversation.objects.count() == 2


@pytest.mark.django_db
def test_a_grant_after_a_withdrawal_lets_logs_in_again(plugin, logging_purpose):
    customer = SubjectFactory(external_id="BACK")
    for action in ("withdraw", "grant"):
        services.consent_record(
            subject=customer, purpose=logging_purpose, action=action, source="portal", actor="t"
        )
    assert plugin.post(URL, conversation("c-1", "BACK"), format="json").status_code == 201


@pytest.mark.django_db
def test_re_sending_a_stored_conversation_is_not_refused_but_new_messages_are(
    plugin, logging_purpose
):
    customer = SubjectFactory(external_id="LATER")
    assert plugin.post(URL, conversation("c-1", "LATER"), format="json").status_code == 201
    services.consent_withdraw(
        subject=customer, purpose=logging_purpose, source="portal", actor="test"
    )
    # Nothing new would be stored: the ingest stays idempotent.
    assert plugin.post(URL, conversation("c-1", "LATER"), format="json").status_code == 200
    more = conversation("c-1", "LATER", sequences=(0, 1, 2))
    assert_error(plugin.post(URL, more, format="json"), 409)
    assert Message.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_refusals_are_counted_per_system_although_the_ingest_rolls_back(make_api, logging_purpose):
    SystemFactory(slug="shop")
    SystemFactory(slug="travel")
    plugin = make_api("logs:write")
    customer = SubjectFactory(external_id="NO-LOG")
    services.consent_withdraw(
        subject=customer, purpose=logging_purpose, source="portal", actor="test"
    )
    for _ in range(2):
        batch = {
            "conversations": [
                conversation("c-1", "NO-LOG"),
                conversation("c-2", "NO-LOG"),
                conversation("c-3", "NO-LOG", system="travel"),
            ]
        }
        assert plugin.post(URL, batch, format="json").status_code == 409
    counts = dict(IngestRefusal.objects.values_list("system_slug", "count"))
    assert counts == {"shop": 4, "travel": 2}
    assert IngestRefusal.objects.get(system_slug="shop").last_refused_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_pending_count_path_writes_once_the_transaction_is_over():
    services._PENDING.append(("shop", 3, START))
    services.flush_pending_refusals()
    services._PENDING.append(("shop", 2, START))
    services.flush_pending_refusals()
    assert IngestRefusal.objects.get(system_slug="shop").count == 5
    assert services._PENDING == []


@pytest.mark.django_db
def test_the_dpo_sees_refusal_counts_in_the_admin(client):
    IngestRefusal.objects.create(system_slug="shop", count=7, last_refused_at=START)
    dpo = get_user_model().objects.create_superuser("dpo", "dpo@example.com", "pw")
    client.force_login(dpo)
    page = client.get("/admin/consent/ingestrefusal/")
    assert page.status_code == 200
    assert "shop" in page.content.decode()
    assert client.get("/admin/consent/ingestrefusal/add/").status_code == 403
