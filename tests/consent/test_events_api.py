"""POST /api/v1/consent/events/: plugins and services record what customers chose."""

from __future__ import annotations

import pytest

from compliance.models import AuditEvent
from consent.models import ConsentEvent, ConsentState
from consent.services import ip_hash
from tests.consent.helpers import assert_error, consent_rows
from tests.factories import SystemFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/consent/events/"


def post(api, **body):
    return api.post(URL, body, format="json")


def test_a_grant_is_recorded_with_its_notice_and_evidence(writer, purposes, eu_customer):
    response = post(
        writer,
        subject="email:eva@example.de",
        purpose="marketing",
        action="grant",
        source="plugin",
        notice_version=1,
        evidence={"collection_point": "chat-widget"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["purpose"] == "marketing"
    assert body["action"] == "grant"
    assert body["source"] == "plugin"
    assert body["notice_version"] == 1
    assert body["jurisdiction"] == "EU"
    assert body["subject_id"] == str(eu_customer.pk)
    assert body["answer"]["allowed"] is True
    assert body["answer"]["reason"] == "explicit_grant"
    assert body["gpc_recorded"] is False
    event = ConsentEvent.objects.get(receipt_id=body["receipt_id"])
    assert event.notice.version == 1
    assert event.evidence["collection_point"] == "chat-widget"
    assert event.evidence["client"] == writer.api_client.name
    state = ConsentState.objects.get(subject=eu_customer, purpose=purposes["marketing"])
    assert (state.status, state.last_event_id) == ("granted", event.pk)
    audit = AuditEvent.objects.get(action="consent.grant")
    assert audit.detail == {
        "subject": str(eu_customer.pk),
        "purpose": "marketing",
        "source": "plugin",
        "notice_version": 1,
    }


def test_the_notice_version_defaults_to_the_current_one(writer, purposes, eu_customer):
    response = post(writer, subject="customer_id:EU-1", purpose="marketing", action="grant")
    assert response.json()["notice_version"] == 2
    assert response.json()["source"] == "api"


def test_withdrawing_takes_exactly_the_same_call_as_granting(writer, purposes, eu_customer):
    grant = {"subject": "customer_id:EU-1", "purpose": "marketing", "action": "grant"}
    assert post(writer, **grant).status_code == 201
    response = post(writer, **{**grant, "action": "withdraw"})
    assert response.status_code == 201, response.content
    assert response.json()["answer"] == {
        "allowed": False,
        "reason": "withdrawn",
        "state_since": response.json()["occurred_at"].replace("+00:00", "Z"),
    }
    assert ConsentEvent.objects.filter(subject=eu_customer).count() == 2


def test_the_subject_may_be_named_by_its_id(writer, purposes, eu_customer):
    response = post(writer, subject_id=str(eu_customer.pk), purpose="analytics", action="object")
    assert response.status_code == 201, response.content
    assert response.json()["answer"]["reason"] == "objected"


def test_the_ip_address_is_stored_only_as_a_keyed_hash(writer, purposes, eu_customer):
    response = post(
        writer,
        subject="customer_id:EU-1",
        purpose="marketing",
        action="grant",
        ip_address="203.0.113.7",
    )
    event = ConsentEvent.objects.get(receipt_id=response.json()["receipt_id"])
    assert event.evidence["ip_hash"] == ip_hash("203.0.113.7")
    assert "203.0.113.7" not in str(event.evidence)
    assert "203.0.113.7" not in str(AuditEvent.objects.values_list("detail", flat=True))


def test_the_requesting_system_is_recorded_as_evidence(make_api, purposes, eu_customer):
    plugin = make_api("consent:write", system=SystemFactory(slug="shop-assistant"))
    response = post(plugin, subject="customer_id:EU-1", purpose="marketing", action="grant")
    event = ConsentEvent.objects.get(receipt_id=response.json()["receipt_id"])
    assert event.evidence["system"] == "shop-assistant"


def test_an_opt_out_needs_no_verified_identity(writer, purposes, ca_customer):
    assert not ca_customer.identities.filter(verified=True).exists()
    response = post(
        writer, subject="customer_id:CA-1", purpose="sale-and-sharing", action="opt_out"
    )
    assert response.status_code == 201, response.content
    assert response.json()["answer"]["reason"] == "opted_out"


# --- refused, and nothing written ------------------------------------------------------------


def assert_refused(api, status: int, **body) -> dict:
    before = consent_rows()
    error = assert_error(post(api, **body), status)
    assert consent_rows() == before
    return error


def test_a_withdrawal_for_a_subject_that_does_not_exist_is_a_404(writer, purposes):
    error = assert_refused(
        writer, 404, subject="email:ghost@example.com", purpose="marketing", action="withdraw"
    )
    assert "No data subject has this identity" in error["message"]
    assert "ghost@example.com" not in str(error)
    assert_refused(
        writer,
        404,
        subject_id="00000000-0000-4000-8000-000000000000",
        purpose="marketing",
        action="withdraw",
    )


def test_an_unknown_purpose_is_a_404(writer, purposes, eu_customer):
    error = assert_refused(writer, 404, subject="customer_id:EU-1", purpose="nope", action="grant")
    assert error["errors"][0]["field"] == "purpose"


def test_a_malformed_identity_is_a_400(writer, purposes, eu_customer):
    error = assert_refused(
        writer, 400, subject="email:not-an-email", purpose="marketing", action="grant"
    )
    assert error["errors"][0]["field"] == "subject"


@pytest.mark.parametrize("purpose", ["order-handling", "fraud-checks"])
def test_a_purpose_that_is_necessary_takes_no_consent_events(
    writer, purposes, eu_customer, purpose
):
    error = assert_refused(
        writer, 400, subject="customer_id:EU-1", purpose=purpose, action="withdraw"
    )
    assert "cannot be granted, withdrawn" in error["message"]


def test_an_unknown_notice_version_is_a_400(writer, purposes, eu_customer):
    error = assert_refused(
        writer,
        400,
        subject="customer_id:EU-1",
        purpose="marketing",
        action="grant",
        notice_version=9,
    )
    assert error["errors"][0]["field"] == "notice_version"


@pytest.mark.parametrize(
    "body",
    [
        {"action": "like"},
        {"source": "gpc"},
        {"source": "admin"},
        {"evidence": {"email": "eva@example.de"}},
        {"evidence": {"collection_point": "x" * 101}},
        {"ip_address": "not-an-ip"},
        {"subject_id": "00000000-0000-4000-8000-000000000000"},
        {"colour": "red"},
    ],
)
def test_bad_input_is_a_400_that_writes_nothing(writer, purposes, eu_customer, body):
    assert_refused(
        writer,
        400,
        **{"subject": "customer_id:EU-1", "purpose": "marketing", "action": "grant", **body},
    )


def test_a_key_without_consent_write_is_refused(make_api, purposes, eu_customer):
    for api in (make_api("consent:read"), make_api("logs:write")):
        assert_refused(api, 403, subject="customer_id:EU-1", purpose="marketing", action="grant")
