"""Shared fixtures. The suite runs on real PostgreSQL and Redis (see `make test`)."""

from __future__ import annotations

import pytest
from django.conf import settings
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from compliance.services import api_client_create, api_key_issue

# No per-example deadline: Hypothesis tests check properties, not speed (that is bench/'s
# job), and a shared CI machine can make any example slow.
hypothesis_settings.register_profile("compliance", deadline=None)
hypothesis_settings.load_profile("compliance")


def pytest_configure(config):
    if not settings.IS_POSTGRES:
        pytest.exit(
            "The tests run on PostgreSQL and Redis: use `make test` "
            "(it sets DATABASE_URL, CELERY_BROKER_URL and REDIS_URL).",
            returncode=2,
        )


@pytest.fixture
def make_api():
    """Build an API client authenticated with a fresh key holding ``scopes``."""
    counter = iter(range(10_000))

    def build(*scopes: str, system=None) -> APIClient:
        client = api_client_create(
            name=f"test-client-{next(counter)}", scopes=list(scopes), system=system,
            actor="test",
        )
        _, raw = api_key_issue(client=client, actor="test")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        api.api_client = client
        api.raw_key = raw
        return api

    return build
