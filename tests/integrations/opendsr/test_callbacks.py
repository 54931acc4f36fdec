"""Status callbacks (OpenDSR 8.5-8.8): written in the transaction of each status change,
POSTed to every status_callback_urls entry in order, signed so that the certificate
published at the discovery URL verifies them, retried when the controller is down. Sent
to a real HTTP receiver through the service the Celery task calls."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from dsar import services as dsar_services
from dsar.models import RequestStatus
from integrations.models import DeliveryStatus
from integrations.opendsr.callbacks import opendsr_callback_deliver, opendsr_callbacks_dispatch_due
from integrations.opendsr.models import OpenDsrCallback, OpenDsrRequest
from integrations.opendsr.selectors import opendsr_callbacks_due
from integrations.opendsr.signing import signature_verify
from tests.dsar.support import run_all
from tests.integrations.opendsr.conftest import post_request, published_certificate, spec_request

pytestmark = pytest.mark.django_db


def deliver_all() -> list[str]:
    """What the workers do: send every pending callback, oldest first."""
    outcomes = []
    for pk in (
        OpenDsrCallback.objects.filter(status=DeliveryStatus.PENDING)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    ):
        outcomes.append(opendsr_callback_deliver(callback_id=pk))
    return outcomes


def file_access_request(controller, urls):
    body = spec_request(subject_request_type="access", status_callback_urls=urls)
    assert post_request(controller, body).status_code == 201
    return body, OpenDsrRequest.objects.select_related("request").get()


def test_every_status_change_reaches_every_url_signed_and_in_order(
    controller, builtin_source, receiver
):
    urls = [receiver.url, f"{receiver.url}/second"]
    body, link = file_access_request(controller, urls)
    assert run_all(link.request) == RequestStatus.COMPLETED
    assert deliver_all() == ["delivered"] * 6

    certificate_pem = published_certificate(APIClient())
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    domain = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    link.request.refresh_from_db()
    for url in urls:
        path = url.removeprefix(f"http://127.0.0.1:{receiver.port}")
        received = [r for r in receiver.delivered() if r["path"] == path]
        assert [r["json"]["request_status"] for r in received] == [
            "pending",
            "in_progress",
            "completed",
        ]
        for request in received:
            # Header names are case-insensitive (urllib sends "X-opendsr-signature").
            headers = {name.lower(): value for name, value in request["headers"].items()}
            # OpenDSR 8.8: verify the raw body before parsing it, with the published key.
            assert signature_verify(
                certificate_pem=certificate_pem,
                body=request["body"],
                signature=headers["x-opendsr-signature"],
            )
            assert headers["x-opendsr-processor-domain"] == domain
            assert headers["x-opengdpr-signature"] == headers["x-opendsr-signature"]
            assert headers["x-opengdpr-processor-domain"] == domain
            assert headers["content-type"] == "application/json"
            payload = json.loads(request["body"])
            assert set(payload) == {
                "controller_id",
                "expected_completion_time",
                "status_callback_url",
                "subject_request_id",
                "request_status",
                "api_version",
                "results_url",
            }
            assert payload["controller_id"] == str(controller.api_client.pk)
            assert payload["status_callback_url"] == url
            assert payload["subject_request_id"] == body["subject_request_id"]
            assert payload["api_version"] == "2.0"
            assert payload["expected_completion_time"] == (
                link.request.due_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            )
        assert received[0]["json"]["results_url"] is None
        assert (
            f"/api/v1/requests/{link.request.pk}/download/?token="
            in (received[-1]["json"]["results_url"])
        )


def test_a_tampered_body_or_another_key_does_not_verify(controller, receiver):
    file_access_request(controller, [receiver.url])
    deliver_all()
    request = receiver.delivered()[0]
    assert request["json"]["request_status"] == "pending"
    certificate_pem = published_certificate(APIClient())
    signature = {k.lower(): v for k, v in request["headers"].items()}["x-opendsr-signature"]
    tampered = request["body"].replace(b'"pending"', b'"completed"')
    assert not signature_verify(certificate_pem=certificate_pem, body=tampered, signature=signature)
    from integrations.opendsr.signing import _generate

    other = _generate("attacker.example").split(b"-----END PRIVATE KEY-----\n")[1]
    assert not signature_verify(certificate_pem=other, body=request["body"], signature=signature)


def test_a_controller_that_is_down_gets_its_callbacks_in_order_once_back(
    controller, stopped_receiver, settings
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 2
    body = spec_request(status_callback_urls=[stopped_receiver.url])
    post_request(controller, body)
    link = OpenDsrRequest.objects.select_related("request").get()
    first = OpenDsrCallback.objects.get()

    before = timezone.now()
    assert opendsr_callback_deliver(callback_id=first.pk) == "retry_scheduled"
    first.refresh_from_db()
    assert (first.status, first.attempts) == (DeliveryStatus.PENDING, 1)
    assert first.last_error == "connection refused"
    # WEBHOOK_BACKOFF_BASE_SECONDS after the first failure, then doubling.
    assert first.next_attempt_at >= before + timedelta(
        seconds=settings.WEBHOOK_BACKOFF_BASE_SECONDS
    )

    # The DPO approves meanwhile: the second report waits behind the first.
    dsar_services.request_approve(request=link.request, actor="user:1")
    second = OpenDsrCallback.objects.get(sequence=2)
    assert second.request_status == "in_progress"
    assert opendsr_callback_deliver(callback_id=second.pk) == "waiting"
    assert opendsr_callbacks_due() == []  # the first is backing off, the second waits for it

    stopped_receiver.start()
    OpenDsrCallback.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
    assert opendsr_callbacks_due() == [first.pk]
    assert opendsr_callback_deliver(callback_id=first.pk) == "delivered"
    assert opendsr_callback_deliver(callback_id=second.pk) == "delivered"
    assert [r["json"]["request_status"] for r in stopped_receiver.delivered()] == [
        "pending",
        "in_progress",
    ]
    first.refresh_from_db()
    assert (first.status, first.attempts, first.last_status_code) == ("delivered", 2, 200)


def test_a_callback_is_given_up_after_the_last_attempt_and_the_next_one_goes_on(
    controller, stopped_receiver, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    post_request(controller, spec_request(status_callback_urls=[stopped_receiver.url]))
    first = OpenDsrCallback.objects.get()
    assert opendsr_callback_deliver(callback_id=first.pk) == "failed"
    first.refresh_from_db()
    assert first.status == DeliveryStatus.FAILED
    assert opendsr_callback_deliver(callback_id=first.pk) == "not_pending"


def test_a_delivered_callback_is_not_sent_twice(controller, receiver):
    post_request(controller, spec_request(status_callback_urls=[receiver.url]))
    callback = OpenDsrCallback.objects.get()
    assert opendsr_callback_deliver(callback_id=callback.pk) == "delivered"
    assert opendsr_callback_deliver(callback_id=callback.pk) == "not_pending"
    assert len(receiver.requests) == 1


def test_callbacks_are_written_with_the_change_and_sent_only_after_commit(
    controller, django_capture_on_commit_callbacks
):
    post_request(controller, spec_request(status_callback_urls=["https://controller.example/cb"]))
    link = OpenDsrRequest.objects.select_related("request").get()
    with django_capture_on_commit_callbacks(execute=False) as sends:
        dsar_services.request_approve(request=link.request, actor="user:1")
        # The row is there before the commit...
        assert OpenDsrCallback.objects.filter(request_status="in_progress").count() == 1
    # ... and its sending waits for it.
    assert len([s for s in sends if s.__qualname__.startswith("_write.")]) == 1


def test_a_status_change_that_rolls_back_is_never_reported(controller):
    post_request(controller, spec_request(status_callback_urls=["https://controller.example/cb"]))
    link = OpenDsrRequest.objects.select_related("request").get()
    with pytest.raises(RuntimeError, match="crash"), transaction.atomic():
        dsar_services.request_approve(request=link.request, actor="user:1")
        assert OpenDsrCallback.objects.count() == 2
        raise RuntimeError("crash after the approval")
    assert list(OpenDsrCallback.objects.values_list("request_status", flat=True)) == ["pending"]
    link.refresh_from_db()
    assert link.announced_status == "pending"


def test_a_rejected_request_is_reported_as_cancelled(controller):
    post_request(controller, spec_request(status_callback_urls=["https://controller.example/cb"]))
    link = OpenDsrRequest.objects.select_related("request").get()
    dsar_services.request_reject(request=link.request, actor="user:1", reason="Excessive.")
    assert list(
        OpenDsrCallback.objects.order_by("sequence").values_list("request_status", flat=True)
    ) == ["pending", "cancelled"]


def test_internal_steps_that_keep_the_request_pending_are_not_reported(controller):
    body = spec_request(status_callback_urls=["https://controller.example/cb"])
    post_request(controller, body)
    # received -> verified -> awaiting_approval all map to "pending": one callback.
    assert OpenDsrCallback.objects.count() == 1


def test_a_request_without_callback_urls_writes_no_callback(controller):
    body = spec_request()
    del body["status_callback_urls"]
    assert post_request(controller, body).status_code == 201
    assert not OpenDsrCallback.objects.exists()
    assert OpenDsrRequest.objects.get().announced_status == "pending"


def test_the_sweep_queues_due_callbacks_first_in_their_lane(controller):
    post_request(controller, spec_request(status_callback_urls=["https://controller.example/cb"]))
    dsar_services.request_approve(request=OpenDsrRequest.objects.get().request, actor="user:1")
    first, second = OpenDsrCallback.objects.order_by("sequence")
    assert opendsr_callbacks_due() == [first.pk]
    assert opendsr_callbacks_dispatch_due() == 1
    assert second.pk not in opendsr_callbacks_due()
