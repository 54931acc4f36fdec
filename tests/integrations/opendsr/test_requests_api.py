"""POST /requests, GET and DELETE /requests/{subject_request_id}: requests built exactly as
the specification's examples, every answer field checked, the v1 names, the errors."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from dsar import services as dsar_services
from dsar.models import DataSubjectRequest, RequestStatus
from integrations.opendsr.models import OpenDsrCallback, OpenDsrRequest
from integrations.opendsr.signing import processor_domain, signature_verify
from tests.factories import SubjectFactory
from tests.integrations.opendsr.conftest import (
    SPEC_EXAMPLE,
    post_request,
    published_certificate,
    raw_json,
    spec_request,
)

pytestmark = pytest.mark.django_db

RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def parse_time(value: str) -> datetime:
    assert RFC3339_UTC.fullmatch(value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def as_sent(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assert_signed(api, response) -> None:
    assert response["X-OpenDSR-Processor-Domain"] == processor_domain()
    assert response["X-OpenGDPR-Processor-Domain"] == processor_domain()
    assert response["X-OpenGDPR-Signature"] == response["X-OpenDSR-Signature"]
    assert signature_verify(
        certificate_pem=published_certificate(api),
        body=response.content,
        signature=response["X-OpenDSR-Signature"],
    )


def assert_opendsr_error(response, status: int, *, domain: str, reason: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "errors"}
    assert error["code"] == status
    assert error["message"]
    assert error["errors"] == [{"domain": domain, "reason": reason, "message": error["message"]}]
    return error


# --- POST /requests ----------------------------------------------------------------------------


def test_the_specification_example_is_accepted_with_every_field_of_the_answer(controller):
    body = dict(SPEC_EXAMPLE)
    raw = raw_json(body)
    before = timezone.now().replace(microsecond=0)
    response = controller.generic(
        "POST", "/opendsr/v2/requests", raw, content_type="application/json"
    )
    after = timezone.now()

    assert response.status_code == 201, response.content
    assert response["Content-Type"] == "application/json"
    answer = response.json()
    assert set(answer) == {
        "controller_id",
        "expected_completion_time",
        "received_time",
        "encoded_request",
        "subject_request_id",
    }
    assert answer["controller_id"] == str(controller.api_client.pk)
    assert answer["subject_request_id"] == "a7551968-d5d6-44b2-9831-815ac9017798"
    assert base64.b64decode(answer["encoded_request"]) == raw
    received = parse_time(answer["received_time"])
    assert before <= received <= after
    # GDPR Art. 12(3): one month from receipt.
    expected = parse_time(answer["expected_completion_time"])
    assert timedelta(days=28) <= expected - received <= timedelta(days=31)
    assert_signed(controller, response)

    # It is an ordinary data subject request, filed through the API by this controller.
    link = OpenDsrRequest.objects.select_related("request").get()
    dsr = link.request
    assert (dsr.type, dsr.regulation, dsr.channel) == ("erasure", "gdpr", "api")
    assert dsr.filed_by == controller.api_client
    assert dsr.verification_method == "trusted_client"
    assert dsr.status == RequestStatus.AWAITING_APPROVAL  # erasures wait for a DPO
    assert as_sent(dsr.received_at) == answer["received_time"]
    assert as_sent(dsr.due_at) == answer["expected_completion_time"]
    assert link.submitted_time == datetime(2018, 10, 2, 15, tzinfo=UTC)
    assert link.status_callback_urls == ["https://examplecontroller.com/opendsr/callbacks"]
    assert link.api_version == "2.0"


def test_the_status_of_a_new_request_is_pending_with_every_field(controller):
    body = spec_request()
    created = post_request(controller, body).json()
    response = controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}")
    assert response.status_code == 200
    assert response.json() == {
        "controller_id": str(controller.api_client.pk),
        "expected_completion_time": created["expected_completion_time"],
        "subject_request_id": body["subject_request_id"],
        "request_status": "pending",
        "api_version": "2.0",
        "results_url": None,
    }
    assert_signed(controller, response)


def test_an_access_request_starts_at_once_and_reports_in_progress(controller, builtin_source):
    body = spec_request(subject_request_type="access")
    assert post_request(controller, body).status_code == 201
    status = controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}").json()
    assert status["request_status"] == "in_progress"


def test_a_completed_access_request_gives_the_results_url(controller, builtin_source):
    from tests.dsar.support import run_all

    body = spec_request(subject_request_type="access")
    post_request(controller, body)
    dsr = OpenDsrRequest.objects.get().request
    assert run_all(dsr) == RequestStatus.COMPLETED
    status = controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}").json()
    assert status["request_status"] == "completed"
    assert status["results_url"].startswith(f"http://testserver/api/v1/requests/{dsr.pk}/download/")
    download = APIClient().get(status["results_url"].removeprefix("http://testserver"))
    assert download.status_code == 200


def test_a_ccpa_request_gets_the_ccpa_deadline(controller):
    answer = post_request(controller, spec_request(regulation="ccpa")).json()
    dsr = OpenDsrRequest.objects.get().request
    assert dsr.regulation == "ccpa"
    received = parse_time(answer["received_time"])
    # CCPA §7021: 45 calendar days.
    assert parse_time(answer["expected_completion_time"]) - received == timedelta(days=45)


def test_a_person_nobody_knows_gets_exactly_the_answer_a_known_person_gets(controller):
    SubjectFactory(identities={"email": "known@example.com"})
    answers, statuses = [], []
    for email in ("known@example.com", "stranger@example.com"):
        body = spec_request(
            subject_identities=[
                {"identity_type": "email", "identity_value": email, "identity_format": "raw"}
            ]
        )
        response = post_request(controller, body)
        answers.append((response.status_code, response.json()))
        statuses.append(controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}"))
    (known_code, known), (stranger_code, stranger) = answers
    assert known_code == stranger_code == 201
    assert set(known) == set(stranger)
    assert parse_time(known["expected_completion_time"]) - parse_time(
        known["received_time"]
    ) == parse_time(stranger["expected_completion_time"]) - parse_time(stranger["received_time"])
    known_status, stranger_status = (r.json() for r in statuses)
    for field in ("request_status", "results_url", "api_version", "controller_id"):
        assert known_status[field] == stranger_status[field]
    dsrs = DataSubjectRequest.objects.order_by("received_at")
    assert [d.subject is not None for d in dsrs] == [True, False]


def test_identity_types_of_the_specification_this_service_does_not_hold_are_ignored(controller):
    body = spec_request(
        subject_identities=[
            {
                "identity_type": "ios_advertising_id",
                "identity_value": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
                "identity_format": "raw",
            },
            {
                "identity_type": "controller_customer_id",
                "identity_value": "C-77",
                "identity_format": "raw",
            },
        ]
    )
    assert post_request(controller, body).status_code == 201
    dsr = OpenDsrRequest.objects.get().request
    assert (dsr.identity_type, dsr.identity_value) == ("customer_id", "C-77")


def test_of_several_identities_the_one_of_a_known_person_is_filed(controller):
    ana = SubjectFactory(identities={"phone": "+442079460958"})
    body = spec_request(
        subject_identities=[
            {
                "identity_type": "email",
                "identity_value": "nobody@example.com",
                "identity_format": "raw",
            },
            {
                "identity_type": "phone_number",
                "identity_value": "+44 20 7946 0958",
                "identity_format": "raw",
            },
        ]
    )
    assert post_request(controller, body).status_code == 201
    assert OpenDsrRequest.objects.get().request.subject == ana


def test_the_trailing_slash_is_optional(controller):
    body = spec_request()
    assert post_request(controller, body, path="/opendsr/v2/requests/").status_code == 201
    status = controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}/")
    assert status.status_code == 200


# --- DELETE /requests/{id} -----------------------------------------------------------------------


def test_a_pending_request_is_cancelled_with_202_and_every_field(controller):
    body = spec_request()
    post_request(controller, body)
    before = timezone.now().replace(microsecond=0)
    response = controller.delete(f"/opendsr/v2/requests/{body['subject_request_id']}")
    assert response.status_code == 202, response.content
    answer = response.json()
    assert set(answer) == {"controller_id", "subject_request_id", "received_time", "api_version"}
    assert answer["controller_id"] == str(controller.api_client.pk)
    assert answer["subject_request_id"] == body["subject_request_id"]
    assert answer["api_version"] == "2.0"
    assert before <= parse_time(answer["received_time"]) <= timezone.now()
    assert_signed(controller, response)

    link = OpenDsrRequest.objects.select_related("request").get()
    assert link.request.status == RequestStatus.CANCELLED
    assert link.cancelled_at is not None
    status = controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}").json()
    assert status["request_status"] == "cancelled"
    assert list(
        OpenDsrCallback.objects.order_by("sequence").values_list("request_status", flat=True)
    ) == ["pending", "cancelled"]


def test_a_request_in_progress_cannot_be_cancelled(controller, builtin_source):
    body = spec_request(subject_request_type="access")
    post_request(controller, body)
    response = controller.delete(f"/opendsr/v2/requests/{body['subject_request_id']}")
    error = assert_opendsr_error(response, 400, domain="Request", reason="conflict")
    assert "in_progress" in error["message"]
    assert OpenDsrRequest.objects.get().request.status == RequestStatus.IN_PROGRESS


def test_a_cancelled_request_cannot_be_cancelled_again(controller):
    body = spec_request()
    post_request(controller, body)
    assert (
        controller.delete(f"/opendsr/v2/requests/{body['subject_request_id']}").status_code == 202
    )
    response = controller.delete(f"/opendsr/v2/requests/{body['subject_request_id']}")
    assert_opendsr_error(response, 400, domain="Request", reason="conflict")
    assert OpenDsrCallback.objects.filter(request_status="cancelled").count() == 1


def test_a_request_approved_by_the_dpo_is_no_longer_pending(controller, builtin_source):
    body = spec_request()
    post_request(controller, body)
    dsr = OpenDsrRequest.objects.get().request
    dsar_services.request_approve(request=dsr, actor="user:1")
    status = controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}").json()
    assert status["request_status"] == "in_progress"
    response = controller.delete(f"/opendsr/v2/requests/{body['subject_request_id']}")
    assert_opendsr_error(response, 400, domain="Request", reason="conflict")


def test_cancelling_a_duplicate_leaves_the_open_request_it_duplicates_alone(controller):
    ana = SubjectFactory(identities={"email": "ana@example.com"})
    original = dsar_services.request_create(
        type="erasure",
        identity={"email": "ana@example.com"},
        channel="portal",
        actor="t",
        pre_verified=True,
    )
    body = spec_request(
        subject_identities=[
            {
                "identity_type": "email",
                "identity_value": "ana@example.com",
                "identity_format": "raw",
            }
        ]
    )
    post_request(controller, body)
    dsr = OpenDsrRequest.objects.get().request
    assert dsr.duplicate_of == original and dsr.subject == ana
    # The open original answers both: the controller sees its status, not "cancelled".
    status = controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}").json()
    assert status["request_status"] == "pending"
    assert (
        controller.delete(f"/opendsr/v2/requests/{body['subject_request_id']}").status_code == 202
    )
    original.refresh_from_db()
    assert original.status == RequestStatus.AWAITING_APPROVAL
    status = controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}").json()
    assert status["request_status"] == "cancelled"


# --- The OpenGDPR v1 names -----------------------------------------------------------------------


def test_the_v1_route_takes_a_request_without_regulation_and_answers_as_v1(controller, settings):
    settings.DSAR_DEFAULT_REGULATION = "ccpa"
    body = spec_request(api_version="1.0")
    del body["regulation"]
    response = post_request(controller, body, path="/opengdpr/v1/opengdpr_requests")
    assert response.status_code == 201, response.content
    assert set(response.json()) == {
        "controller_id",
        "expected_completion_time",
        "received_time",
        "encoded_request",
        "subject_request_id",
    }
    assert signature_verify(
        certificate_pem=published_certificate(controller, discovery="/opengdpr/v1/discovery"),
        body=response.content,
        signature=response["X-OpenGDPR-Signature"],
    )
    assert response["X-OpenGDPR-Processor-Domain"] == processor_domain()
    link = OpenDsrRequest.objects.select_related("request").get()
    assert link.api_version == "1.0"
    # Not the person's jurisdiction: the deadline must not tell whether they are known.
    assert link.request.regulation == "ccpa"
    status = controller.get(f"/opengdpr/v1/opengdpr_requests/{body['subject_request_id']}")
    assert status.json()["api_version"] == "1.0"
    assert status.json()["request_status"] == "pending"
    deleted = controller.delete(f"/opengdpr/v1/opengdpr_requests/{body['subject_request_id']}")
    assert deleted.status_code == 202
    assert deleted.json()["api_version"] == "1.0"


def test_the_v1_resource_name_works_under_v2_too(controller):
    body = spec_request()
    path = "/opendsr/v2/opengdpr_requests"
    assert post_request(controller, body, path=path).status_code == 201
    status = controller.get(f"{path}/{body['subject_request_id']}")
    assert status.status_code == 200
    assert status.json()["subject_request_id"] == body["subject_request_id"]
    assert status["X-OpenGDPR-Signature"] == status["X-OpenDSR-Signature"]


def test_a_v2_request_sent_to_v1_is_refused(controller):
    response = post_request(controller, spec_request(), path="/opengdpr/v1/opengdpr_requests")
    error = assert_opendsr_error(response, 400, domain="Validation", reason="unsupported")
    assert "api_version" in error["message"]


# --- Errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field_in_message", "reason"),
    [
        ({"subject_request_id": None}, "subject_request_id field is required", "required"),
        ({"subject_request_id": "A7551968-D5D6-44B2-9831-815AC9017798"}, "lowercase", "invalid"),
        ({"subject_request_id": str(uuid.uuid1())}, "UUID v4", "invalid"),
        ({"regulation": None}, "regulation field is required", "required"),
        ({"regulation": "lgpd"}, "regulation must be one of", "invalid"),
        ({"subject_request_type": "rectification"}, "subject_request_type", "invalid"),
        ({"submitted_time": "2018-10-02 15:00"}, "RFC 3339", "invalid"),
        ({"submitted_time": "2018-02-30T15:00:00Z"}, "not a valid date-time", "invalid"),
        ({"submitted_time": "2999-01-01T00:00:00Z"}, "in the future", "invalid"),
        ({"subject_identities": []}, "subject_identities", "invalid"),
        ({"api_version": "two"}, "api_version", "invalid"),
        ({"status_callback_urls": ["ftp://examplecontroller.com/cb"]}, "http", "invalid"),
        ({"status_callback_urls": "https://examplecontroller.com"}, "list", "invalid"),
        ({"extensions": ["nope"]}, "extensions", "invalid"),
        ({"property_id": "123"}, "Unknown fields: property_id", "invalid"),
    ],
)
def test_a_malformed_request_is_a_400_in_the_opendsr_shape_and_files_nothing(
    controller, change, field_in_message, reason
):
    body = spec_request()
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    response = post_request(controller, body)
    error = assert_opendsr_error(response, 400, domain="Validation", reason=reason)
    assert field_in_message in error["message"]
    assert response["Cache-Control"] == "no-store"
    assert not DataSubjectRequest.objects.exists()
    assert not OpenDsrRequest.objects.exists()


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        (
            {"identity_type": "email", "identity_value": "not-an-email", "identity_format": "raw"},
            "email",
        ),
        (
            {"identity_type": "email", "identity_value": "abc123", "identity_format": "sha256"},
            "sha256",
        ),
        (
            {
                "identity_type": "email",
                "identity_value": "x@example.com",
                "identity_format": "base64",
            },
            "identity_format",
        ),
        (
            {"identity_type": "email", "identity_value": "x@example.com"},
            "identity_format is required",
        ),
        (
            {"identity_type": "shoe_size", "identity_value": "44", "identity_format": "raw"},
            "not a supported identity type",
        ),
        (
            {"identity_type": "android_id", "identity_value": "a1b2", "identity_format": "raw"},
            "None of the identities",
        ),
    ],
)
def test_a_bad_identity_is_refused_without_repeating_its_value(controller, identity, expected):
    response = post_request(controller, spec_request(subject_identities=[identity]))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert expected in message
    assert identity["identity_value"] not in response.content.decode()
    assert not DataSubjectRequest.objects.exists()


def test_a_body_that_is_not_json_is_a_400(controller):
    response = controller.generic(
        "POST", "/opendsr/v2/requests", b"{not json", content_type="application/json"
    )
    assert_opendsr_error(response, 400, domain="Validation", reason="malformed")


def test_an_oversized_body_is_refused_before_it_is_parsed(controller, settings):
    settings.OPENDSR_MAX_BODY_BYTES = 1024
    body = spec_request(extensions={"example-processor.com": {"padding": "x" * 2000}})
    response = post_request(controller, body)
    assert_opendsr_error(response, 413, domain="Validation", reason="too_large")
    assert not DataSubjectRequest.objects.exists()


def test_a_subject_request_id_is_used_once_per_controller(controller, make_api):
    body = spec_request()
    assert post_request(controller, body).status_code == 201
    again = post_request(controller, body)
    error = assert_opendsr_error(again, 400, domain="Request", reason="conflict")
    assert error["message"] == "Subject request already exists."
    assert DataSubjectRequest.objects.count() == 1
    # Another controller's ids are its own.
    other = make_api("dsar:write", "dsar:verified", "dsar:read")
    assert post_request(other, body).status_code == 201


def test_an_unknown_or_malformed_id_is_a_404_or_a_400(controller):
    missing = controller.get(f"/opendsr/v2/requests/{uuid.uuid4()}")
    assert_opendsr_error(missing, 404, domain="Request", reason="not_found")
    malformed = controller.get("/opendsr/v2/requests/123")
    assert_opendsr_error(malformed, 400, domain="Validation", reason="invalid")


def test_a_wrong_method_is_a_405_in_the_opendsr_shape(controller):
    response = controller.put(f"/opendsr/v2/requests/{uuid.uuid4()}", {})
    assert_opendsr_error(response, 405, domain="Request", reason="method_not_allowed")


# --- Who may call --------------------------------------------------------------------------------


def test_a_caller_without_an_api_key_is_refused_with_401():
    response = post_request(APIClient(), spec_request())
    assert_opendsr_error(response, 401, domain="Authentication", reason="not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not DataSubjectRequest.objects.exists()


def test_a_key_that_cannot_vouch_for_the_subject_cannot_file(make_api):
    api = make_api("dsar:write", "dsar:read")
    response = post_request(api, spec_request())
    error = assert_opendsr_error(response, 403, domain="Authorization", reason="permission_denied")
    assert "dsar:verified" in error["message"]
    assert not DataSubjectRequest.objects.exists()


def test_following_a_request_needs_dsar_read_and_cancelling_needs_dsar_write(make_api):
    filer = make_api("dsar:write", "dsar:verified")
    body = spec_request()
    assert post_request(filer, body).status_code == 201
    path = f"/opendsr/v2/requests/{body['subject_request_id']}"
    assert_opendsr_error(filer.get(path), 403, domain="Authorization", reason="permission_denied")


def test_another_controller_cannot_see_or_cancel_a_request(controller, make_api):
    body = spec_request()
    post_request(controller, body)
    stranger = make_api("dsar:write", "dsar:verified", "dsar:read")
    path = f"/opendsr/v2/requests/{body['subject_request_id']}"
    assert_opendsr_error(stranger.get(path), 404, domain="Request", reason="not_found")
    assert_opendsr_error(stranger.delete(path), 404, domain="Request", reason="not_found")
    assert OpenDsrRequest.objects.get().request.status == RequestStatus.AWAITING_APPROVAL


def test_a_throttled_controller_gets_a_429_with_retry_after(controller, settings):
    settings.API_RATE_PER_MINUTE = 1
    body = spec_request()
    post_request(controller, body)
    # Two more calls: at most one can fall into a fresh one-minute window.
    responses = [
        controller.get(f"/opendsr/v2/requests/{body['subject_request_id']}") for _ in range(2)
    ]
    response = responses[-1]
    error = assert_opendsr_error(response, 429, domain="Request", reason="throttled")
    assert error["message"]
    assert int(response["Retry-After"]) >= 1
