"""Stop Redis while requests are being submitted, start it again: every request completes.
The broker here is a Redis server of this test's own on a spare port; the shared one is
never stopped."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dsar import services
from dsar.models import DataSubjectRequest, RequestStatus, SourceTask
from tests.dsar.support import explain_request, purge_queue, wait_until
from tests.factories import SubjectFactory
from tests.faults.conftest import publishing_to

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def submit(n: int) -> list[DataSubjectRequest]:
    requests = []
    for i in range(n):
        subject = SubjectFactory(identities={"email": f"lost-{n}-{i}-{id(requests)}@example.com"})
        requests.append(
            services.request_create(
                type="access",
                identity={"customer_id": subject.external_id},
                channel="api",
                actor="t",
                pre_verified=True,
            )
        )
    return requests


def test_requests_submitted_while_redis_is_down_all_complete_once_it_is_back(
    estate, workers, own_redis
):
    with publishing_to(own_redis.url):
        worker = workers.start(broker_url=own_redis.url)
        before = submit(2)

        own_redis.stop()
        during = submit(3)  # the API answers; the work waits in PostgreSQL
        for dsr in during:
            dsr.refresh_from_db()
            assert dsr.status == RequestStatus.IN_PROGRESS
        assert SourceTask.objects.filter(request__in=during, status="pending").count() == 9

        own_redis.start()  # empty: everything queued before the outage is lost too
        # The periodic watchdog, run now: rows not sent (or lost with the broker) go again.
        wait_until(
            lambda: (
                services.source_tasks_watchdog(resend_after=timedelta(seconds=0)).resent
                or SourceTask.objects.exclude(status="pending").exists()
            ),
            timeout=30,
            what="the watchdog to resend",
        )

        everything = before + during

        def all_done():
            services.source_tasks_watchdog(resend_after=timedelta(seconds=5))
            return DataSubjectRequest.objects.filter(
                pk__in=[r.pk for r in everything], status=RequestStatus.COMPLETED
            ).count() == len(everything)

        wait_until(
            all_done,
            timeout=120,
            interval=1,
            what="every request to complete",
            explain=lambda: (
                "\n".join(explain_request(r.pk) for r in everything) + worker.log()[-3000:]
            ),
        )
        purge_queue(own_redis.url)
    assert SourceTask.objects.filter(request__in=everything).exclude(status="done").count() == 0
