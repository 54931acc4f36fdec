"""Global Privacy Control: only `Sec-GPC: 1` counts, it opts the customer out of sale and
sharing (CCPA §7025), and its absence never opts anyone back in."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from consent.gpc import InvalidGpcSignal, gpc_signal
from consent.models import SALE_SHARING, ConsentEvent, ConsentState
from consent.services import gpc_signal_record
from tests.consent.helpers import assert_error, consent_rows

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/consent/check"
EVENTS = "/api/v1/consent/events/"


def sale_events(subject):
    return ConsentEvent.objects.filter(subject=subject, purpose__slug=SALE_SHARING)


def test_the_header_on_a_check_records_an_opt_out_of_sale_with_source_gpc(
    reader, purposes, ca_customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = reader.get(
            CHECK,
            {"subject": "customer_id:CA-1", "purpose": "third-party-sharing"},
            HTTP_SEC_GPC="1",
        )
    assert response.status_code == 200, response.content
    assert response.json()["allowed"] is False
    assert response.json()["reason"] == "gpc"
    event = sale_events(ca_customer).get()
    assert (event.action, event.source) == ("opt_out", "gpc")
    assert event.evidence == {"client": reader.api_client.name}
    # Recorded: later checks without the header still say no, because of the signal.
    again = reader.get(CHECK, {"subject": "customer_id:CA-1", "purpose": "third-party-sharing"})
    assert again.json()["reason"] == "gpc"
    assert again.json()["state_since"] is not None


def test_the_absence_of_the_signal_never_opts_back_in(
    reader, purposes, ca_customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        gpc_signal_record(subject=ca_customer, actor="test")
    for _ in range(3):
        response = reader.get(CHECK, {"subject": "customer_id:CA-1", "purpose": SALE_SHARING})
        assert response.json()["allowed"] is False
    assert sale_events(ca_customer).count() == 1
    assert ConsentState.objects.get(subject=ca_customer, purpose__slug=SALE_SHARING).status == (
        "opted_out"
    )


def test_a_repeated_signal_records_one_event(reader, purposes, ca_customer):
    for _ in range(3):
        reader.get(CHECK, {"subject": "customer_id:CA-1", "purpose": "marketing"}, HTTP_SEC_GPC="1")
    assert gpc_signal_record(subject=ca_customer, actor="test") is None
    assert sale_events(ca_customer).count() == 1


def test_a_signal_for_an_already_opted_out_customer_records_nothing(
    writer, reader, purposes, ca_customer
):
    writer.post(
        EVENTS,
        {"subject": "customer_id:CA-1", "purpose": SALE_SHARING, "action": "opt_out"},
        format="json",
    )
    before = consent_rows()
    reader.get(CHECK, {"subject": "customer_id:CA-1", "purpose": "marketing"}, HTTP_SEC_GPC="1")
    assert consent_rows() == before


def test_the_signal_only_refuses_purposes_that_sell_or_share(reader, purposes, ca_customer):
    response = reader.get(
        CHECK, {"subject": "customer_id:CA-1", "purpose": "marketing"}, HTTP_SEC_GPC="1"
    )
    assert response.json() == {"allowed": True, "reason": "default", "state_since": None}


@pytest.mark.parametrize("value", ["yes", "true", "0", " 1x", "", "1, 1"])
def test_any_other_header_value_is_a_400_that_writes_nothing(
    reader, writer, purposes, ca_customer, value
):
    before = consent_rows()
    error = assert_error(
        reader.get(
            CHECK, {"subject": "customer_id:CA-1", "purpose": "marketing"}, HTTP_SEC_GPC=value
        ),
        400,
    )
    assert 'exactly "1"' in error["message"]
    assert_error(
        writer.post(
            EVENTS,
            {"subject": "customer_id:CA-1", "purpose": "marketing", "action": "grant"},
            format="json",
            HTTP_SEC_GPC=value,
        ),
        400,
    )
    assert_error(
        reader.post(
            CHECK,
            {"checks": [{"subject": "customer_id:CA-1", "purpose": "marketing"}]},
            format="json",
            HTTP_SEC_GPC=value,
        ),
        400,
    )
    assert consent_rows() == before


def test_a_signal_relayed_in_the_body_counts(writer, purposes, ca_customer):
    response = writer.post(
        EVENTS,
        {"subject": "customer_id:CA-1", "purpose": "marketing", "action": "grant", "gpc": True},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["gpc_recorded"] is True
    assert sale_events(ca_customer).get().source == "gpc"
    assert ConsentEvent.objects.filter(subject=ca_customer, purpose__slug="marketing").count() == 1


def test_a_signal_in_a_batch_applies_to_the_pairs_that_carry_it(
    reader, purposes, ca_customer, eu_customer
):
    response = reader.post(
        CHECK,
        {
            "checks": [
                {"subject": "customer_id:CA-1", "purpose": "third-party-sharing", "gpc": True},
                {"subject": "customer_id:EU-1", "purpose": SALE_SHARING},
            ]
        },
        format="json",
    )
    results = response.json()["results"]
    assert [r["reason"] for r in results] == ["gpc", "default"]
    assert sale_events(ca_customer).count() == 1
    assert not sale_events(eu_customer).exists()


def test_a_signal_for_an_unknown_customer_refuses_sale_without_writing(reader, purposes):
    before = consent_rows()
    response = reader.get(
        CHECK,
        {
            "subject": "email:new@example.com",
            "purpose": "third-party-sharing",
            "jurisdiction": "US-CA",
        },
        HTTP_SEC_GPC="1",
    )
    assert response.json() == {"allowed": False, "reason": "gpc", "state_since": None}
    assert consent_rows() == before


def test_the_signal_on_a_subjects_consents_page_is_recorded(reader, purposes, ca_customer):
    response = reader.get(f"/api/v1/subjects/{ca_customer.pk}/consents/", HTTP_SEC_GPC="1")
    assert response.status_code == 200, response.content
    by_slug = {p["purpose"]: p for p in response.json()["purposes"]}
    assert by_slug[SALE_SHARING]["reason"] == "gpc"
    assert sale_events(ca_customer).count() == 1


# --- the helper for the portal, and gpc.json ----------------------------------------------------


@pytest.mark.parametrize(("headers", "expected"), [({}, False), ({"HTTP_SEC_GPC": "1"}, True)])
def test_the_helper_reads_the_signal(headers, expected):
    assert gpc_signal(RequestFactory().get("/", **headers)) is expected


def test_the_helper_raises_on_an_invalid_value_unless_told_not_to():
    request = RequestFactory().get("/", HTTP_SEC_GPC="yes")
    with pytest.raises(InvalidGpcSignal):
        gpc_signal(request)
    assert gpc_signal(request, strict=False) is False


def test_gpc_json_declares_support(client, settings):
    settings.CONSENT_GPC_LAST_UPDATE = "2026-11-27"
    response = client.get("/.well-known/gpc.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"gpc": True, "lastUpdate": "2026-11-27"}
