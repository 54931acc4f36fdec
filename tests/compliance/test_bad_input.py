"""Bad input on every endpoint: a 4xx in the one error shape, a clear message, nothing written.

The Django test client re-raises any exception a view lets through, so a 500 fails these
tests loudly rather than hiding behind a status code."""

from __future__ import annotations

import base64
import json

import pytest

from compliance.models import Conversation, DataSubject, Message
from compliance.services import KNOWN_SCOPES
from tests.factories import SubjectFactory

pytestmark = pytest.mark.django_db

INGEST = "/api/v1/conversations/"
SUBJECTS = "/api/v1/subjects/"
LOOKUP = "/api/v1/subjects/lookup/"
POST_ENDPOINTS = [INGEST, SUBJECTS, LOOKUP]

SQL = "'; DROP TABLE compliance_message; --"
SCRIPT = "<script>alert(1)</script>"


def assert_error_shape(response, status: int | None = None) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
    if status is not None:
        assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content.decode("utf-8"))
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "errors"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["errors"], list)
    for item in error["errors"]:
        assert set(item) >= {"field", "message"}
    return error


@pytest.fixture
def api(make_api, system):
    return make_api(*KNOWN_SCOPES)


def conversation(**overrides) -> dict:
    payload = {
        "system": "shop-assistant",
        "conversation_id": "c-1",
        "subject": {"customer_id": "C-1"},
        "started_at": "2026-11-20T09:14:00Z",
        "disclosure_version": 1,
        "disclosure_shown_at": "2026-11-20T09:14:00Z",
        "messages": [
            {
                "sequence": 0,
                "role": "customer",
                "text": "Where is my order?",
                "sent_at": "2026-11-20T09:14:09Z",
            }
        ],
    }
    payload.update(overrides)
    return payload


def message(**overrides) -> dict:
    return {**conversation()["messages"][0], **overrides}


def raw_post(api, url: str, body: bytes, content_type: str = "application/json"):
    return api.generic("POST", url, body, content_type=content_type)


# --- bodies that are not what the API reads ------------------------------------------------

BAD_BODIES = {
    "plain-text": (b"hello", "text/plain"),
    "form": (b"system=shop-assistant", "application/x-www-form-urlencoded"),
    "multipart": (b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x"),
    "xml": (b"<conversation/>", "application/xml"),
    "invalid-utf8": (b'{"system": "shop\xff\xfe-assistant"}', "application/json"),
    "latin1-bytes": ('{"identity": "customer_id:Jos\u00e9"}'.encode("latin-1"), "application/json"),
    "not-json": (b"{system: shop-assistant", "application/json"),
    "truncated": (b'{"conversations": [{"system": ', "application/json"),
    "array": (b"[]", "application/json"),
    "array-of-object": (b'[{"system": "shop-assistant"}]', "application/json"),
    "string": (b'"shop-assistant"', "application/json"),
    "number": (b"42", "application/json"),
    "null": (b"null", "application/json"),
    "true": (b"true", "application/json"),
    "nan": (b'{"identity": NaN}', "application/json"),
    "infinity": (b'{"identity": Infinity}', "application/json"),
    "deep-nesting": (b"[" * 100_000, "application/json"),
    "unknown-charset": (b"{}", "application/json; charset=no-such-codec"),
    "empty": (b"", "application/json"),
    "surrogate-key": (b'{"\\ud800": 1}', "application/json"),
    "nul-key": (b'{"\\u0000": 1}', "application/json"),
    "huge-key": (b'{"' + b"k" * 100_000 + b'": 1}', "application/json"),
    "bom": (b"\xef\xbb\xbf{}", "application/json"),
}


@pytest.mark.parametrize("url", POST_ENDPOINTS)
@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_a_malformed_body_is_a_4xx_that_writes_nothing(api, table_counts, url, name):
    body, content_type = BAD_BODIES[name]
    before = table_counts()
    response = raw_post(api, url, body, content_type)
    error = assert_error_shape(response)
    if name in {"plain-text", "form", "multipart", "xml"}:
        assert response.status_code == 415
    assert "\ufffd" not in error["message"]
    assert table_counts() == before


@pytest.mark.parametrize("url", POST_ENDPOINTS)
def test_a_10_mb_body_is_refused_with_413_before_it_is_read(api, table_counts, url):
    huge = json.dumps({"conversations": [conversation(conversation_id="x" * 10_000_000)]})
    before = table_counts()
    response = raw_post(api, url, huge.encode())
    error = assert_error_shape(response, 413)
    assert error["code"] == "payload_too_large"
    assert table_counts() == before


@pytest.mark.parametrize("url", POST_ENDPOINTS)
def test_a_lying_content_length_is_refused(api, url):
    response = api.generic(
        "POST", url, b"{}", content_type="application/json", CONTENT_LENGTH="lots"
    )
    assert_error_shape(response, 400)


@pytest.mark.parametrize("url", POST_ENDPOINTS)
def test_the_body_limit_is_checked_before_authentication(client, url):
    response = client.generic(
        "POST", url, b"x" * (9 * 1024 * 1024), content_type="application/json"
    )
    assert_error_shape(response, 413)


# --- the ingest endpoint, field by field ---------------------------------------------------

INGEST_CASES = {
    # wrong types
    "system-list": (conversation(system=["shop-assistant"]), "system"),
    "system-null": (conversation(system=None), "system"),
    "system-not-a-slug": (conversation(system="shop assistant!"), "system"),
    "system-unknown": (conversation(system="ghost-bot"), "system"),
    "conversation-id-object": (conversation(conversation_id={"id": 1}), "conversation_id"),
    "conversation-id-too-long": (conversation(conversation_id="c" * 201), "conversation_id"),
    "messages-string": (conversation(messages="hello"), "messages"),
    "messages-null": (conversation(messages=None), "messages"),
    "messages-of-numbers": (conversation(messages=[1, 2]), "messages[0]"),
    "subject-string": (conversation(subject="C-1"), "subject"),
    "subject-list": (conversation(subject=["C-1"]), "subject"),
    "subject-empty": (conversation(subject={}), "subject"),
    "subject-unknown-type": (conversation(subject={"fax": "+4930901820"}), "subject.fax"),
    "subject-email-list": (conversation(subject={"email": ["a@example.com"]}), "subject.email"),
    "subject-bad-email": (conversation(subject={"email": "not-an-email"}), "subject.email"),
    "subject-bad-phone": (conversation(subject={"phone": "12"}), "subject.phone"),
    "sequence-string": (conversation(messages=[message(sequence="first")]), "sequence"),
    "sequence-bool": (conversation(messages=[message(sequence=True)]), "sequence"),
    "sequence-float": (conversation(messages=[message(sequence=1.5)]), "sequence"),
    "sequence-negative": (conversation(messages=[message(sequence=-1)]), "sequence"),
    "sequence-null": (conversation(messages=[message(sequence=None)]), "sequence"),
    "sequence-2-31": (conversation(messages=[message(sequence=2**31)]), "sequence"),
    "sequence-10-30": (conversation(messages=[message(sequence=10**30)]), "sequence"),
    "role-unknown": (conversation(messages=[message(role="robot")]), "role"),
    "role-number": (conversation(messages=[message(role=5)]), "role"),
    "text-list": (conversation(messages=[message(text=["a"])]), "text"),
    "text-object": (conversation(messages=[message(text={"a": 1})]), "text"),
    "text-bool": (conversation(messages=[message(text=True)]), "text"),
    "text-null": (conversation(messages=[message(text=None)]), "text"),
    "text-too-long": (conversation(messages=[message(text="x" * 20_001)]), "text"),
    "text-nul": (conversation(messages=[message(text="hello\x00world")]), "text"),
    "sent-at-number": (conversation(messages=[message(sent_at=1_763_630_040)]), "sent_at"),
    "sent-at-words": (conversation(messages=[message(sent_at="yesterday")]), "sent_at"),
    "sent-at-date": (conversation(messages=[message(sent_at="2026-11-20")]), "sent_at"),
    "sent-at-naive": (conversation(messages=[message(sent_at="2026-11-20T09:14:09")]), "sent_at"),
    "sent-at-year-0": (conversation(messages=[message(sent_at="0000-01-01T00:00:00Z")]), "sent_at"),
    "started-at-naive": (conversation(started_at="2026-11-20T09:14:00"), "started_at"),
    "shown-at-naive": (conversation(disclosure_shown_at="2026-11-20 09:14"), "disclosure_shown_at"),
    "disclosure-string": (conversation(disclosure_version="two"), "disclosure_version"),
    "disclosure-zero": (conversation(disclosure_version=0), "disclosure_version"),
    "disclosure-huge": (conversation(disclosure_version=10**20), "disclosure_version"),
    "disclosure-unknown": (conversation(disclosure_version=9), "disclosure_version"),
    "duplicate-sequence": (
        conversation(messages=[message(sequence=0), message(sequence=0)]),
        "messages[1].sequence",
    ),
    # missing and unknown fields
    "no-conversation-id": (
        {k: v for k, v in conversation().items() if k != "conversation_id"},
        "conversation_id",
    ),
    "no-messages": ({k: v for k, v in conversation().items() if k != "messages"}, "messages"),
    "message-without-text": (
        conversation(messages=[{k: v for k, v in message().items() if k != "text"}]),
        "text",
    ),
    "unknown-top-level": (conversation(mood="happy"), "mood"),
    "unknown-in-message": (conversation(messages=[message(sentiment=0.9)]), "sentiment"),
    "unknown-in-subject": (conversation(subject={"customer_id": "C-1", "ssn": "x"}), "ssn"),
}


@pytest.mark.parametrize("name", list(INGEST_CASES))
@pytest.mark.parametrize("shape", ["single", "batch"])
def test_bad_ingest_fields_are_a_4xx_naming_the_field_and_write_nothing(
    api, table_counts, name, shape
):
    payload, field = INGEST_CASES[name]
    body = payload if shape == "single" else {"conversations": [conversation(), payload]}
    if shape == "batch":
        body["conversations"][0]["conversation_id"] = "c-0"
    index = 0 if shape == "single" else 1
    before = table_counts()
    response = api.post(INGEST, body, format="json")
    error = assert_error_shape(response, 400)
    fields = [e["field"] for e in error["errors"]]
    assert fields, error
    assert all(f.startswith(f"conversations[{index}]") for f in fields), fields
    assert any(field in f for f in fields), (field, fields)
    assert table_counts() == before


def test_a_batch_that_is_not_a_list_is_refused(api, table_counts):
    before = table_counts()
    for conversations in ("all", None, {"0": conversation()}, 5):
        response = api.post(INGEST, {"conversations": conversations}, format="json")
        error = assert_error_shape(response, 400)
        assert error["errors"][0]["field"] == "conversations"
    assert table_counts() == before


def test_a_batch_with_other_top_level_fields_is_refused(api, table_counts):
    before = table_counts()
    response = api.post(INGEST, {"conversations": [conversation()], "dry_run": True}, format="json")
    error = assert_error_shape(response, 400)
    assert error["errors"][0]["field"] == "dry_run"
    assert table_counts() == before


@pytest.mark.parametrize(
    "raw_field",
    [
        b'"conversation_id": "c-\\ud800"',
        b'"conversation_id": "c-\\udfff-x"',
        b'"conversation_id": "c-\\u0000"',
    ],
)
def test_nul_and_lone_surrogates_in_ids_are_refused(api, table_counts, raw_field):
    body = json.dumps(conversation()).encode().replace(b'"conversation_id": "c-1"', raw_field)
    before = table_counts()
    error = assert_error_shape(raw_post(api, INGEST, body), 400)
    assert error["errors"][0]["field"] == "conversations[0].conversation_id"
    assert table_counts() == before


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udc00", b"\\ud83d", b"\\u0000"])
def test_nul_and_lone_surrogates_in_message_text_are_refused(api, table_counts, escape):
    body = json.dumps(conversation()).encode().replace(b"Where is", b"Where " + escape + b"is")
    before = table_counts()
    error = assert_error_shape(raw_post(api, INGEST, body), 400)
    assert error["errors"][0]["field"] == "conversations[0].messages[0].text"
    assert table_counts() == before


def test_a_proper_surrogate_pair_is_an_emoji_and_stored(api):
    body = json.dumps(conversation()).encode().replace(b"Where is", b"\\ud83d\\ude00 Where is")
    assert raw_post(api, INGEST, body).status_code == 201
    assert Message.objects.get().text.startswith("\U0001f600 ")


def test_a_sequence_with_thousands_of_digits_is_refused(api, table_counts):
    body = (
        json.dumps(conversation()).encode().replace(b'"sequence": 0', b'"sequence": ' + b"9" * 5000)
    )
    before = table_counts()
    assert_error_shape(raw_post(api, INGEST, body), 400)
    assert table_counts() == before


@pytest.mark.parametrize(
    "fragment", [SQL, SCRIPT, "Robert'); DELETE FROM compliance_subjectidentity;--"]
)
def test_sql_and_script_fragments_in_text_are_stored_verbatim_as_data(api, fragment):
    payload = conversation(
        conversation_id=fragment,
        subject={"customer_id": fragment},
        messages=[message(text=fragment), message(sequence=1, text=f"x {fragment} y")],
    )
    response = api.post(INGEST, payload, format="json")
    assert response.status_code == 201, response.content
    stored = Conversation.objects.get()
    assert stored.external_id == fragment
    assert stored.subject.external_id == fragment
    assert list(stored.messages.values_list("text", flat=True)) == [fragment, f"x {fragment} y"]
    assert Message.objects.count() == 2  # the table is still there


@pytest.mark.parametrize("fragment", [SQL, SCRIPT])
def test_sql_and_script_fragments_come_back_as_json_strings_never_markup(api, fragment):
    created = api.post(
        SUBJECTS,
        {"identities": {"customer_id": fragment}, "display_name": fragment},
        format="json",
    )
    assert created.status_code == 201, created.content
    for response in (
        api.get(f"{SUBJECTS}{created.json()['id']}/"),
        api.get(SUBJECTS, {"customer_id": fragment}),
        api.post(LOOKUP, {"identity": f"customer_id:{fragment}"}, format="json"),
    ):
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/json"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert fragment in json.dumps(response.json())  # the value round-trips exactly
    assert DataSubject.objects.get().display_name == fragment


# --- the subject endpoints, field by field -------------------------------------------------

SUBJECT_CASES = {
    "no-identities": ({"display_name": "Ana"}, "identities"),
    "identities-string": ({"identities": "C-1"}, "identities"),
    "identities-list": ({"identities": [{"customer_id": "C-1"}]}, "identities"),
    "identities-null": ({"identities": None}, "identities"),
    "identity-unknown-type": ({"identities": {"passport": "X123"}}, "identities.passport"),
    "identity-number-list": ({"identities": {"customer_id": [1]}}, "identities.customer_id"),
    "customer-id-too-long": ({"identities": {"customer_id": "c" * 201}}, "identities.customer_id"),
    "customer-id-blank": ({"identities": {"customer_id": "   "}}, "identities.customer_id"),
    "email-invalid": ({"identities": {"email": "ana at example"}}, "identities.email"),
    "phone-invalid": ({"identities": {"phone": "call me"}}, "identities.phone"),
    "display-name-list": (
        {"identities": {"customer_id": "C-1"}, "display_name": ["Ana"]},
        "display_name",
    ),
    "display-name-too-long": (
        {"identities": {"customer_id": "C-1"}, "display_name": "A" * 201},
        "display_name",
    ),
    "display-name-nul": (
        {"identities": {"customer_id": "C-1"}, "display_name": "A\x00na"},
        "display_name",
    ),
    "jurisdiction-unknown": (
        {"identities": {"customer_id": "C-1"}, "jurisdiction": "Mars"},
        "jurisdiction",
    ),
    "jurisdiction-number": (
        {"identities": {"customer_id": "C-1"}, "jurisdiction": 1},
        "jurisdiction",
    ),
    "unknown-field": ({"identities": {"customer_id": "C-1"}, "is_admin": True}, "is_admin"),
}


@pytest.mark.parametrize("name", list(SUBJECT_CASES))
def test_bad_subject_fields_are_a_400_naming_the_field_and_write_nothing(api, table_counts, name):
    body, field = SUBJECT_CASES[name]
    before = table_counts()
    error = assert_error_shape(api.post(SUBJECTS, body, format="json"), 400)
    assert field in [e["field"] for e in error["errors"]], error
    assert table_counts() == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"identities": {"customer_id": "C-\\ud800"}}',
        b'{"identities": {"customer_id": "C-1"}, "display_name": "A\\udfffna"}',
        b'{"identities": {"customer_id": "C-1\\u0000"}}',
    ],
)
def test_nul_and_lone_surrogates_in_subject_fields_are_refused(api, table_counts, raw):
    before = table_counts()
    assert_error_shape(raw_post(api, SUBJECTS, raw), 400)
    assert table_counts() == before


LOOKUP_CASES = {
    "missing": {},
    "number": {"identity": 42},
    "list": {"identity": ["email:ana@example.com"]},
    "null": {"identity": None},
    "no-type": {"identity": "ana@example.com"},
    "unknown-type": {"identity": "passport:X123"},
    "too-long": {"identity": "customer_id:" + "c" * 400},
    "nul": {"identity": "customer_id:C-\x001"},
    "unknown-field": {"identity": "customer_id:C-1", "fuzzy": True},
}


@pytest.mark.parametrize("name", list(LOOKUP_CASES))
def test_a_bad_lookup_is_a_400(api, table_counts, name):
    before = table_counts()
    assert_error_shape(api.post(LOOKUP, LOOKUP_CASES[name], format="json"), 400)
    assert table_counts() == before


def test_a_lookup_with_a_lone_surrogate_is_refused(api):
    assert_error_shape(raw_post(api, LOOKUP, b'{"identity": "customer_id:\\ud800"}'), 400)


@pytest.mark.parametrize(
    "query",
    [
        {"email": ""},
        {"email": "not-an-address"},
        {"email": "ana@example.com\x00"},
        {"phone": "0"},
        {"phone": "+" + "1" * 100},
        {"customer_id": "c" * 500},
        {"customer_id": "C-\x00"},
    ],
)
def test_a_bad_identity_filter_is_a_400(api, query):
    error = assert_error_shape(api.get(SUBJECTS, query), 400)
    assert error["errors"][0]["field"] == next(iter(query))


FORGED_CURSORS = [
    "garbage!",
    "o" * 5000,
    *(
        base64.b64encode(raw.encode()).decode()
        for raw in (
            "o=-1",
            "o=99999999999999999999",
            "p=2026",
            "p=99999-12-31T00:00:00Z",
            "p=2026-13-45T00:00:00Z",
            "r=1&p=not-a-date",
            "p=\x00",
        )
    ),
]


@pytest.mark.parametrize("cursor", FORGED_CURSORS)
def test_a_bad_cursor_is_a_4xx(api, cursor):
    SubjectFactory()
    response = api.get(SUBJECTS, {"cursor": cursor})
    if response.status_code != 200:  # an unreadable cursor may also read as the first page
        assert_error_shape(response)


@pytest.mark.parametrize("page_size", ["-1", "0", "abc", "999999999999999999999"])
def test_an_odd_page_size_falls_back_to_a_sane_page(api, page_size):
    SubjectFactory()
    response = api.get(SUBJECTS, {"page_size": page_size})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


@pytest.mark.parametrize("subject_id", ["not-a-uuid", "1", "00000000-0000-0000-0000-000000000000"])
def test_a_bad_or_unknown_subject_id_is_a_json_404(api, subject_id):
    error = assert_error_shape(api.get(f"{SUBJECTS}{subject_id}/"), 404)
    assert error["code"] == "not_found"


# --- methods -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PUT", INGEST),
        ("PATCH", INGEST),
        ("DELETE", INGEST),
        ("PUT", SUBJECTS),
        ("DELETE", SUBJECTS),
        ("GET", LOOKUP),
        ("DELETE", LOOKUP),
        ("POST", f"{SUBJECTS}00000000-0000-0000-0000-000000000000/"),
        ("DELETE", f"{SUBJECTS}00000000-0000-0000-0000-000000000000/"),
        ("PATCH", f"{SUBJECTS}00000000-0000-0000-0000-000000000000/"),
    ],
)
def test_an_unsupported_method_is_a_4xx_in_the_error_shape(api, table_counts, method, url):
    before = table_counts()
    response = api.generic(method, url, b"{}", content_type="application/json")
    assert_error_shape(response)
    assert response.status_code in (403, 404, 405)
    assert table_counts() == before


@pytest.mark.parametrize("url", ["/healthz", "/readyz"])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_health_endpoints_answer_only_get(client, url, method):
    response = client.generic(method, url, b"x" * 1024, content_type="application/json")
    error = assert_error_shape(response, 405)
    assert error["code"] == "method_not_allowed"
    assert "GET" in response["Allow"]


@pytest.mark.parametrize("url", ["/healthz", "/readyz"])
def test_health_endpoints_answer_head(client, url):
    assert client.head(url).status_code == 200


@pytest.mark.parametrize(
    "url",
    ["/api/", "/api/v1/", "/api/v1/nothing-here/", "/api/v2/subjects/", "/api/v1/subjects/x/y/"],
)
def test_an_unknown_api_url_is_a_json_404(api, url):
    error = assert_error_shape(api.get(url), 404)
    assert error["code"] == "not_found"


def test_an_unknown_api_url_is_a_json_404_without_a_key_too(client):
    assert_error_shape(client.post("/api/v1/nothing-here/", {}), 404)
