"""End to end on a real Celery worker and Redis: a receiver that is down for a while gets
every event once it is back, each once, in order per subject."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from integrations.models import WebhookAttempt, WebhookDelivery
from integrations.services import webhook_emit
from integrations.signing import signature_verify
from tests.factories import SubjectFactory, WebhookSubscriptionFactory

ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def celery_worker_process():
    """A worker on this run's queue and test database, with a short backoff."""
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_TEST_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "COMPLIANCE_TESTING": "1",
        "WEBHOOK_BACKOFF_BASE_SECONDS": "1",
        "WEBHOOK_BACKOFF_MAX_SECONDS": "3",
        "WEBHOOK_TIMEOUT_SECONDS": "2",
    }
    if db.get("PASSWORD"):
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "compliance",
            "worker",
            "-Q",
            settings.CELERY_TASK_DEFAULT_QUEUE,
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    if process.returncode not in (0, -15):
        print(output.decode(errors="replace"))


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_receiver_down_for_a_while_gets_every_event_once_back_in_order_per_subject(
    stopped_receiver, celery_worker_process
):
    subscription = WebhookSubscriptionFactory(target_url=stopped_receiver.url)
    ana, ben = SubjectFactory(), SubjectFactory()
    order = [ana, ben, ana, ana, ben, ana]
    emitted = []

    def change(number: int) -> None:
        with transaction.atomic():
            (delivery,) = webhook_emit(
                event_type="consent.changed",
                system=subscription.system,
                subject_id=order[number].pk,
                payload={"purpose": "marketing", "number": number},
            )
        emitted.append(delivery)

    # While nobody listens, the first events fail and back off...
    change(0)
    change(1)
    wait_until(
        lambda: WebhookAttempt.objects.filter(error="connection refused").count() >= 4,
        timeout=60,
        what="failed attempts against the stopped receiver",
    )
    assert celery_worker_process.poll() is None, "the worker died"
    # ... a change that rolls back must never be announced ...
    with pytest.raises(RuntimeError), transaction.atomic():
        webhook_emit(
            event_type="consent.changed",
            system=subscription.system,
            subject_id=ana.pk,
            payload={"purpose": "marketing", "number": 99},
        )
        raise RuntimeError("the change failed")
    # ... and the receiver comes back while newer events are being sent right away: they
    # must wait for the older ones still in backoff.
    stopped_receiver.start()
    for number in range(2, len(order)):
        change(number)

    wait_until(
        lambda: WebhookDelivery.objects.filter(status="delivered").count() == len(order),
        timeout=90,
        what="every delivery to be delivered",
    )
    time.sleep(1)  # a duplicate or the rolled-back event would arrive now
    received = stopped_receiver.delivered()
    ids = [r["json"]["id"] for r in received]
    assert sorted(ids) == sorted(str(d.event_id) for d in emitted)
    assert len(ids) == len(set(ids)), "each event once"
    for request in received:
        signature_verify(
            secret=subscription.secret,
            headers=request["headers"],
            body=request["body"],
            tolerance_seconds=120,
        )

    def numbers(subject):
        return [
            r["json"]["data"]["number"]
            for r in received
            if r["json"]["subject_id"] == str(subject.pk)
        ]

    assert numbers(ana) == [0, 2, 3, 5]
    assert numbers(ben) == [1, 4]
    assert WebhookDelivery.objects.count() == len(order)
