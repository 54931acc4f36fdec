"""The data subject endpoints: list, create, retrieve, lookup by any identity."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.models import AuditEvent, DataSubject, SubjectIdentity
from compliance.selectors import subject_find_by_identity
from tests.factories import SubjectFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/subjects/"
LOOKUP_URL = "/api/v1/subjects/lookup/"


def assert_error_shape(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "errors"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["errors"], list)
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture
def ana(db):
    return SubjectFactory(
        external_id="C-1001",
        display_name="Ana López",
        identities={"email": "ana.lopez@example.com", "phone": "+442079460958"},
    )


@pytest.fixture
def reader(make_api):
    return make_api("subjects:read")


@pytest.fixture
def writer(make_api):
    return make_api("subjects:write")


# --- create -----------------------------------------------------------------------------


def test_it_registers_a_subject_with_normalized_identities(writer):
    response = writer.post(
        URL,
        {
            "identities": {
                "customer_id": " C-2002 ",
                "email": "  Bo.Chen@Example.ORG",
                "phone": "0044 (20) 7946-0959",
            },
            "display_name": "Bo Chen",
            "jurisdiction": "UK",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["external_id"] == "C-2002"
    assert body["jurisdiction"] == "UK"
    assert {(i["type"], i["value"]) for i in body["identities"]} == {
        ("customer_id", "C-2002"),
        ("email", "bo.chen@example.org"),
        ("phone", "+442079460959"),
    }
    subject = DataSubject.objects.get(pk=body["id"])
    event = AuditEvent.objects.get(action="subject.created", target_id=str(subject.pk))
    assert event.actor == f"api:{writer.api_client.name}"
    assert "bo.chen" not in str(event.detail).lower()
    assert "Bo Chen" not in str(event.detail)


def test_it_refuses_an_identity_that_is_already_someones(writer, ana, table_counts):
    before = table_counts()
    response = writer.post(URL, {"identities": {"email": "ANA.LOPEZ@example.com"}}, format="json")
    error = assert_error_shape(response, 409, "conflict")
    assert "ana.lopez" not in response.content.decode().lower()
    assert error["errors"][0]["field"] == "identities"
    assert table_counts() == before


def test_it_refuses_identities_of_two_different_subjects(writer, ana, table_counts):
    SubjectFactory(external_id="C-3003")
    before = table_counts()
    response = writer.post(
        URL,
        {"identities": {"customer_id": "C-3003", "email": "ana.lopez@example.com"}},
        format="json",
    )
    assert_error_shape(response, 409, "conflict")
    assert table_counts() == before


def test_it_refuses_a_subject_without_any_identity(writer, table_counts):
    before = table_counts()
    response = writer.post(URL, {"identities": {}, "display_name": "Nobody"}, format="json")
    error = assert_error_shape(response, 400, "invalid_request")
    assert error["errors"][0]["field"] == "identities"
    assert table_counts() == before


def test_it_refuses_an_invalid_email_without_echoing_it(writer, table_counts):
    before = table_counts()
    response = writer.post(URL, {"identities": {"email": "ana.lopez-at-example"}}, format="json")
    error = assert_error_shape(response, 400, "invalid_request")
    assert error["errors"][0]["field"] == "identities.email"
    assert "ana.lopez-at-example" not in response.content.decode()
    assert table_counts() == before


def test_a_reader_cannot_register_subjects(reader, table_counts):
    before = table_counts()
    response = reader.post(URL, {"identities": {"customer_id": "C-9"}}, format="json")
    error = assert_error_shape(response, 403, "permission_denied")
    assert "subjects:write" in error["message"]
    assert table_counts() == before


# --- list and retrieve --------------------------------------------------------------------


def test_a_writer_without_read_scope_cannot_list_subjects(writer, ana):
    assert_error_shape(writer.get(URL), 403, "permission_denied")


def test_it_refuses_a_caller_without_a_key(client, ana):
    response = client.get(URL)
    assert_error_shape(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_retrieves_one_subject(reader, ana):
    response = reader.get(f"{URL}{ana.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(ana.pk)
    assert body["display_name"] == "Ana López"
    assert set(body) == {
        "id",
        "external_id",
        "display_name",
        "jurisdiction",
        "identities",
        "created_at",
    }


def test_an_unknown_subject_is_a_json_404(reader):
    assert_error_shape(reader.get(f"{URL}{uuid.uuid4()}/"), 404, "not_found")


def test_a_malformed_subject_id_is_a_json_404(reader):
    assert_error_shape(reader.get(f"{URL}not-a-uuid/"), 404, "not_found")


def test_retrieving_needs_the_read_scope(writer, ana):
    assert_error_shape(writer.get(f"{URL}{ana.pk}/"), 403, "permission_denied")


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("email", "ANA.Lopez@EXAMPLE.com"),
        ("email", " ana.lopez@example.com "),
        ("phone", "+44 20 7946 0958"),
        ("phone", "(0044) 20-7946-0958"),
        ("customer_id", " C-1001"),
    ],
)
def test_it_finds_a_subject_by_any_identity_however_written(reader, ana, name, written):
    SubjectFactory(identities={"email": "someone.else@example.com"})
    response = reader.get(URL, {name: written})
    assert response.status_code == 200, response.content
    assert [s["id"] for s in response.json()["results"]] == [str(ana.pk)]


def test_a_lookup_with_no_match_is_an_empty_page(reader, ana):
    response = reader.get(URL, {"email": "nobody@example.com"})
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("email", "not-an-address"), ("phone", "call-me-1234"), ("customer_id", " ")],
)
def test_a_lookup_by_a_malformed_identity_is_a_400_without_echo(reader, name, value):
    response = reader.get(URL, {name: value})
    error = assert_error_shape(response, 400, "invalid_request")
    assert error["errors"][0]["field"] == name
    if value.strip():
        assert value not in response.content.decode()


# --- POST lookup --------------------------------------------------------------------------


def test_post_lookup_finds_the_subject_by_a_normalized_identity(reader, ana):
    response = reader.post(LOOKUP_URL, {"identity": "EMAIL:Ana.Lopez@Example.com"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(ana.pk)


def test_post_lookup_of_an_unknown_identity_is_a_404(reader, ana):
    response = reader.post(LOOKUP_URL, {"identity": "phone:+1 650 253 0000"}, format="json")
    error = assert_error_shape(response, 404, "not_found")
    assert "650" not in error["message"]


@pytest.mark.parametrize("identity", ["ana.lopez@example.com", "fax:12345", "email:nope"])
def test_post_lookup_of_a_malformed_identity_is_a_400(reader, identity):
    error = assert_error_shape(
        reader.post(LOOKUP_URL, {"identity": identity}, format="json"), 400, "invalid_request"
    )
    assert error["errors"][0]["field"] == "identity"


def test_post_lookup_needs_the_read_scope(writer, ana):
    response = writer.post(LOOKUP_URL, {"identity": "customer_id:C-1001"}, format="json")
    assert_error_shape(response, 403, "permission_denied")


# --- pagination ---------------------------------------------------------------------------


def _walk(api, url, params):
    seen, pages = [], 0
    response = api.get(url, params)
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        seen.extend(s["id"] for s in body["results"])
        pages += 1
        if not body["next"]:
            return seen, pages
        response = api.get(body["next"])


def test_cursor_pages_return_every_subject_once_newest_first(reader):
    now = timezone.now()
    subjects = [SubjectFactory(created_at=now - timedelta(minutes=n)) for n in range(7)]
    seen, pages = _walk(reader, URL, {"page_size": 3})
    assert seen == [str(s.pk) for s in subjects]
    assert pages == 3


def test_cursor_pages_are_stable_when_subjects_share_a_creation_time(reader):
    now = timezone.now()
    subjects = [SubjectFactory(created_at=now) for _ in range(9)]
    seen, _ = _walk(reader, URL, {"page_size": 2})
    assert sorted(seen) == sorted(str(s.pk) for s in subjects)
    assert len(seen) == len(set(seen))


def test_subjects_created_while_paging_do_not_shift_the_pages(reader):
    now = timezone.now()
    old = [SubjectFactory(created_at=now - timedelta(minutes=n + 1)) for n in range(4)]
    first = reader.get(URL, {"page_size": 2}).json()
    SubjectFactory(created_at=now)  # arrives between two page reads
    second = reader.get(first["next"]).json()
    assert [s["id"] for s in first["results"] + second["results"]] == [str(s.pk) for s in old]


def test_a_forged_cursor_is_a_4xx(reader, ana):
    response = reader.get(URL, {"cursor": "!!not*base64"})
    assert 400 <= response.status_code < 500
    assert_error_shape(response, response.status_code)


# --- one indexed query --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity_type", "value"),
    [("email", "ana.lopez@example.com"), ("phone", "+442079460958"), ("customer_id", "C-1001")],
)
def test_finding_a_subject_by_any_identity_is_one_query(
    ana, django_assert_num_queries, identity_type, value
):
    with django_assert_num_queries(1):
        found = subject_find_by_identity(identity_type=identity_type, value=value)
        assert found.display_name == "Ana López"


def test_the_identity_lookup_uses_the_type_value_unique_index(ana):
    subjects = DataSubject.objects.bulk_create(
        DataSubject(external_id=f"BULK-{n}") for n in range(3000)
    )
    SubjectIdentity.objects.bulk_create(
        SubjectIdentity(subject=s, type="email", value=f"person{n}@example.com")
        for n, s in enumerate(subjects)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE compliance_subjectidentity")
    with CaptureQueriesContext(connection) as captured:
        subject_find_by_identity(identity_type="email", value="ana.lopez@example.com")
    (query,) = captured.captured_queries
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {query['sql']}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "identity_unique_type_value" in plan, plan
    assert "Seq Scan on compliance_subjectidentity" not in plan, plan


def test_the_api_lookup_makes_a_bounded_number_of_queries(
    reader, ana, django_assert_max_num_queries
):
    reader.get(URL, {"email": "x@example.com"})  # the key's last_used_at is written once
    with django_assert_max_num_queries(4):  # key, subject by identity, its identities
        response = reader.post(
            LOOKUP_URL, {"identity": "email:ana.lopez@example.com"}, format="json"
        )
    assert response.status_code == 200
    with django_assert_max_num_queries(4):  # key, page of subjects, their identities
        response = reader.get(URL, {"phone": "+44 20 7946 0958"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
