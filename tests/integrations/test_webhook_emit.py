"""webhook_emit: the outbox rows are written in the transaction of the change."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction
from django.utils import timezone

from compliance.services import ServiceError
from integrations.models import DeliveryStatus, WebhookDelivery
from integrations.services import webhook_emit
from tests.factories import SubjectFactory, SystemFactory, WebhookSubscriptionFactory

pytestmark = pytest.mark.django_db


def emit(event_type="consent.changed", *, system=None, subject_id=None, payload=None):
    return webhook_emit(
        event_type=event_type,
        system=system,
        subject_id=subject_id,
        payload=payload if payload is not None else {"purpose": "marketing", "state": "granted"},
    )


def test_it_writes_one_pending_row_per_matching_subscription(django_capture_on_commit_callbacks):
    system = SystemFactory()
    first = WebhookSubscriptionFactory(system=system)
    second = WebhookSubscriptionFactory(system=system, event_types=["consent.changed"])
    subject = SubjectFactory()
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        deliveries = emit(system=system, subject_id=subject.pk)
    assert {d.subscription_id for d in deliveries} == {first.pk, second.pk}
    assert all(d.status == DeliveryStatus.PENDING for d in deliveries)
    assert len({d.event_id for d in deliveries}) == 1, "one event, one id for every receiver"
    assert deliveries[0].ordering_key == str(subject.pk)
    assert deliveries[0].payload == {"purpose": "marketing", "state": "granted"}
    # Sending is scheduled for after commit, once per row.
    assert len(callbacks) == 2


def test_a_rolled_back_change_leaves_no_delivery(django_capture_on_commit_callbacks):
    WebhookSubscriptionFactory()
    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        pytest.raises(RuntimeError, match="the change failed"),
        transaction.atomic(),
    ):
        assert emit()
        raise RuntimeError("the change failed")
    assert not WebhookDelivery.objects.exists()
    assert callbacks == []


def test_it_skips_other_event_types_other_systems_and_inactive_or_deleted_subscriptions():
    system = SystemFactory()
    WebhookSubscriptionFactory(system=system, event_types=["erasure.requested"])
    WebhookSubscriptionFactory(system=SystemFactory())
    WebhookSubscriptionFactory(system=system, active=False)
    WebhookSubscriptionFactory(system=system, deleted_at=timezone.now())
    with transaction.atomic():
        assert emit(system=system) == []


def test_an_event_for_no_system_reaches_every_systems_subscribers():
    a = WebhookSubscriptionFactory(system=SystemFactory())
    b = WebhookSubscriptionFactory(system=SystemFactory())
    with transaction.atomic():
        deliveries = emit("erasure.requested", payload={"request_id": str(uuid.uuid4())})
    assert {d.subscription_id for d in deliveries} == {a.pk, b.pk}


def test_sequence_numbers_count_up_per_subscription_and_subject():
    subscription = WebhookSubscriptionFactory()
    one, two = SubjectFactory(), SubjectFactory()
    with transaction.atomic():
        sequences = [
            emit(system=subscription.system, subject_id=s.pk)[0].sequence
            for s in (one, one, two, one, two)
        ]
    assert sequences == [1, 2, 1, 3, 2]


def test_it_refuses_personal_data_the_event_type_does_not_need():
    WebhookSubscriptionFactory()
    with transaction.atomic(), pytest.raises(ServiceError) as caught:
        emit(payload={"purpose": "marketing", "subject": {"email": "ana@example.com"}})
    assert caught.value.field == "payload"
    assert "subject.email" in caught.value.message
    assert "ana@example.com" not in caught.value.message
    assert not WebhookDelivery.objects.exists()


def test_an_erasure_may_carry_the_identities_a_processor_needs_to_find_its_records():
    WebhookSubscriptionFactory()
    with transaction.atomic():
        deliveries = emit(
            "erasure.requested",
            payload={"request_id": "r-1", "identities": {"email": "ana@example.com"}},
        )
    assert deliveries[0].payload["identities"] == {"email": "ana@example.com"}


def test_it_refuses_an_unknown_event_type():
    with transaction.atomic(), pytest.raises(ServiceError) as caught:
        emit("subject.deleted")
    assert caught.value.field == "event_type"


@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_run_outside_a_transaction():
    # Outside the change's transaction the row could commit without the change, or not
    # at all with it: exactly what the outbox is there to prevent.
    WebhookSubscriptionFactory()
    with pytest.raises(RuntimeError, match="inside the transaction"):
        emit()
    assert not WebhookDelivery.objects.exists()
