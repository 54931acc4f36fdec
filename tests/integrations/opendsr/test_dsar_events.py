"""The request services announce their changes through the webhook outbox, in the
transaction of the change: a change that rolls back leaves no delivery behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from dsar import services as dsar_services
from dsar.models import RequestStatus
from integrations.events import EVENT_TYPES
from integrations.models import IdempotencyRecord, WebhookDelivery
from tests.dsar.support import run_all
from tests.factories import ApiClientFactory, SubjectFactory, WebhookSubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscription(db):
    return WebhookSubscriptionFactory(event_types=sorted(EVENT_TYPES))


def events(**filters) -> list[tuple[str, dict]]:
    return [
        (d.event_type, d.payload)
        for d in WebhookDelivery.objects.filter(**filters).order_by("sequence")
    ]


def file(type: str, identity: dict, **kwargs):
    return dsar_services.request_create(
        type=type, identity=identity, channel="api", actor="test", pre_verified=True, **kwargs
    )


def test_filing_a_request_announces_it_and_each_step_in_order(subscription):
    ana = SubjectFactory(identities={"email": "ana@example.com"})
    dsr = file("erasure", {"email": "ana@example.com"})
    announced = events(ordering_key=str(ana.pk))
    assert [event for event, _ in announced] == [
        "request.created",
        "request.status_changed",
        "request.status_changed",
    ]
    created = announced[0][1]
    assert created == {
        "request_id": str(dsr.pk),
        "type": "erasure",
        "regulation": "gdpr",
        "channel": "api",
        "due_at": DjangoJSONEncoder().default(dsr.due_at),
        "duplicate": False,
    }
    assert [(p["from"], p["to"]) for _, p in announced[1:]] == [
        ("received", "verified"),
        ("verified", "awaiting_approval"),
    ]


def test_a_request_that_rolls_back_announces_nothing(subscription):
    SubjectFactory(identities={"email": "ana@example.com"})
    with pytest.raises(RuntimeError), transaction.atomic():
        file("erasure", {"email": "ana@example.com"})
        assert WebhookDelivery.objects.count() == 3  # written with the change...
        raise RuntimeError("the change fails after the request was filed")
    assert not WebhookDelivery.objects.exists()  # ... and gone with it


def test_an_erasure_asks_the_processors_to_erase_by_every_identity_and_reports_the_end(
    subscription, builtin_source
):
    ana = SubjectFactory(
        external_id="C-1001", identities={"email": "ana@example.com", "phone": "+442079460958"}
    )
    dsr = file("erasure", {"email": "ana@example.com"})
    dsar_services.request_approve(request=dsr, actor="user:1")
    (requested,) = [p for e, p in events(ordering_key=str(ana.pk)) if e == "erasure.requested"]
    assert requested == {
        "request_id": str(dsr.pk),
        "regulation": "gdpr",
        "identities": {
            "customer_id": ["C-1001"],
            "email": ["ana@example.com"],
            "phone": ["+442079460958"],
        },
    }
    assert run_all(dsr) == RequestStatus.COMPLETED
    announced = dict(events(ordering_key=str(ana.pk)))
    assert announced["request.completed"] == {
        "request_id": str(dsr.pk),
        "type": "erasure",
        "outcome": "completed",
    }
    completed = announced["erasure.completed"]
    assert completed["complete"] is True
    assert completed["sources"] == [
        {
            "source_id": builtin_source.pk,
            "status": "done",
            "records_before": 0,
            "records_after": 0,
        }
    ]


def test_an_erasure_forgets_the_stored_api_answers_that_name_the_subject(builtin_source):
    ana = SubjectFactory(identities={"email": "ana@example.com"})
    client = ApiClientFactory()
    expires = timezone.now() + timedelta(hours=1)
    IdempotencyRecord.objects.create(
        client=client,
        key="k-ana",
        fingerprint="f",
        method="POST",
        path="/api/v1/subjects/",
        response_status=201,
        response_body={"id": str(ana.pk), "identities": {}},
        expires_at=expires,
    )
    IdempotencyRecord.objects.create(
        client=client,
        key="k-other",
        fingerprint="f",
        method="POST",
        path="/api/v1/subjects/",
        response_status=201,
        response_body={"id": "someone-else"},
        expires_at=expires,
    )
    dsr = file("erasure", {"email": "ana@example.com"})
    dsar_services.request_approve(request=dsr, actor="user:1")
    assert IdempotencyRecord.objects.count() == 2
    assert run_all(dsr) == RequestStatus.COMPLETED
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["k-other"]


def test_a_restriction_and_its_lifting_are_announced(subscription, settings):
    settings.DSAR_RESTRICTION_LIFT_NOTICE_DAYS = 0
    ana = SubjectFactory(identities={"email": "ana@example.com"})
    dsr = file("restriction", {"email": "ana@example.com"})
    dsar_services.restriction_lift_announce(request=dsr, actor="user:1")
    dsar_services.restriction_lift(request=dsr, actor="user:1")
    changes = [p for e, p in events(ordering_key=str(ana.pk)) if e == "restriction.changed"]
    assert changes == [
        {"request_id": str(dsr.pk), "restricted": True},
        {"request_id": str(dsr.pk), "restricted": False},
    ]


def test_a_rectification_tells_recipients_the_old_and_new_value(subscription):
    ana = SubjectFactory(identities={"email": "typo@exmaple.com"})
    dsr = file(
        "rectification",
        {"email": "typo@exmaple.com"},
        details={
            "corrections": [{"type": "email", "old": "typo@exmaple.com", "new": "ana@example.com"}]
        },
    )
    (rectified,) = [
        p for e, p in events(ordering_key=str(ana.pk)) if e == "rectification.completed"
    ]
    assert rectified == {
        "request_id": str(dsr.pk),
        "identities": [{"type": "email", "old": "typo@exmaple.com", "new": "ana@example.com"}],
    }


def test_a_rejection_is_announced_as_the_answer_to_the_request(subscription):
    dsr = file("erasure", {"email": "stranger@example.com"})
    dsar_services.request_reject(request=dsr, actor="user:1", reason="Manifestly unfounded.")
    completed = [p for e, p in events(ordering_key="") if e == "request.completed"]
    # The reason is told to the subject, never sent to other systems.
    assert completed == [{"request_id": str(dsr.pk), "type": "erasure", "outcome": "rejected"}]


def test_a_system_that_subscribed_to_nothing_of_this_hears_nothing():
    WebhookSubscriptionFactory(event_types=["consent.changed"])
    file("access", {"email": "stranger@example.com"})
    assert not WebhookDelivery.objects.exists()
