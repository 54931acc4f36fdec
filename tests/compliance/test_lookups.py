"""``field__any``: the same rows as ``field__in``, with the values as one array parameter."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compliance.models import Conversation, SubjectIdentity
from tests.factories import SubjectFactory, SystemFactory

pytestmark = pytest.mark.django_db


def test_any_finds_what_in_finds_with_one_parameter():
    subjects = [SubjectFactory(external_id=f"C-{n}") for n in range(5)]
    wanted = ["C-1", "C-3", "C-404"]

    with CaptureQueriesContext(connection) as queries:
        found = set(
            SubjectIdentity.objects.filter(type="customer_id", value__any=wanted).values_list(
                "subject_id", flat=True
            )
        )

    assert found == {subjects[1].pk, subjects[3].pk}
    assert found == set(
        SubjectIdentity.objects.filter(type="customer_id", value__in=wanted).values_list(
            "subject_id", flat=True
        )
    )
    assert "= ANY(" in queries[0]["sql"]


def test_any_works_on_a_foreign_key_to_a_uuid_and_on_an_empty_list():
    system = SystemFactory()
    ana, bob = SubjectFactory(), SubjectFactory()
    for n, subject in enumerate([ana, bob, None]):
        Conversation.objects.create(
            system=system, subject=subject, external_id=f"c-{n}", started_at="2026-01-01T00:00Z"
        )

    by_subject = Conversation.objects.filter(subject_id__any=[ana.pk, uuid.uuid4()])
    assert list(by_subject.values_list("external_id", flat=True)) == ["c-0"]
    assert not Conversation.objects.filter(subject_id__any=[]).exists()
