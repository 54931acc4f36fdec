"""Fixtures of the consent tests: a purpose catalogue and customers in each jurisdiction."""

from __future__ import annotations

import pytest

from compliance.models import Jurisdiction
from consent.builtin import builtin_purposes_ensure
from consent.models import (
    SALE_SHARING,
    SENSITIVE_PI,
    LawfulBasis,
    Purpose,
)
from tests.factories import PurposeFactory, SubjectFactory


@pytest.fixture(autouse=True)
def _identity_entries_of_earlier_tests_forgotten():
    """The hot path caches which subject an identity names. A test's rows are removed
    without the signals that would invalidate that (a rollback, a flush), and the next test
    reuses the same identities for new subjects: forget this run's entries (this run's key
    prefix only; the shared Redis is never flushed)."""
    from consent.cache import IDENTITY_PREFIX, raw_redis

    redis = raw_redis()
    if redis is not None:
        pattern = f"{redis.prefix}{IDENTITY_PREFIX}*"
        keys = list(redis.client.scan_iter(match=pattern, count=10_000))
        if keys:
            redis.client.delete(*keys)


@pytest.fixture
def purposes(db) -> dict[str, Purpose]:
    """The demo's catalogue plus a contract purpose; the two CCPA purposes come from the
    migration."""
    made = {
        "conversation-logging": PurposeFactory(
            slug="conversation-logging", lawful_basis=LawfulBasis.LEGITIMATE_INTEREST
        ),
        "marketing": PurposeFactory(
            slug="marketing", lawful_basis=LawfulBasis.CONSENT, notices=["v1", "v2"]
        ),
        "ai-improvement": PurposeFactory(slug="ai-improvement", lawful_basis=LawfulBasis.CONSENT),
        "third-party-sharing": PurposeFactory(
            slug="third-party-sharing",
            lawful_basis=LawfulBasis.CONSENT,
            sold_or_shared=True,
            third_party_name="Partner shops",
        ),
        "analytics": PurposeFactory(slug="analytics", lawful_basis=LawfulBasis.LEGITIMATE_INTEREST),
        "fraud-checks": PurposeFactory(
            slug="fraud-checks", lawful_basis=LawfulBasis.LEGAL_OBLIGATION, sensitive=True
        ),
        "order-handling": PurposeFactory(slug="order-handling", lawful_basis=LawfulBasis.CONTRACT),
        "location-offers": PurposeFactory(
            slug="location-offers", lawful_basis=LawfulBasis.CONSENT, sensitive=True
        ),
    }
    builtin_purposes_ensure()  # a transactional test's flush removes the migration's rows
    made[SALE_SHARING] = Purpose.objects.get(slug=SALE_SHARING)
    made[SENSITIVE_PI] = Purpose.objects.get(slug=SENSITIVE_PI)
    return made


@pytest.fixture
def eu_customer(db):
    return SubjectFactory(
        jurisdiction=Jurisdiction.EU, external_id="EU-1", identities={"email": "eva@example.de"}
    )


@pytest.fixture
def ca_customer(db):
    return SubjectFactory(
        jurisdiction=Jurisdiction.US_CA,
        external_id="CA-1",
        identities={"email": "carl@example.com"},
    )


@pytest.fixture
def reader(make_api):
    return make_api("consent:read")


@pytest.fixture
def writer(make_api):
    return make_api("consent:write")
