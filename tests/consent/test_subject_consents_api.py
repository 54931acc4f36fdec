"""GET /api/v1/subjects/{id}/consents/: the current answer per purpose and the full history."""

from __future__ import annotations

import pytest

from consent import services
from consent.models import SALE_SHARING
from tests.consent.helpers import assert_error

pytestmark = pytest.mark.django_db


def url(subject) -> str:
    return f"/api/v1/subjects/{subject.pk}/consents/"


def test_it_shows_every_purpose_and_the_whole_history_newest_first(reader, purposes, ca_customer):
    for action in ("grant", "withdraw", "grant"):
        services.consent_record(
            subject=ca_customer,
            purpose=purposes["marketing"],
            action=action,
            source="portal",
            actor="test",
        )
    services.consent_opt_out(
        subject=ca_customer, purpose=purposes[SALE_SHARING], source="portal", actor="test"
    )
    response = reader.get(url(ca_customer))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["subject_id"] == str(ca_customer.pk)
    assert body["jurisdiction"] == "US-CA"
    assert body["restricted"] is False
    by_slug = {p["purpose"]: p for p in body["purposes"]}
    assert set(by_slug) == set(purposes)
    assert by_slug["marketing"] | {"state_since": None} == {
        "purpose": "marketing",
        "name": purposes["marketing"].name,
        "lawful_basis": "consent",
        "allowed": True,
        "reason": "explicit_grant",
        "state_since": None,
        "status": "granted",
        "source": "portal",
    }
    assert by_slug["third-party-sharing"]["reason"] == "opted_out"
    assert by_slug["third-party-sharing"]["status"] is None
    assert by_slug["analytics"]["reason"] == "default"
    assert [(e["purpose"], e["action"]) for e in body["history"]] == [
        (SALE_SHARING, "opt_out"),
        ("marketing", "grant"),
        ("marketing", "withdraw"),
        ("marketing", "grant"),
    ]
    assert set(body["history"][0]) == {
        "receipt_id",
        "subject_id",
        "purpose",
        "action",
        "source",
        "notice_version",
        "jurisdiction",
        "occurred_at",
        "evidence",
    }


def test_it_does_not_show_identities(reader, purposes, eu_customer):
    body = reader.get(url(eu_customer)).content.decode()
    assert "eva@example.de" not in body
    assert "EU-1" not in body


def test_an_unknown_subject_is_a_404(reader, purposes):
    assert_error(reader.get("/api/v1/subjects/00000000-0000-4000-8000-000000000000/consents/"), 404)


def test_a_key_without_consent_read_is_refused(make_api, purposes, eu_customer):
    assert_error(make_api("subjects:read").get(url(eu_customer)), 403)
    assert_error(make_api("consent:write").get(url(eu_customer)), 403)
