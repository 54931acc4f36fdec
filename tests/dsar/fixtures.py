"""Fixtures shared by the DSAR and fault tests; imported by both conftest files."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.dsar.support import (
    WorkerPool,
    build_estate,
    create_external_db,
    drop_external_db,
    purge_queue,
)


@pytest.fixture
def workers(tmp_path):
    """Start real Celery worker processes (``workers.start()``) on the Redis broker and this
    run's queue, reading the test database. Tests using it need
    ``@pytest.mark.django_db(transaction=True)`` so the worker sees committed rows."""
    purge_queue()
    pool = WorkerPool(tmp_path)
    yield pool
    pool.stop_all()
    purge_queue()


@pytest.fixture
def external_db(django_db_setup, django_db_blocker):
    """A throwaway PostgreSQL database holding an external chat table; its DSN."""
    name = f"{connection.settings_dict['NAME']}_ext"
    dsn = create_external_db(name)
    yield dsn
    drop_external_db(name)


@pytest.fixture
def estate(tmp_path, external_db):
    """Ana in all three kinds of source and mentioned in Bob's chats (see support.Estate)."""
    return build_estate(folder=tmp_path / "jsonl", dsn=external_db)
