"""POST /api/v1/conversations/: plugins push conversation logs to the built-in store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from compliance.models import (
    AuditEvent,
    Conversation,
    DataSubject,
    Message,
    SubjectIdentity,
)
from tests.factories import SubjectFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/conversations/"
START = datetime(2026, 11, 20, 9, 14, tzinfo=UTC)


def conversation_payload(
    conversation_id: str = "c-1",
    *,
    system: str = "shop-assistant",
    subject: dict | None = None,
    sequences=(0, 1),
    **extra,
) -> dict:
    payload = {
        "system": system,
        "conversation_id": conversation_id,
        "messages": [
            {
                "sequence": n,
                "role": "customer" if n % 2 else "assistant",
                "text": f"message {n} of {conversation_id}",
                "sent_at": (START + timedelta(seconds=20 * n)).isoformat(),
            }
            for n in sequences
        ],
    }
    if subject is not None:
        payload["subject"] = subject
    payload.update(extra)
    return payload


def assert_error_shape(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "errors"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture
def plugin(make_api, system):
    return make_api("logs:write")


def test_it_ingests_a_single_conversation_object(plugin, system):
    response = plugin.post(
        URL,
        conversation_payload(
            subject={"customer_id": "C-1001"},
            disclosure_version=2,
            disclosure_shown_at=START.isoformat(),
            started_at=START.isoformat(),
        ),
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json() == {
        "conversations_created": 1,
        "conversations_seen": 1,
        "messages_created": 2,
        "messages_skipped": 0,
    }
    conversation = Conversation.objects.get(system=system, external_id="c-1")
    assert conversation.disclosure.version == 2
    assert conversation.disclosure_shown_at == START
    assert conversation.started_at == START
    assert conversation.subject.external_id == "C-1001"
    assert list(conversation.messages.values_list("sequence", "role", "text")) == [
        (0, "assistant", "message 0 of c-1"),
        (1, "customer", "message 1 of c-1"),
    ]


def test_it_ingests_a_batch(plugin, system):
    batch = {
        "conversations": [
            conversation_payload(f"c-{n}", subject={"customer_id": f"C-{n}"}, sequences=range(3))
            for n in range(5)
        ]
    }
    response = plugin.post(URL, batch, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["conversations_created"] == 5
    assert response.json()["messages_created"] == 15
    assert Message.objects.filter(conversation__system=system).count() == 15
    assert DataSubject.objects.count() == 5


def test_started_at_defaults_to_the_first_message(plugin, system):
    plugin.post(URL, conversation_payload(sequences=(3, 1, 2)), format="json")
    assert Conversation.objects.get().started_at == START + timedelta(seconds=20)


@pytest.mark.parametrize(
    ("subject", "identity"),
    [
        ({"customer_id": "C-77"}, ("customer_id", "C-77")),
        ({"email": " Nia.Kern@Example.DE "}, ("email", "nia.kern@example.de")),
        ({"phone": "+49 (30) 901820"}, ("phone", "+4930901820")),
    ],
)
def test_an_unknown_subject_named_by_any_identity_is_created(plugin, system, subject, identity):
    response = plugin.post(URL, conversation_payload(subject=subject), format="json")
    assert response.status_code == 201, response.content
    created = SubjectIdentity.objects.get(type=identity[0], value=identity[1]).subject
    assert Conversation.objects.get().subject == created


def test_a_known_subject_named_by_another_identity_is_found_and_learns_it(plugin, system):
    ana = SubjectFactory(external_id="C-1001", identities={"email": "ana@example.com"})
    response = plugin.post(
        URL,
        conversation_payload(subject={"email": "ANA@example.com", "phone": "+442079460958"}),
        format="json",
    )
    assert response.status_code == 201, response.content
    assert DataSubject.objects.count() == 1
    assert Conversation.objects.get().subject == ana
    assert SubjectIdentity.objects.get(type="phone").subject == ana


def test_an_anonymous_conversation_has_no_subject(plugin, system):
    assert plugin.post(URL, conversation_payload(), format="json").status_code == 201
    assert Conversation.objects.get().subject is None
    assert DataSubject.objects.count() == 0


def test_re_sending_a_conversation_adds_only_the_new_messages(plugin, system):
    first = plugin.post(URL, conversation_payload(sequences=(0, 1)), format="json")
    assert first.status_code == 201
    again = plugin.post(URL, conversation_payload(sequences=(0, 1, 2, 3)), format="json")
    assert again.status_code == 201
    assert again.json() == {
        "conversations_created": 0,
        "conversations_seen": 1,
        "messages_created": 2,
        "messages_skipped": 2,
    }
    assert sorted(Message.objects.values_list("sequence", flat=True)) == [0, 1, 2, 3]
    assert Conversation.objects.count() == 1


def test_re_sending_everything_stores_nothing_and_answers_200(plugin, system):
    plugin.post(URL, conversation_payload(subject={"customer_id": "C-1"}), format="json")
    messages, subjects = Message.objects.count(), DataSubject.objects.count()
    response = plugin.post(URL, conversation_payload(subject={"customer_id": "C-1"}), format="json")
    assert response.status_code == 200, response.content
    assert response.json()["messages_created"] == 0
    assert response.json()["messages_skipped"] == 2
    assert (Message.objects.count(), DataSubject.objects.count()) == (messages, subjects)


def test_a_re_sent_message_keeps_its_first_text(plugin, system):
    plugin.post(URL, conversation_payload(sequences=(0,)), format="json")
    changed = conversation_payload(sequences=(0,))
    changed["messages"][0]["text"] = "rewritten"
    plugin.post(URL, changed, format="json")
    assert Message.objects.get().text == "message 0 of c-1"


def test_the_same_conversation_id_in_two_systems_is_two_conversations(
    make_api, system, other_system
):
    api = make_api("logs:write")
    api.post(URL, conversation_payload(system="shop-assistant"), format="json")
    api.post(URL, conversation_payload(system="travel-concierge"), format="json")
    assert Conversation.objects.filter(external_id="c-1").count() == 2
    assert Message.objects.count() == 4


# --- all or nothing -----------------------------------------------------------------------


def _break_item(item: dict, how: str) -> str:
    """Make one item invalid; return the field the error must name (after the index)."""
    if how == "role":
        item["messages"][1]["role"] = "robot"
        return "messages[1].role"
    if how == "system":
        item["system"] = "no-such-plugin"
        return "system"
    if how == "email":
        item["subject"] = {"email": "not-an-address"}
        return "subject.email"
    if how == "disclosure":
        item["disclosure_version"] = 99
        return "disclosure_version"
    if how == "naive-datetime":
        item["messages"][0]["sent_at"] = "2026-11-20T09:14:00"
        return "messages[0].sent_at"
    if how == "duplicate-sequence":
        item["messages"][1]["sequence"] = 0
        return "messages[1].sequence"
    if how == "nul":
        item["messages"][0]["text"] = "hello\x00world"
        return "messages[0].text"
    if how == "unknown-field":
        item["mood"] = "happy"
        return "mood"
    if how == "missing-field":
        del item["conversation_id"]
        return "conversation_id"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "role",
        "system",
        "email",
        "disclosure",
        "naive-datetime",
        "duplicate-sequence",
        "nul",
        "unknown-field",
        "missing-field",
    ],
)
def test_a_batch_with_one_invalid_item_is_refused_whole_naming_the_item(
    plugin, system, table_counts, how
):
    SubjectFactory(external_id="C-existing")
    items = [
        conversation_payload(f"c-{n}", subject={"customer_id": f"C-new-{n}"}, sequences=range(3))
        for n in range(6)
    ]
    items[1]["subject"] = {"customer_id": "C-existing", "email": "learned@example.com"}
    field = _break_item(items[3], how)
    before = table_counts()
    response = plugin.post(URL, {"conversations": items}, format="json")
    error = assert_error_shape(response, 400, "invalid_request")
    fields = [e["field"] for e in error["errors"]]
    assert f"conversations[3].{field}" in fields, error
    assert all(f.startswith("conversations[3].") for f in fields), error
    assert table_counts() == before
    assert not SubjectIdentity.objects.filter(value="learned@example.com").exists()


def test_identities_of_two_different_subjects_in_one_item_are_a_conflict(
    plugin, system, table_counts
):
    SubjectFactory(external_id="C-1")
    SubjectFactory(external_id="C-2", identities={"email": "two@example.com"})
    items = [
        conversation_payload("c-0", subject={"customer_id": "C-new"}),
        conversation_payload("c-1", subject={"customer_id": "C-1", "email": "two@example.com"}),
    ]
    before = table_counts()
    response = plugin.post(URL, {"conversations": items}, format="json")
    error = assert_error_shape(response, 409, "conflict")
    assert error["errors"][0]["field"] == "conversations[1].subject"
    assert "two@example.com" not in response.content.decode()
    assert table_counts() == before


def test_a_batch_naming_one_conversation_twice_is_refused(plugin, system, table_counts):
    before = table_counts()
    response = plugin.post(
        URL,
        {"conversations": [conversation_payload("c-1"), conversation_payload("c-1")]},
        format="json",
    )
    error = assert_error_shape(response, 400)
    assert error["errors"][0]["field"] == "conversations[1].conversation_id"
    assert table_counts() == before


def test_a_batch_of_more_than_1000_conversations_is_refused(plugin, system, table_counts):
    items = [conversation_payload(f"c-{n}", sequences=()) for n in range(1001)]
    before = table_counts()
    response = plugin.post(URL, {"conversations": items}, format="json")
    error = assert_error_shape(response, 400)
    assert error["errors"][0]["field"] == "conversations"
    assert table_counts() == before


def test_an_empty_batch_is_refused(plugin, system, table_counts):
    before = table_counts()
    assert_error_shape(plugin.post(URL, {"conversations": []}, format="json"), 400)
    assert table_counts() == before


def test_an_unknown_system_is_refused(plugin, system, table_counts):
    before = table_counts()
    response = plugin.post(URL, conversation_payload(system="ghost-bot"), format="json")
    error = assert_error_shape(response, 400)
    assert error["errors"] == [
        {"field": "conversations[0].system", "message": "No system with this slug is registered."}
    ]
    assert table_counts() == before


def test_an_unknown_disclosure_version_is_refused(plugin, system, table_counts):
    before = table_counts()
    response = plugin.post(URL, conversation_payload(disclosure_version=3), format="json")
    error = assert_error_shape(response, 400)
    assert error["errors"][0]["field"] == "conversations[0].disclosure_version"
    assert table_counts() == before


def test_a_disclosure_version_of_another_system_is_refused(
    plugin, system, other_system, table_counts
):
    from tests.factories import DisclosureFactory

    DisclosureFactory(system=other_system, version=5)
    before = table_counts()
    response = plugin.post(URL, conversation_payload(disclosure_version=5), format="json")
    assert_error_shape(response, 400)
    assert table_counts() == before


# --- who may send -------------------------------------------------------------------------


def test_a_client_bound_to_a_system_cannot_ingest_for_another(
    make_api, system, other_system, table_counts
):
    travel_plugin = make_api("logs:write", system=other_system)
    before = table_counts()
    response = travel_plugin.post(
        URL,
        {
            "conversations": [
                conversation_payload("t-1", system="travel-concierge"),
                conversation_payload("s-1", system="shop-assistant"),
            ]
        },
        format="json",
    )
    error = assert_error_shape(response, 403, "permission_denied")
    assert error["errors"][0]["field"] == "conversations[1].system"
    assert table_counts() == before


def test_a_client_bound_to_a_system_can_ingest_for_it(make_api, system):
    shop_plugin = make_api("logs:write", system=system)
    response = shop_plugin.post(URL, conversation_payload(), format="json")
    assert response.status_code == 201, response.content


def test_a_key_without_logs_write_cannot_ingest(make_api, system, table_counts):
    crm = make_api("subjects:read", "subjects:write", "logs:read")
    before = table_counts()
    error = assert_error_shape(crm.post(URL, conversation_payload(), format="json"), 403)
    assert "logs:write" in error["message"]
    assert table_counts() == before


def test_ingest_without_a_key_is_refused(client, system, table_counts):
    before = table_counts()
    response = client.post(URL, conversation_payload(), content_type="application/json")
    assert_error_shape(response, 401, "not_authenticated")
    assert table_counts() == before


def test_the_ingest_audit_event_names_the_caller_and_holds_no_personal_data(plugin, system):
    plugin.post(
        URL, conversation_payload(subject={"email": "secret.person@example.com"}), format="json"
    )
    event = AuditEvent.objects.get(action="conversations.ingested")
    assert event.actor == f"api:{plugin.api_client.name}"
    assert event.detail["messages_created"] == 2
    stored = str(event.detail) + event.target_id
    assert "secret.person" not in stored
    assert "message 0" not in stored
