"""No caller ever gets `allowed: true` after a withdrawal has been acknowledged: the consent
check's cache is invalidated only after the withdrawal commits, and a reader that raced the
commit cannot put the old grant back (see consent/cache.py). These tests commit for real."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from compliance.models import Jurisdiction
from consent import cache, selectors, services
from consent.models import LawfulBasis
from tests.factories import PurposeFactory, SubjectFactory

pytestmark = pytest.mark.django_db(transaction=True)

CHECK = "/api/v1/consent/check"
QUERY = {"subject": "customer_id:RACE-1", "purpose": "marketing"}


@pytest.fixture
def marketing(transactional_db):
    return PurposeFactory(slug="marketing", lawful_basis=LawfulBasis.CONSENT)


@pytest.fixture
def customer(transactional_db):
    return SubjectFactory(external_id="RACE-1", jurisdiction=Jurisdiction.EU)


def test_the_cache_is_really_in_use(settings, marketing, customer):
    assert settings.CONSENT_CACHE_ENABLED, "the tests must run with Redis (make test)"
    services.consent_grant(subject=customer, purpose=marketing, source="portal", actor="test")
    selectors.consent_check(subject=QUERY["subject"], purpose="marketing")
    blobs, _, _ = cache.read([customer.pk], with_catalogue=False)
    assert customer.pk in blobs


def test_a_reader_that_loses_the_race_cannot_cache_the_old_grant(marketing, customer):
    services.consent_grant(subject=customer, purpose=marketing, source="portal", actor="test")
    # A slow reader: it reads the token, then the states (still granted)...
    _, tokens, _ = cache.read([customer.pk], with_catalogue=False)
    old_states = selectors._states_from_db([customer.pk])
    assert old_states[customer.pk][marketing.pk].status == "granted"
    # ...the withdrawal commits and is acknowledged...
    services.consent_withdraw(subject=customer, purpose=marketing, source="portal", actor="test")
    # ...and only then the slow reader stores what it read.
    cache.store({customer.pk: (tokens[customer.pk], old_states[customer.pk])})
    answer = selectors.consent_check(subject=QUERY["subject"], purpose="marketing").result
    assert (answer.allowed, answer.reason) == (False, "withdrawn")


def test_checks_from_other_connections_never_allow_after_an_acknowledged_withdrawal(
    make_api, marketing, customer
):
    writer = make_api("consent:write")
    raw_read_key = make_api("consent:read").raw_key
    answers: list[tuple[float, bool]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_in_a_loop() -> None:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_read_key}")
        try:
            while not stop.is_set():
                started = time.monotonic()
                response = api.get(CHECK, QUERY)
                assert response.status_code == 200, response.content
                answers.append((started, response.json()["allowed"]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    readers = [threading.Thread(target=read_in_a_loop) for _ in range(2)]
    for thread in readers:
        thread.start()
    acknowledged: list[tuple[float, float]] = []  # (withdrawal acknowledged, next grant sent)
    body = {"subject": QUERY["subject"], "purpose": "marketing"}
    try:
        for _ in range(15):
            response = writer.post(
                "/api/v1/consent/events/", {**body, "action": "grant"}, format="json"
            )
            assert response.status_code == 201, response.content
            time.sleep(0.02)
            response = writer.post(
                "/api/v1/consent/events/", {**body, "action": "withdraw"}, format="json"
            )
            assert response.status_code == 201, response.content
            withdrawn_at = time.monotonic()
            time.sleep(0.02)
            acknowledged.append((withdrawn_at, time.monotonic()))
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)
    assert not errors, errors

    stale = [
        started
        for started, allowed in answers
        for after, before in acknowledged
        if after < started < before and allowed
    ]
    assert not stale, f"{len(stale)} checks allowed after an acknowledged withdrawal"
    # The test proves something only if the readers saw both answers and read in the windows.
    assert {allowed for _, allowed in answers} == {True, False}
    in_windows = [s for s, _ in answers for a, b in acknowledged if a < s < b]
    assert len(in_windows) >= 15


def test_a_grant_that_rolls_back_leaves_no_allow_in_the_cache(marketing, customer):
    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        services.consent_grant(subject=customer, purpose=marketing, source="portal", actor="t")
        # Read inside the writing transaction: it sees its own grant...
        inside = selectors.consent_check(subject=QUERY["subject"], purpose="marketing").result
        assert inside.reason == "explicit_grant"
        raise Undo
    # ...but never stored it, so the grant that never happened is not served afterwards.
    after = selectors.consent_check(subject=QUERY["subject"], purpose="marketing").result
    assert (after.allowed, after.reason) == (False, "default")
