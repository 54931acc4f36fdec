"""The per-API-key request rate, counted in Redis."""

from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/event-types/"


def fresh_window() -> None:
    # The count starts again every minute: keep the few requests of a test in one window.
    if time.time() % 60 > 55:
        time.sleep(60 - time.time() % 60 + 0.1)


def test_the_suite_is_not_throttled_by_default():
    assert django_settings.API_RATE_PER_MINUTE == 0


def test_a_key_over_its_rate_gets_429_with_retry_after_in_the_error_shape(make_api, settings):
    settings.API_RATE_PER_MINUTE = 3
    fresh_window()
    api = make_api("webhooks:manage")
    assert [api.get(URL).status_code for _ in range(3)] == [200, 200, 200]
    response = api.get(URL)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert response.json()["error"]["errors"] == []
    assert 1 <= int(response["Retry-After"]) <= 60


def test_each_key_has_its_own_budget(make_api, settings):
    settings.API_RATE_PER_MINUTE = 2
    fresh_window()
    busy, quiet = make_api("webhooks:manage"), make_api("webhooks:manage")
    for _ in range(3):
        busy.get(URL)
    assert busy.get(URL).status_code == 429
    assert quiet.get(URL).status_code == 200


def test_a_rate_of_zero_turns_the_limit_off(make_api, settings):
    settings.API_RATE_PER_MINUTE = 0
    api = make_api("webhooks:manage")
    assert {api.get(URL).status_code for _ in range(20)} == {200}


def test_refused_requests_spend_nothing_of_the_budget(make_api, settings):
    settings.API_RATE_PER_MINUTE = 1
    fresh_window()
    # Authentication and scopes are checked before the rate: a key refused for its scope
    # is told so, and has not used up its one request.
    api = make_api("subjects:read")
    assert api.get(URL).status_code == 403
    assert api.get(URL).status_code == 403
    assert api.get("/api/v1/subjects/").status_code == 200
    assert api.get("/api/v1/subjects/").status_code == 429
