"""Reading the built-in log store and the configured log sources through the API."""

from __future__ import annotations

import pytest

from tests.factories import (
    ConversationFactory,
    LogSourceFactory,
    MessageFactory,
    SubjectFactory,
    SystemFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop():
    return SystemFactory(slug="shop")


@pytest.fixture
def bank():
    return SystemFactory(slug="bank")


def test_a_reader_lists_conversations_newest_first_and_filters_by_subject(make_api, shop):
    ana, bo = SubjectFactory(), SubjectFactory()
    first = ConversationFactory(system=shop, subject=ana)
    ConversationFactory(system=shop, subject=bo)
    second = ConversationFactory(system=shop, subject=ana)
    api = make_api("logs:read")

    response = api.get("/api/v1/conversations/", {"subject": str(ana.pk)})

    assert response.status_code == 200
    ids = [row["id"] for row in response.json()["results"]]
    assert ids == [second.pk, first.pk]
    row = response.json()["results"][0]
    assert set(row) == {
        "id",
        "system",
        "conversation_id",
        "subject",
        "started_at",
        "disclosure_version",
        "disclosure_shown_at",
        "created_at",
    }
    assert row["system"] == "shop" and row["subject"] == str(ana.pk)


def test_a_conversation_comes_with_its_messages_in_order(make_api, shop):
    conversation = ConversationFactory(system=shop)
    MessageFactory(conversation=conversation, sequence=1, text="second")
    MessageFactory(conversation=conversation, sequence=0, text="first")

    response = make_api("logs:read").get(f"/api/v1/conversations/{conversation.pk}/")

    assert response.status_code == 200
    assert [m["text"] for m in response.json()["messages"]] == ["first", "second"]


def test_a_client_bound_to_a_system_never_sees_another_systems_conversations(make_api, shop, bank):
    theirs = ConversationFactory(system=bank)
    ours = ConversationFactory(system=shop)
    api = make_api("logs:read", system=shop)

    listed = api.get("/api/v1/conversations/").json()["results"]
    assert [row["id"] for row in listed] == [ours.pk]
    assert api.get(f"/api/v1/conversations/{theirs.pk}/").status_code == 404
    assert api.get("/api/v1/conversations/", {"system": "bank"}).json()["results"] == []


def test_reading_conversations_needs_the_read_scope(make_api, shop):
    conversation = ConversationFactory(system=shop)
    writer = make_api("logs:write")
    assert writer.get("/api/v1/conversations/").status_code == 403
    assert writer.get(f"/api/v1/conversations/{conversation.pk}/").status_code == 403


def test_a_malformed_subject_filter_is_a_clear_400(make_api):
    response = make_api("logs:read").get("/api/v1/conversations/", {"subject": "not-a-uuid"})
    assert response.status_code == 400
    assert response.json()["error"]["errors"][0]["field"] == "subject"


def test_log_sources_are_listed_without_their_settings(make_api, shop, bank):
    LogSourceFactory(
        system=shop,
        name="CRM table",
        connector="sql",
        config={"dsn": "postgres://crm:secret@db/crm", "table": "chats"},
    )
    LogSourceFactory(system=bank, name="Bank store")

    response = make_api("sources:read").get("/api/v1/sources/")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert {row["name"] for row in rows} == {"CRM table", "Bank store"}
    assert all(
        set(row) == {"id", "system", "name", "connector", "enabled", "created_at"} for row in rows
    )
    assert "secret" not in response.content.decode()


def test_a_client_bound_to_a_system_sees_only_its_sources_and_needs_the_scope(make_api, shop, bank):
    LogSourceFactory(system=shop, name="Shop store")
    LogSourceFactory(system=bank, name="Bank store")
    rows = make_api("sources:read", system=shop).get("/api/v1/sources/").json()["results"]
    assert [row["name"] for row in rows] == ["Shop store"]
    assert make_api("logs:read").get("/api/v1/sources/").status_code == 403
