"""End to end on a real Celery worker and Redis: a request filed over HTTP is carried out
by the worker, and each of its statuses is announced to the controller's callback URL,
after commit, in order, signed with the published key."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from integrations.opendsr.models import OpenDsrCallback
from integrations.opendsr.signing import signature_verify
from tests.integrations.opendsr.conftest import post_request, published_certificate, spec_request
from tests.integrations.test_webhook_worker import (  # noqa: F401 - the worker fixture
    celery_worker_process,
    wait_until,
)


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_worker_sends_each_status_signed_once_the_change_commits(
    controller,
    builtin_source,
    receiver,
    celery_worker_process,  # noqa: F811
):
    body = spec_request(subject_request_type="access", status_callback_urls=[receiver.url])
    assert post_request(controller, body).status_code == 201
    # The worker also carries the request out: received, started, then done.
    wait_until(
        lambda: len(receiver.delivered()) >= 3, timeout=90, what="three callbacks at the receiver"
    )
    assert celery_worker_process.poll() is None, "the worker died"
    statuses = [r["json"]["request_status"] for r in receiver.delivered()]
    assert statuses == ["pending", "in_progress", "completed"]
    assert receiver.delivered()[-1]["json"]["results_url"]
    certificate_pem = published_certificate(APIClient())
    for request in receiver.delivered():
        headers = {name.lower(): value for name, value in request["headers"].items()}
        assert signature_verify(
            certificate_pem=certificate_pem,
            body=request["body"],
            signature=headers["x-opendsr-signature"],
        )
    # The worker records the answer just after the receiver has given it.
    wait_until(
        lambda: set(OpenDsrCallback.objects.values_list("status", flat=True)) == {"delivered"},
        timeout=10,
        what="every callback recorded as delivered",
    )
