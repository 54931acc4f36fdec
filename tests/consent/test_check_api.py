"""GET and POST /api/v1/consent/check: the question every plugin asks before it stores or
uses a conversation."""

from __future__ import annotations

import pytest
from django.utils import timezone

from compliance.models import AuditEvent, Jurisdiction
from consent import cache, services
from consent.models import SALE_SHARING, SENSITIVE_PI, ConsentSource
from tests.consent.helpers import assert_error, consent_rows
from tests.factories import SubjectFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/consent/check"


def check(api, subject: str, purpose: str, **params):
    response = api.get(URL, {"subject": subject, "purpose": purpose, **params})
    assert response.status_code == 200, response.content
    return response.json()


def record(django_capture_on_commit_callbacks, action: str, subject, purpose, **kwargs):
    """Record through the service and run its after-commit work, as a real commit would."""
    kwargs.setdefault("source", ConsentSource.PORTAL)
    with django_capture_on_commit_callbacks(execute=True):
        return services.consent_record(
            subject=subject, purpose=purpose, action=action, actor="test", **kwargs
        )


def test_an_explicit_grant_allows_and_says_since_when(
    reader, purposes, eu_customer, django_capture_on_commit_callbacks
):
    event = record(django_capture_on_commit_callbacks, "grant", eu_customer, purposes["marketing"])
    answer = check(reader, "customer_id:EU-1", "marketing")
    assert answer["allowed"] is True
    assert answer["reason"] == "explicit_grant"
    assert answer["state_since"].startswith(event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S"))


def test_the_subject_may_be_named_by_email_in_any_case(reader, purposes, eu_customer):
    answer = check(reader, "email: EVA@Example.de ", "marketing")
    assert answer == {"allowed": False, "reason": "default", "state_since": None}


@pytest.mark.parametrize(
    ("action", "reason"),
    [("withdraw", "withdrawn"), ("object", "objected"), ("opt_out", "opted_out")],
)
def test_a_refusal_after_a_grant_says_no_with_its_reason(
    reader, purposes, eu_customer, django_capture_on_commit_callbacks, action, reason
):
    record(django_capture_on_commit_callbacks, "grant", eu_customer, purposes["marketing"])
    assert check(reader, "customer_id:EU-1", "marketing")["allowed"] is True
    record(django_capture_on_commit_callbacks, action, eu_customer, purposes["marketing"])
    answer = check(reader, "customer_id:EU-1", "marketing")
    assert answer["allowed"] is False
    assert answer["reason"] == reason
    assert answer["state_since"] is not None


def test_an_objection_turns_off_a_legitimate_interest_purpose(
    reader, purposes, eu_customer, django_capture_on_commit_callbacks
):
    assert check(reader, "customer_id:EU-1", "analytics") == {
        "allowed": True,
        "reason": "default",
        "state_since": None,
    }
    record(django_capture_on_commit_callbacks, "object", eu_customer, purposes["analytics"])
    assert check(reader, "customer_id:EU-1", "analytics")["reason"] == "objected"


def test_a_restricted_subject_is_always_refused_even_after_a_grant(
    reader, purposes, eu_customer, django_capture_on_commit_callbacks
):
    record(django_capture_on_commit_callbacks, "grant", eu_customer, purposes["marketing"])
    assert check(reader, "customer_id:EU-1", "marketing")["allowed"] is True
    restricted_at = timezone.now()
    # What the DSAR app does: an update() sends no signal, so it tells the cache itself.
    type(eu_customer).objects.filter(pk=eu_customer.pk).update(restricted_at=restricted_at)
    with django_capture_on_commit_callbacks(execute=True):
        cache.subjects_changed_on_commit([eu_customer.pk])
    for purpose in ("marketing", "order-handling", "fraud-checks", "analytics"):
        answer = check(reader, "customer_id:EU-1", purpose)
        assert answer["allowed"] is False
        assert answer["reason"] == "restricted"


def test_an_opt_out_of_sale_turns_off_every_purpose_that_sells_or_shares(
    reader, purposes, ca_customer, django_capture_on_commit_callbacks
):
    assert check(reader, "customer_id:CA-1", "third-party-sharing")["allowed"] is True
    record(django_capture_on_commit_callbacks, "opt_out", ca_customer, purposes[SALE_SHARING])
    assert check(reader, "customer_id:CA-1", "third-party-sharing")["reason"] == "opted_out"
    assert check(reader, "customer_id:CA-1", SALE_SHARING)["reason"] == "opted_out"
    # A purpose that neither sells nor shares is untouched.
    assert check(reader, "customer_id:CA-1", "marketing")["allowed"] is True


def test_a_grant_of_one_sharing_purpose_does_not_override_the_opt_out_of_sale(
    reader, purposes, ca_customer, django_capture_on_commit_callbacks
):
    record(django_capture_on_commit_callbacks, "opt_out", ca_customer, purposes[SALE_SHARING])
    record(
        django_capture_on_commit_callbacks, "grant", ca_customer, purposes["third-party-sharing"]
    )
    assert check(reader, "customer_id:CA-1", "third-party-sharing")["allowed"] is False
    record(django_capture_on_commit_callbacks, "opt_in", ca_customer, purposes[SALE_SHARING])
    assert check(reader, "customer_id:CA-1", "third-party-sharing") | {"state_since": None} == {
        "allowed": True,
        "reason": "explicit_grant",
        "state_since": None,
    }


def test_limiting_sensitive_information_turns_off_purposes_that_use_it(
    reader, purposes, ca_customer, django_capture_on_commit_callbacks
):
    assert check(reader, "customer_id:CA-1", "location-offers")["allowed"] is True
    record(django_capture_on_commit_callbacks, "opt_out", ca_customer, purposes[SENSITIVE_PI])
    assert check(reader, "customer_id:CA-1", "location-offers")["reason"] == "opted_out"
    assert check(reader, "customer_id:CA-1", "marketing")["allowed"] is True


def test_an_unknown_subject_gets_the_default_and_is_told_so(reader, purposes):
    answer = check(reader, "email:nobody@example.com", "marketing")
    assert answer == {"allowed": False, "reason": "unknown_subject_default", "state_since": None}
    answer = check(reader, "email:nobody@example.com", "marketing", jurisdiction="US-CA")
    assert answer == {"allowed": True, "reason": "unknown_subject_default", "state_since": None}


def test_an_unknown_purpose_is_a_404_that_says_so(reader, purposes, eu_customer):
    error = assert_error(reader.get(URL, {"subject": "customer_id:EU-1", "purpose": "nope"}), 404)
    assert "No purpose has this slug" in error["message"]
    assert error["errors"] == [{"field": "purpose", "message": error["message"]}]


@pytest.mark.parametrize(
    "subject",
    ["eva@example.de", "email:not-an-email", "fax:123", "phone:12", "customer_id:"],
)
def test_a_malformed_identity_is_a_400_that_does_not_echo_it(reader, purposes, subject):
    error = assert_error(reader.get(URL, {"subject": subject, "purpose": "marketing"}), 400)
    assert error["errors"][0]["field"] == "subject"
    value = subject.partition(":")[2]
    if value:
        assert value not in error["message"]


def test_missing_and_unknown_parameters_are_400s(reader, purposes):
    assert_error(reader.get(URL, {"purpose": "marketing"}), 400)
    assert_error(
        reader.get(URL, {"subject": "customer_id:A", "purpose": "marketing", "purpse": "x"}), 400
    )
    assert_error(
        reader.get(URL, {"subject": "customer_id:A", "purpose": "marketing", "jurisdiction": "X"}),
        400,
    )


def test_a_key_without_consent_read_is_refused(make_api, purposes, eu_customer):
    for api in (make_api("consent:write"), make_api("logs:write")):
        assert_error(api.get(URL, {"subject": "customer_id:EU-1", "purpose": "marketing"}), 403)
        assert_error(api.post(URL, {"checks": []}, format="json"), 403)


def test_an_unauthenticated_caller_is_refused(client, purposes):
    response = client.get(URL, {"subject": "customer_id:EU-1", "purpose": "marketing"})
    assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_check_writes_nothing_and_once_cached_reads_no_database_at_all(
    reader, purposes, eu_customer, django_assert_num_queries
):
    # Committed for real: reads inside a transaction (a plain `db` test) never fill the cache.
    check(reader, "customer_id:EU-1", "marketing")  # the full view: caches the key
    check(reader, "customer_id:EU-1", "marketing")  # the hot path: caches the identity
    before = consent_rows()
    # Key, rate, identity, restriction, states and catalogue: one Redis round trip.
    with django_assert_num_queries(0):
        check(reader, "customer_id:EU-1", "marketing")
    assert consent_rows() == before
    assert not AuditEvent.objects.filter(action__startswith="consent.").exists()


# --- the batch ----------------------------------------------------------------------------


def test_a_batch_answers_every_pair_in_order(
    reader, purposes, eu_customer, ca_customer, django_capture_on_commit_callbacks
):
    record(django_capture_on_commit_callbacks, "grant", eu_customer, purposes["marketing"])
    pairs = [
        {"subject": "customer_id:EU-1", "purpose": "marketing"},
        {"subject": "email:carl@example.com", "purpose": "marketing"},
        {"subject": "customer_id:EU-1", "purpose": "ai-improvement"},
        {"subject": "customer_id:NEW", "purpose": "analytics"},
    ]
    response = reader.post(URL, {"checks": pairs}, format="json")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [(r["subject"], r["purpose"], r["allowed"], r["reason"]) for r in results] == [
        ("customer_id:EU-1", "marketing", True, "explicit_grant"),
        ("email:carl@example.com", "marketing", True, "default"),
        ("customer_id:EU-1", "ai-improvement", False, "default"),
        ("customer_id:NEW", "analytics", True, "unknown_subject_default"),
    ]


def test_a_batch_of_1000_is_answered(reader, purposes):
    for n in range(20):
        SubjectFactory(external_id=f"B-{n}", jurisdiction=Jurisdiction.US_CA)
    pairs = [
        {"subject": f"customer_id:B-{n % 25}", "purpose": ("marketing", "analytics")[n % 2]}
        for n in range(1000)
    ]
    response = reader.post(URL, {"checks": pairs}, format="json")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == 1000
    assert {r["reason"] for r in results} == {"default", "unknown_subject_default"}


def test_a_batch_of_1001_is_refused_with_a_clear_message(reader, purposes):
    pairs = [{"subject": "customer_id:A", "purpose": "marketing"}] * 1001
    error = assert_error(reader.post(URL, {"checks": pairs}, format="json"), 400)
    assert "at most 1000" in error["message"]


def test_a_batch_with_an_unknown_purpose_is_a_404_naming_the_pair(reader, purposes):
    pairs = [
        {"subject": "customer_id:A", "purpose": "marketing"},
        {"subject": "customer_id:A", "purpose": "nope"},
    ]
    error = assert_error(reader.post(URL, {"checks": pairs}, format="json"), 404)
    assert error["errors"][0]["field"] == "checks[1].purpose"


def test_a_batch_with_a_malformed_pair_is_a_400_naming_it(reader, purposes):
    pairs = [
        {"subject": "customer_id:A", "purpose": "marketing"},
        {"subject": "email:not-an-email", "purpose": "marketing"},
    ]
    error = assert_error(reader.post(URL, {"checks": pairs}, format="json"), 400)
    assert error["errors"][0]["field"] == "checks[1].subject"
    extra = [{"subject": "customer_id:A", "purpose": "marketing", "color": "red"}]
    error = assert_error(reader.post(URL, {"checks": extra}, format="json"), 400)
    assert error["errors"][0]["field"] == "checks[0].color"
    assert_error(reader.post(URL, {"checks": []}, format="json"), 400)
    assert_error(reader.post(URL, {"checks": "x"}, format="json"), 400)
    error = assert_error(reader.post(URL, {"checks": [pairs[0], "x"]}, format="json"), 400)
    assert error["errors"][0]["field"] == "checks[1]"
    bad_gpc = [{**pairs[0], "gpc": "yes"}]
    error = assert_error(reader.post(URL, {"checks": bad_gpc}, format="json"), 400)
    assert error["errors"][0]["field"] == "checks[0].gpc"
    bad_purpose = [{"subject": "customer_id:A", "purpose": "no spaces"}]
    error = assert_error(reader.post(URL, {"checks": bad_purpose}, format="json"), 400)
    assert error["errors"][0]["field"] == "checks[0].purpose"


def test_the_hand_written_subject_query_agrees_with_the_orm(purposes, eu_customer, ca_customer):
    from consent.selectors import _subjects_by_identity, _subjects_by_identity_orm

    refs = {
        ("customer_id", "EU-1"),
        ("email", "carl@example.com"),
        ("email", "eva@example.de"),
        ("customer_id", "nobody"),
        ("phone", "+442079460958"),
    }
    raw = sorted(_subjects_by_identity(refs))
    assert raw == sorted(_subjects_by_identity_orm(refs))
    assert {row[2] for row in raw} == {eu_customer.pk, ca_customer.pk}
    assert _subjects_by_identity({("email", "eva@example.de")}) == _subjects_by_identity_orm(
        {("email", "eva@example.de")}
    )
    assert _subjects_by_identity(set()) == []
