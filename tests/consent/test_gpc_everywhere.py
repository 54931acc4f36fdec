"""Global Privacy Control beyond the consent endpoints: every API request that identifies a
customer (subjects, conversations, data subject requests, OpenDSR, the signed download
link) records an opt-out of sale/sharing with source `gpc` for that customer, once; no
header never opts anyone back in; a malformed header is a 400 that changes nothing; an
unknown customer gets nothing recorded (CCPA §7025)."""

from __future__ import annotations

import ast
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from compliance.models import AuditEvent, Conversation, DataSubject, Jurisdiction
from consent.models import SALE_SHARING, ConsentEvent, ConsentState
from consent.services import consent_opt_in, gpc_signal_record
from dsar import services as dsar_services
from dsar.links import download_url
from dsar.models import DataSubjectRequest
from tests.consent.helpers import assert_error, consent_rows
from tests.factories import SubjectFactory, SystemFactory
from tests.integrations.opendsr.conftest import post_request, spec_request

pytestmark = pytest.mark.django_db

EMAIL = "carl@example.com"  # ca_customer's
NOBODY = "nobody@example.com"
GPC = {"HTTP_SEC_GPC": "1"}
ROOT = Path(__file__).resolve().parents[2]
MALFORMED = ["0", "yes", "true", "", " 1", "1, 1"]


def sale_events(subject=None):
    events = ConsentEvent.objects.filter(purpose__slug=SALE_SHARING)
    return events.filter(subject=subject) if subject is not None else events


def sale_status(subject) -> str | None:
    state = ConsentState.objects.filter(subject=subject, purpose__slug=SALE_SHARING).first()
    return state.status if state else None


@dataclass(frozen=True)
class Who:
    """The customer a request names: a known one, or an identity nobody has."""

    email: str
    pk: uuid.UUID


@dataclass(frozen=True)
class Endpoint:
    name: str
    scopes: tuple[str, ...]
    call: Callable  # (api, who, headers) -> response
    ok: int
    unknown: int  # the answer when the customer is unknown


def ingest_body(email: str, conversation_id: str = "c-1", **extra) -> dict:
    return {
        "system": "shop-assistant",
        "conversation_id": conversation_id,
        "subject": {"email": email},
        "messages": [
            {
                "sequence": 0,
                "role": "customer",
                "text": "Do you ship to Lisbon?",
                "sent_at": "2026-11-20T09:20:00Z",
            }
        ],
        **extra,
    }


def opendsr_body(email: str) -> dict:
    return spec_request(
        regulation="ccpa",
        subject_request_type="access",
        subject_identities=[
            {"identity_type": "email", "identity_value": email, "identity_format": "raw"}
        ],
    )


# Every kind of request that names a known customer, as a plugin or the CRM sends it.
ENDPOINTS = [
    Endpoint(
        "subjects_lookup",
        ("subjects:read",),
        lambda api, who, h: api.post(
            "/api/v1/subjects/lookup/", {"identity": f"email:{who.email}"}, format="json", **h
        ),
        200,
        404,
    ),
    Endpoint(
        "subjects_list_by_email",
        ("subjects:read",),
        lambda api, who, h: api.get("/api/v1/subjects/", {"email": who.email}, **h),
        200,
        200,
    ),
    Endpoint(
        "subjects_retrieve",
        ("subjects:read",),
        lambda api, who, h: api.get(f"/api/v1/subjects/{who.pk}/", **h),
        200,
        404,
    ),
    Endpoint(
        "subjects_consents",
        ("consent:read",),
        lambda api, who, h: api.get(f"/api/v1/subjects/{who.pk}/consents/", **h),
        200,
        404,
    ),
    Endpoint(
        "conversations_list_by_subject",
        ("logs:read",),
        lambda api, who, h: api.get("/api/v1/conversations/", {"subject": str(who.pk)}, **h),
        200,
        200,
    ),
    Endpoint(
        "requests_create",
        ("dsar:write", "dsar:verified"),
        lambda api, who, h: api.post(
            "/api/v1/requests/",
            {"type": "access", "identity": {"email": who.email}},
            format="json",
            **h,
        ),
        202,
        202,
    ),
    Endpoint(
        "opendsr_requests",
        ("dsar:write", "dsar:verified", "dsar:read"),
        lambda api, who, h: api.generic(
            "POST",
            "/opendsr/v2/requests",
            json.dumps(opendsr_body(who.email)),
            content_type="application/json",
            **h,
        ),
        201,
        201,
    ),
]
IDS = [e.name for e in ENDPOINTS]


@pytest.fixture
def known(purposes, ca_customer) -> Who:
    return Who(email=EMAIL, pk=ca_customer.pk)


@pytest.fixture
def unknown(purposes) -> Who:
    return Who(email=NOBODY, pk=uuid.uuid4())


# --- every endpoint kind ------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_the_header_records_one_gpc_opt_out_for_the_named_customer(
    endpoint, make_api, known, ca_customer
):
    api = make_api(*endpoint.scopes)
    response = endpoint.call(api, known, GPC)
    assert response.status_code == endpoint.ok, response.content
    event = sale_events(ca_customer).get()
    assert (event.action, event.source) == ("opt_out", "gpc")
    assert event.actor == f"api:{api.api_client.name}"
    assert sale_status(ca_customer) == "opted_out"

    again = endpoint.call(make_api(*endpoint.scopes), known, GPC)
    assert again.status_code == endpoint.ok, again.content
    assert sale_events(ca_customer).count() == 1


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_without_the_header_nothing_is_recorded(endpoint, make_api, known, ca_customer):
    response = endpoint.call(make_api(*endpoint.scopes), known, {})
    assert response.status_code == endpoint.ok, response.content
    assert not sale_events().exists()
    assert sale_status(ca_customer) is None


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_no_header_never_opts_an_opted_out_customer_back_in(endpoint, make_api, known, ca_customer):
    gpc_signal_record(subject=ca_customer, actor="test")
    for headers in ({}, {"HTTP_SEC_GPC": "0"}):
        endpoint.call(make_api(*endpoint.scopes), known, headers)
    assert sale_status(ca_customer) == "opted_out"
    assert [e.action for e in sale_events(ca_customer)] == ["opt_out"]


@pytest.mark.parametrize("value", MALFORMED)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_a_malformed_header_is_a_400_that_writes_nothing(
    endpoint, value, make_api, known, ca_customer
):
    api = make_api(*endpoint.scopes)
    before = (*consent_rows(), DataSubjectRequest.objects.count())
    response = endpoint.call(api, known, {"HTTP_SEC_GPC": value})
    assert response.status_code == 400, response.content
    if endpoint.name == "opendsr_requests":
        error = response.json()["error"]
        assert error["errors"][0]["domain"] == "Validation"
    else:
        error = assert_error(response, 400, "invalid_request")
    assert 'exactly "1"' in error["message"]
    assert (*consent_rows(), DataSubjectRequest.objects.count()) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_an_unknown_customer_gets_nothing_recorded(endpoint, make_api, unknown, ca_customer):
    response = endpoint.call(make_api(*endpoint.scopes), unknown, GPC)
    assert response.status_code == endpoint.unknown, response.content
    assert not ConsentEvent.objects.exists()
    assert not ConsentState.objects.exists()


def test_the_event_says_where_the_signal_came_from_and_the_audit_names_no_identity(
    make_api, known, ca_customer
):
    system = SystemFactory(slug="crm")
    api = make_api("subjects:read", system=system)
    audits_before = set(AuditEvent.objects.values_list("pk", flat=True))
    api.post("/api/v1/subjects/lookup/", {"identity": f"email:{EMAIL}"}, format="json", **GPC)
    event = sale_events(ca_customer).get()
    assert event.evidence == {
        "collection_point": "api:subjects_lookup",
        "client": api.api_client.name,
        "system": "crm",
    }
    new_audits = AuditEvent.objects.exclude(pk__in=audits_before)
    assert [a.action for a in new_audits] == ["consent.opt_out"]
    written = json.dumps([a.detail for a in new_audits]) + event.actor
    assert EMAIL not in written
    assert "CA-1" not in written


def test_a_customer_who_opted_back_in_is_opted_out_again_by_a_new_signal(
    make_api, known, ca_customer, purposes
):
    # CCPA §7025(c)(3): the signal still counts; the history keeps all three events.
    gpc_signal_record(subject=ca_customer, actor="test")
    consent_opt_in(
        subject=ca_customer, purpose=purposes[SALE_SHARING], source="portal", actor="test"
    )
    make_api("subjects:read").get(f"/api/v1/subjects/{ca_customer.pk}/", **GPC)
    assert [e.action for e in sale_events(ca_customer).order_by("occurred_at")] == [
        "opt_out",
        "opt_in",
        "opt_out",
    ]
    assert sale_status(ca_customer) == "opted_out"


def test_a_plain_subject_listing_names_nobody_and_records_nothing(make_api, known, ca_customer):
    response = make_api("subjects:read").get("/api/v1/subjects/", **GPC)
    assert response.status_code == 200
    assert not sale_events().exists()


# --- creating a subject ---------------------------------------------------------------------


def test_creating_a_subject_with_the_header_opts_the_new_subject_out(make_api, purposes):
    response = make_api("subjects:write").post(
        "/api/v1/subjects/",
        {"identities": {"email": "new@example.com"}, "jurisdiction": "US-CA"},
        format="json",
        **GPC,
    )
    assert response.status_code == 201, response.content
    subject = DataSubject.objects.get(pk=response.json()["id"])
    assert sale_events(subject).get().source == "gpc"


def test_creating_a_subject_without_the_header_records_nothing(make_api, purposes):
    response = make_api("subjects:write").post(
        "/api/v1/subjects/", {"identities": {"email": "new@example.com"}}, format="json"
    )
    assert response.status_code == 201, response.content
    assert not sale_events().exists()


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_header_creates_no_subject(make_api, purposes, value):
    response = make_api("subjects:write").post(
        "/api/v1/subjects/",
        {"identities": {"email": "new@example.com"}},
        format="json",
        HTTP_SEC_GPC=value,
    )
    assert_error(response, 400, "invalid_request")
    assert not DataSubject.objects.exists()
    assert not ConsentEvent.objects.exists()


def test_a_refused_creation_records_nothing_for_the_existing_customer(make_api, known, ca_customer):
    response = make_api("subjects:write").post(
        "/api/v1/subjects/", {"identities": {"email": EMAIL}}, format="json", **GPC
    )
    assert_error(response, 409, "conflict")
    assert not sale_events().exists()


# --- data subject requests ------------------------------------------------------------------


def test_a_request_s_answer_does_not_tell_whether_a_signal_was_recorded(
    make_api, known, unknown, ca_customer
):
    api = make_api("dsar:write", "dsar:verified")
    answers = []
    for who in (known, unknown):
        body = api.post(
            "/api/v1/requests/",
            {"type": "access", "identity": {"email": who.email}},
            format="json",
            **GPC,
        ).json()
        body.pop("id")
        body.pop("received_at")
        answers.append(body)
    assert answers[0] == answers[1]
    assert sale_events(ca_customer).count() == 1
    assert sale_events().count() == 1


def test_the_opendsr_request_records_the_signal_with_the_request(make_api, known, ca_customer):
    response = post_request(make_api("dsar:write", "dsar:verified"), opendsr_body(EMAIL))
    assert response.status_code == 201
    assert not sale_events().exists()  # no header
    api = make_api("dsar:write", "dsar:verified")
    response = api.generic(
        "POST",
        "/opendsr/v2/requests",
        json.dumps(opendsr_body(EMAIL)),
        content_type="application/json",
        **GPC,
    )
    assert response.status_code == 201, response.content
    assert sale_events(ca_customer).get().evidence["collection_point"] == "opendsr:requests"


# --- the signed download link: the customer's own browser -------------------------------------


@pytest.fixture
def ready_export(known, ca_customer, tmp_path):
    dsr = dsar_services.request_create(
        type="access", identity={"email": EMAIL}, channel="api", actor="test", pre_verified=True
    )
    package = tmp_path / "export.zip"
    package.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(
        export_path=str(package),
        export_expires_at=timezone.now() + timedelta(days=1),
        export_sha256="0" * 64,
        export_size=22,
    )
    dsr.refresh_from_db()
    return dsr


def test_the_download_link_opened_with_the_signal_opts_the_customer_out_once(
    client, ready_export, ca_customer
):
    for _ in range(2):
        response = client.get(download_url(ready_export), **GPC)
        assert response.status_code == 200
        assert b"".join(response.streaming_content)[:2] == b"PK"
    event = sale_events(ca_customer).get()
    assert event.actor == f"subject:{ca_customer.pk}"
    assert event.evidence == {"collection_point": "link:requests_download"}


@pytest.mark.parametrize("value", ["0", "yes", ""])
def test_an_odd_value_from_a_browser_is_no_signal_and_no_error(
    client, ready_export, ca_customer, value
):
    response = client.get(download_url(ready_export), HTTP_SEC_GPC=value)
    assert response.status_code == 200
    assert not sale_events().exists()


def test_a_tampered_link_records_nothing(client, ready_export):
    response = client.get(download_url(ready_export)[:-3] + "abc", **GPC)
    assert response.status_code == 404
    assert not sale_events().exists()


# --- conversation ingest ------------------------------------------------------------------


@pytest.fixture
def plugin(make_api, purposes):
    SystemFactory(slug="shop-assistant")
    return make_api("logs:write")


def ingest(api, conversations: list[dict], **headers):
    return api.post(
        "/api/v1/conversations/", {"conversations": conversations}, format="json", **headers
    )


def test_a_conversation_that_relays_gpc_opts_its_customer_out(plugin, known, ca_customer):
    other = SubjectFactory(jurisdiction=Jurisdiction.US_CA, identities={"email": "o@example.com"})
    response = ingest(
        plugin,
        [ingest_body(EMAIL, "c-1", gpc=True), ingest_body("o@example.com", "c-2", gpc=False)],
    )
    assert response.status_code == 201, response.content
    event = sale_events(ca_customer).get()
    assert event.source == "gpc"
    assert event.evidence["collection_point"] == "api:conversations_ingest"
    assert not sale_events(other).exists()
    # Re-sending the same conversation with the flag records nothing more.
    assert ingest(plugin, [ingest_body(EMAIL, "c-1", gpc=True)]).status_code == 200
    assert sale_events(ca_customer).count() == 1


def test_a_new_customer_named_with_gpc_is_created_and_opted_out(plugin):
    response = ingest(plugin, [ingest_body("fresh@example.com", gpc=True)])
    assert response.status_code == 201, response.content
    subject = Conversation.objects.get().subject
    assert sale_events(subject).get().source == "gpc"


def test_the_header_on_a_batch_covers_every_customer_it_names(plugin, known, ca_customer):
    response = ingest(
        plugin, [ingest_body(EMAIL, "c-1"), ingest_body("fresh@example.com", "c-2")], **GPC
    )
    assert response.status_code == 201, response.content
    assert sale_events().count() == 2
    assert sale_events(ca_customer).count() == 1


def test_a_conversation_without_gpc_records_nothing(plugin, known, ca_customer):
    assert ingest(plugin, [ingest_body(EMAIL)]).status_code == 201
    assert not sale_events().exists()


def test_gpc_on_a_conversation_without_a_subject_records_nothing(plugin):
    body = ingest_body(EMAIL, gpc=True)
    body.pop("subject")
    response = ingest(plugin, [body])
    assert response.status_code == 201, response.content
    assert Conversation.objects.get().subject is None
    assert not ConsentEvent.objects.exists()


@pytest.mark.parametrize("value", ["true", 1, 0, "yes", None, "1"])
def test_the_gpc_flag_is_json_true_or_false_and_nothing_else(plugin, known, value):
    response = ingest(plugin, [ingest_body(EMAIL, gpc=value)])
    error = assert_error(response, 400, "invalid_request")
    assert error["errors"][0]["field"] == "conversations[0].gpc"
    assert not Conversation.objects.exists()
    assert not ConsentEvent.objects.exists()


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_header_on_a_batch_stores_nothing(plugin, known, value):
    response = ingest(plugin, [ingest_body(EMAIL, gpc=True)], HTTP_SEC_GPC=value)
    assert_error(response, 400, "invalid_request")
    assert not Conversation.objects.exists()
    assert not ConsentEvent.objects.exists()


def test_a_refused_batch_records_no_signal(plugin, known, ca_customer):
    response = ingest(
        plugin,
        [ingest_body(EMAIL, "c-1", gpc=True), ingest_body(EMAIL, "c-2", system="no-such")],
    )
    assert response.status_code == 400, response.content
    assert not Conversation.objects.exists()
    assert not sale_events().exists()


def test_an_opt_out_that_cannot_be_written_takes_the_batch_with_it(plugin):
    """The opt-out commits in the ingest's own transaction: a real PostgreSQL trigger
    refuses every consent event, and the conversations of the batch are not stored either
    (with separate transactions they would be)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_refuse_consent_event() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'consent events refused by the test'; END $$;"
            " CREATE TRIGGER test_refuse_consent_event BEFORE INSERT ON consent_consentevent"
            " FOR EACH ROW EXECUTE FUNCTION test_refuse_consent_event()"
        )
    with pytest.raises(DatabaseError, match="refused by the test"):
        ingest(plugin, [ingest_body("fresh@example.com", "c-1", gpc=True)])
    assert not Conversation.objects.exists()
    assert not DataSubject.objects.exists()
    # The same batch without the signal writes no consent event, so the trigger lets it in.
    assert ingest(plugin, [ingest_body("fresh@example.com", "c-1")]).status_code == 201
    assert Conversation.objects.count() == 1


# --- the boundary -------------------------------------------------------------------------------

CORE_MODULES = [
    "compliance/subject_hooks.py",
    "compliance/ingest.py",
    "compliance/services.py",
    "compliance/selectors.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "compliance" / "api").glob("*.py")),
]


@pytest.mark.parametrize("module", CORE_MODULES)
def test_the_core_reaches_the_consent_app_only_through_its_hooks(module):
    tree = ast.parse((ROOT / module).read_text())
    imported = {
        name
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    assert not {name for name in imported if name.split(".")[0] == "consent"}
