"""Named queries: deadlines and who may see which request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from dsar.selectors import (
    request_type_metrics,
    requests_confirmation_due,
    requests_due_soon,
    requests_overdue,
    requests_visible_to,
)
from tests.factories import ApiClientFactory, DataSubjectRequestFactory, SystemFactory

pytestmark = pytest.mark.django_db


def due_in(days: float, status: str = "in_progress", **kwargs):
    return DataSubjectRequestFactory(
        status=status, due_at=timezone.now() + timedelta(days=days), **kwargs
    )


def test_overdue_lists_open_requests_past_their_deadline_oldest_first():
    late = due_in(-1)
    later = due_in(-3, status="awaiting_approval")
    due_in(-2, status="completed")
    due_in(2)
    assert list(requests_overdue()) == [later, late]


def test_due_soon_lists_open_requests_due_within_the_window():
    soon = due_in(2)
    later = due_in(10)
    due_in(-1)
    due_in(3, status="rejected")
    assert list(requests_due_soon(days=7)) == [soon]
    assert list(requests_due_soon(days=14)) == [soon, later]


def test_unconfirmed_ccpa_requests_are_listed_until_confirmed():
    waiting = DataSubjectRequestFactory(
        regulation="ccpa", confirmation_due_at=timezone.now() + timedelta(days=3)
    )
    DataSubjectRequestFactory(
        regulation="ccpa",
        confirmation_due_at=timezone.now() + timedelta(days=3),
        confirmed_at=timezone.now(),
    )
    DataSubjectRequestFactory(regulation="gdpr")
    assert list(requests_confirmation_due()) == [waiting]


def test_a_client_bound_to_a_system_sees_only_what_it_filed():
    bound = ApiClientFactory(system=SystemFactory())
    unbound = ApiClientFactory()
    mine = DataSubjectRequestFactory(filed_by=bound)
    other = DataSubjectRequestFactory(filed_by=unbound)
    assert list(requests_visible_to(bound)) == [mine]
    assert set(requests_visible_to(unbound)) == {mine, other}


def test_metrics_count_received_complied_and_denied_per_type():
    DataSubjectRequestFactory(type="access", status="completed")
    DataSubjectRequestFactory(type="access", status="rejected")
    DataSubjectRequestFactory(type="erasure", status="partially_completed")
    now = timezone.now()
    rows = request_type_metrics(since=now - timedelta(days=1), until=now + timedelta(days=1))
    assert rows == [
        {"type": "access", "received": 2, "complied": 1, "denied": 1},
        {"type": "erasure", "received": 1, "complied": 1, "denied": 0},
    ]
