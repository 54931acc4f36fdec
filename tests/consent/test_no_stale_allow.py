"""No caller ever gets `allowed: true` after a withdrawal has been acknowledged: the consent
check's cache is invalidated only after the withdrawal commits, and a reader that raced the
commit cannot put the old grant back (see consent/cache.py). These tests commit for real,
and read through every way in: the URL's view, the WSGI shortcut over HTTP (the hot path,
consent/hotpath.py, which also caches the identity's subject) and the deployed ASGI front
(consent/hotpath_asgi.py)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

import compliance.wsgi
from compliance.models import Jurisdiction
from consent import cache, selectors, services
from consent.models import LawfulBasis
from tests.consent.asgi_support import LiveAsgi, count_hot_answers
from tests.consent.wsgi_support import LiveWsgi, call_wsgi
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


class _TestClientReader:
    """Checks through Django's handler and the URL's view (Django's test client)."""

    def __init__(self, raw_key: str):
        self.api = APIClient()
        self.api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    def allowed(self) -> bool:
        response = self.api.get(CHECK, QUERY)
        assert response.status_code == 200, response.content
        return response.json()["allowed"]


class _HttpReader:
    """Checks over HTTP to a deployed application: the WSGI one, whose shortcut answers
    them before Django's handler, or the ASGI one, whose front answers them in its event
    loop."""

    def __init__(self, server: LiveWsgi | LiveAsgi, raw_key: str):
        self.server, self.headers = server, {"Authorization": f"Bearer {raw_key}"}

    def allowed(self) -> bool:
        answer = self.server.get(CHECK, QUERY, self.headers)
        assert answer.status == 200, answer.body
        return answer.json()["allowed"]


def test_a_losing_reader_s_old_grant_is_not_served_by_the_hot_path_either(
    make_api, marketing, customer
):
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {make_api('consent:read').raw_key}"}
    services.consent_grant(subject=customer, purpose=marketing, source="portal", actor="test")
    _, tokens, _ = cache.read([customer.pk], with_catalogue=False)
    old_states = selectors._states_from_db([customer.pk])
    services.consent_withdraw(subject=customer, purpose=marketing, source="portal", actor="test")
    # The hot path caches the identity under the new token...
    for _ in range(2):
        call_wsgi(compliance.wsgi.application, CHECK, QUERY, **bearer)
    # ...then the slow reader's blob, stamped with the old one, replaces the states.
    cache.store({customer.pk: (tokens[customer.pk], old_states[customer.pk])})
    answer = call_wsgi(compliance.wsgi.application, CHECK, QUERY, **bearer).json()
    assert (answer["allowed"], answer["reason"]) == (False, "withdrawn")


@pytest.mark.parametrize("transport", ["test client", "http", "asgi"])
def test_checks_from_other_connections_never_allow_after_an_acknowledged_withdrawal(
    make_api, marketing, customer, transport, monkeypatch
):
    answered_hot = count_hot_answers(monkeypatch, front="asgi" if transport == "asgi" else "wsgi")
    writer = make_api("consent:write")
    raw_read_key = make_api("consent:read").raw_key
    # A new HTTP connection, thread and database connection per request: slower readers,
    # so longer windows to read in.
    pause = 0.08 if transport == "http" else 0.02
    answers: list[tuple[float, float, bool]] = []  # (sent, answered, allowed)
    errors: list[BaseException] = []
    stop = threading.Event()
    server = {
        "http": lambda: LiveWsgi(compliance.wsgi.application),
        "asgi": LiveAsgi,
        "test client": lambda: None,
    }[transport]()

    def read_in_a_loop() -> None:
        if server is None:
            reader = _TestClientReader(raw_read_key)
        else:
            reader = _HttpReader(server, raw_read_key)
        try:
            while not stop.is_set():
                sent = time.monotonic()
                allowed = reader.allowed()
                answers.append((sent, time.monotonic(), allowed))
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
            time.sleep(pause)
            response = writer.post(
                "/api/v1/consent/events/", {**body, "action": "withdraw"}, format="json"
            )
            assert response.status_code == 201, response.content
            withdrawn_at = time.monotonic()
            time.sleep(pause)
            acknowledged.append((withdrawn_at, time.monotonic()))
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)
        if server is not None:
            server.stop()
    assert not errors, errors

    # A check counts only if the whole of it lies between the withdrawal's acknowledgement
    # and the next grant: sent after the one, answered before the other was sent. (One sent
    # in the window but answered after the next grant committed may rightly say allowed.)
    in_windows = [
        allowed
        for sent, answered, allowed in answers
        for after, before in acknowledged
        if after < sent and answered < before
    ]
    stale = sum(in_windows)
    assert not stale, f"{stale} of {len(in_windows)} checks said allowed after a withdrawal"
    # The test proves something only if the readers saw both answers and read in the windows.
    assert {allowed for _, _, allowed in answers} == {True, False}
    assert len(in_windows) >= 15
    # ...and only if the path under test answered most of them.
    assert sum(answered_hot) > len(answers) / 2, (sum(answered_hot), len(answers))


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
