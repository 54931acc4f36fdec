"""Stop Redis under the consent check, start it again: the check answers throughout, from
the database while Redis is away (as the full view always did), and the hot path takes over
again once it is back, in the WSGI shortcut and in the deployed ASGI front (whose pipelined
connection must notice the loss and connect again). The Redis here is this test's own on a
spare port."""

from __future__ import annotations

import time

import pytest
from django.core.cache.backends.redis import RedisCache

import compliance.wsgi
from compliance.models import Jurisdiction
from consent import services
from consent.models import LawfulBasis
from tests.consent.asgi_support import LiveAsgi, count_hot_answers
from tests.consent.wsgi_support import LiveWsgi
from tests.factories import PurposeFactory, SubjectFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUERY = {"subject": "customer_id:OUTAGE-1", "purpose": "marketing"}


@pytest.mark.parametrize("server_kind", ["wsgi", "asgi"])
def test_the_check_answers_from_the_database_while_redis_is_down(
    own_redis, settings, make_api, monkeypatch, server_kind
):
    settings.CACHES = {
        "default": {
            "BACKEND": f"{RedisCache.__module__}.{RedisCache.__name__}",
            "LOCATION": own_redis.url,
            "KEY_PREFIX": "consent-outage",
        }
    }
    answered_hot = count_hot_answers(monkeypatch, front=server_kind)
    marketing = PurposeFactory(slug="marketing", lawful_basis=LawfulBasis.CONSENT)
    customer = SubjectFactory(external_id="OUTAGE-1", jurisdiction=Jurisdiction.EU)
    headers = {"Authorization": f"Bearer {make_api('consent:read').raw_key}"}
    server = LiveWsgi(compliance.wsgi.application) if server_kind == "wsgi" else LiveAsgi()

    def answer() -> tuple[str, bool]:
        started = time.monotonic()
        response = server.get("/api/v1/consent/check", QUERY, headers)
        assert response.status == 200, response.body
        assert time.monotonic() - started < 5, "a check waited on the missing Redis"
        body = response.json()
        return body["reason"], body["allowed"]

    try:
        services.consent_grant(subject=customer, purpose=marketing, source="portal", actor="t")
        assert [answer() for _ in range(3)] == [("explicit_grant", True)] * 3
        assert answered_hot[-1], "the hot path answered before the outage"

        own_redis.stop()
        answered_hot.clear()
        assert answer() == ("explicit_grant", True)
        services.consent_withdraw(subject=customer, purpose=marketing, source="portal", actor="t")
        assert answer() == ("withdrawn", False)
        services.consent_grant(subject=customer, purpose=marketing, source="portal", actor="t")
        assert answer() == ("explicit_grant", True)
        assert not any(answered_hot), "nothing came from a cache during the outage"

        own_redis.start()  # empty, as after a restart: no token of before survives
        services.consent_withdraw(subject=customer, purpose=marketing, source="portal", actor="t")
        assert [answer() for _ in range(4)] == [("withdrawn", False)] * 4
        time.sleep(1.1)  # the hot path stands aside for a second after a failure
        assert [answer() for _ in range(3)] == [("withdrawn", False)] * 3
        assert answered_hot[-1], "the hot path answers again once Redis is back"
    finally:
        server.stop()
