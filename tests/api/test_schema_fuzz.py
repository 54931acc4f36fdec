"""schemathesis against /api/schema/: generated requests (valid and invalid) to every
operation, with a key holding every scope. No answer may be a 5xx, and every answer must
match the schema (status code, content type, body). Operations added by any app are
picked up from the schema as they land."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from compliance.services import KNOWN_SCOPES, api_client_create, api_key_issue
from tests.factories import SubjectFactory, SystemFactory

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(autouse=True)
def requests_keep_the_test_connection():
    """Django closes "old" connections when a request starts and finishes; inside the
    test's transaction that would end it, so (as Django's own test client does) that is
    switched off while the fuzzer sends requests through the WSGI app in this thread."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def every_scope_key(db) -> str:
    # Something for the generated requests to find besides 404s.
    SystemFactory(slug="shop-assistant")
    SubjectFactory(external_id="C-1001")
    client = api_client_create(name="schema-fuzz", scopes=list(KNOWN_SCOPES), actor="test")
    _, raw = api_key_issue(client=client, actor="test")
    return raw


# Loaded when the tests are collected (no database needed to build the schema), so every
# operation of every app is one test. schemathesis' lazy from_fixture loader would fit
# better but does not run under pytest 9.2 (it sets the removed Node._nodeid).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler())


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx_or_outside_its_schema(case, every_scope_key):
    # call_and_validate raises on any failed check; the status is asserted here as well so
    # the one property this test exists for reads plainly.
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {every_scope_key}"}, checks=CHECKS
    )
    assert response.status_code < 500
