"""Sending deliveries to a real HTTP receiver on 127.0.0.1 (services called directly; the
Celery worker test is test_webhook_worker.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from integrations.models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from integrations.selectors import webhook_deliveries_due
from integrations.services import (
    webhook_backoff_seconds,
    webhook_deliver,
    webhook_delivery_retry,
    webhook_dispatch_due,
    webhook_emit,
    webhook_subscription_delete,
    webhook_subscription_set_active,
)
from integrations.signing import SignatureError, signature_verify
from tests.factories import SubjectFactory, WebhookSubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscription(receiver):
    return WebhookSubscriptionFactory(target_url=receiver.url)


def emit(subscription, subject=None, **payload) -> WebhookDelivery:
    with transaction.atomic():
        (delivery,) = webhook_emit(
            event_type="consent.changed",
            system=subscription.system,
            subject_id=subject.pk if subject else None,
            payload=payload or {"purpose": "marketing", "state": "withdrawn"},
        )
    return delivery


def make_due(delivery: WebhookDelivery) -> None:
    """Let the backoff pass."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def test_it_delivers_a_signed_event_the_receiver_can_verify(subscription, receiver):
    subject = SubjectFactory()
    delivery = emit(subscription, subject)

    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"

    (request,) = receiver.requests
    event_id = signature_verify(
        secret=subscription.secret, headers=request["headers"], body=request["body"]
    )
    assert event_id == str(delivery.event_id)
    assert request["headers"]["X-Webhook-Event"] == "consent.changed"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["json"] == {
        "id": str(delivery.event_id),
        "type": "consent.changed",
        "created_at": request["json"]["created_at"],
        "system": subscription.system.slug,
        "subject_id": str(subject.pk),
        "sequence": 1,
        "data": {"purpose": "marketing", "state": "withdrawn"},
    }
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 1
    assert delivery.last_status_code == 200
    assert delivery.delivered_at is not None
    assert WebhookAttempt.objects.filter(delivery=delivery, status_code=200).count() == 1


def test_a_replayed_delivery_is_detectable(subscription, receiver):
    webhook_deliver(delivery_id=emit(subscription).pk)
    (request,) = receiver.requests
    seen_ids: set[str] = set()

    def seen(event_id: str) -> bool:
        known = event_id in seen_ids
        seen_ids.add(event_id)
        return known

    sent_at = int(request["headers"]["X-Webhook-Timestamp"])
    signature_verify(
        secret=subscription.secret,
        headers=request["headers"],
        body=request["body"],
        now=sent_at,
        seen=seen,
    )
    # The same bytes again: caught by the id within the tolerance, by the clock after it.
    with pytest.raises(SignatureError, match="already received"):
        signature_verify(
            secret=subscription.secret,
            headers=request["headers"],
            body=request["body"],
            now=sent_at + 10,
            seen=seen,
        )
    with pytest.raises(SignatureError, match="outside the tolerance"):
        signature_verify(
            secret=subscription.secret,
            headers=request["headers"],
            body=request["body"],
            now=sent_at + 3600,
        )


def test_delivering_twice_sends_once(subscription, receiver):
    delivery = emit(subscription)
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    assert webhook_deliver(delivery_id=delivery.pk) == "not_pending"
    assert len(receiver.requests) == 1


def test_a_failed_attempt_is_retried_with_exponential_backoff(subscription, receiver, settings):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 30
    receiver.answer = (503, "")
    delivery = emit(subscription)

    before = timezone.now()
    assert webhook_deliver(delivery_id=delivery.pk) == "retry_scheduled"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1
    assert delivery.last_status_code == 503
    assert delivery.last_error == "HTTP 503"  # never the receiver's body
    first_wait = (delivery.next_attempt_at - before).total_seconds()
    assert 29 <= first_wait <= 40

    # Not due yet: nothing is sent.
    assert webhook_deliver(delivery_id=delivery.pk) == "not_due"
    assert len(receiver.requests) == 1

    make_due(delivery)
    before = timezone.now()
    assert webhook_deliver(delivery_id=delivery.pk) == "retry_scheduled"
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert 59 <= (delivery.next_attempt_at - before).total_seconds() <= 70


def test_backoff_doubles_up_to_the_maximum(settings):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 30
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 3600
    assert [webhook_backoff_seconds(n) for n in (1, 2, 3, 4, 8, 50)] == [
        30,
        60,
        120,
        240,
        3600,
        3600,
    ]


def test_it_gives_up_after_the_maximum_attempts(subscription, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver.answer = (500, "")
    delivery = emit(subscription)
    assert webhook_deliver(delivery_id=delivery.pk) == "retry_scheduled"
    make_due(delivery)
    assert webhook_deliver(delivery_id=delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempt_log.count() == 2


def test_a_later_event_waits_while_an_earlier_one_for_the_subject_is_pending(
    subscription, receiver
):
    ana, ben = SubjectFactory(), SubjectFactory()
    first = emit(subscription, ana, purpose="marketing", state="granted")
    second = emit(subscription, ana, purpose="marketing", state="withdrawn")
    other = emit(subscription, ben, purpose="marketing", state="granted")

    receiver.answer = (503, "")
    assert webhook_deliver(delivery_id=first.pk) == "retry_scheduled"
    assert webhook_deliver(delivery_id=second.pk) == "waiting"
    receiver.answer = (200, "")
    # Another subject's events are not held up by ana's.
    assert webhook_deliver(delivery_id=other.pk) == "delivered"

    make_due(first)
    assert webhook_deliver(delivery_id=first.pk) == "delivered"
    assert webhook_deliver(delivery_id=second.pk) == "delivered"
    ana_states = [
        r["json"]["data"]["state"]
        for r in receiver.delivered()
        if r["json"]["subject_id"] == str(ana.pk)
    ]
    assert ana_states == ["granted", "withdrawn"]


def test_a_given_up_event_no_longer_holds_back_the_next(subscription, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    ana = SubjectFactory()
    first, second = emit(subscription, ana), emit(subscription, ana)
    receiver.answer = (500, "")
    assert webhook_deliver(delivery_id=first.pk) == "failed"
    receiver.answer = (200, "")
    assert webhook_deliver(delivery_id=second.pk) == "delivered"


def test_redirects_are_not_followed(subscription, receiver):
    receiver.answer = (307, "http://127.0.0.1:1/elsewhere")
    delivery = emit(subscription)
    assert webhook_deliver(delivery_id=delivery.pk) == "retry_scheduled"
    delivery.refresh_from_db()
    assert delivery.last_status_code == 307
    assert delivery.last_error == "redirects are not followed"
    assert len(receiver.requests) == 1


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(
    subscription, receiver, settings
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    receiver.answer = (0, "")
    delivery = emit(subscription)
    assert webhook_deliver(delivery_id=delivery.pk) == "retry_scheduled"
    delivery.refresh_from_db()
    assert delivery.last_error == "timed out"
    assert delivery.last_status_code is None


def test_private_addresses_are_refused_unless_allowed(subscription, receiver, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    delivery = emit(subscription)
    assert webhook_deliver(delivery_id=delivery.pk) == "retry_scheduled"
    delivery.refresh_from_db()
    assert delivery.last_error == "refused: the host resolves to a private address"
    assert receiver.requests == []


def test_a_paused_subscription_holds_its_deliveries(subscription, receiver):
    delivery = emit(subscription)
    webhook_subscription_set_active(subscription=subscription, active=False, actor="test")
    assert webhook_deliver(delivery_id=delivery.pk) == "paused"
    webhook_subscription_set_active(subscription=subscription, active=True, actor="test")
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"


def test_deleting_a_subscription_cancels_its_pending_deliveries(subscription, receiver):
    delivery = emit(subscription)
    webhook_subscription_delete(subscription=subscription, actor="test")
    assert webhook_deliver(delivery_id=delivery.pk) == "not_pending"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
    assert receiver.requests == []


def test_retry_now_sends_a_given_up_delivery_again(subscription, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    receiver.answer = (500, "")
    delivery = emit(subscription)
    assert webhook_deliver(delivery_id=delivery.pk) == "failed"

    receiver.answer = (200, "")
    delivery.refresh_from_db()
    assert webhook_delivery_retry(delivery=delivery, actor="test") is True
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert webhook_delivery_retry(delivery=delivery, actor="test") is False


def test_the_sweep_queues_only_due_deliveries_first_in_their_lane(subscription):
    ana, ben = SubjectFactory(), SubjectFactory()
    head = emit(subscription, ana)
    emit(subscription, ana)  # behind head
    later = emit(subscription, ben)
    WebhookDelivery.objects.filter(pk=later.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    assert webhook_deliveries_due() == [head.pk]
    assert webhook_dispatch_due() == 1
