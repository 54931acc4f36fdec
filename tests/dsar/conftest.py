"""Fixtures of the DSAR tests."""

from __future__ import annotations

import pytest

from tests.dsar.fixtures import estate, external_db, workers  # noqa: F401 - fixtures


@pytest.fixture
def ana(db):
    from tests.factories import SubjectFactory

    return SubjectFactory(identities={"email": "ana@example.com"})
