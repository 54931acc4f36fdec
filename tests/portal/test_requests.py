"""Requests in the portal: filing each kind with its explanation, erasure told what stays,
following progress, downloading the export and the certificate, a visitor verifying by
code — and nobody reaching another customer's request.

The source tasks run through ``dsar.services.source_task_execute``, the service the Celery
task calls; the browser tests (tests/e2e) run them on a real worker."""

from __future__ import annotations

import io
import re
import uuid
import zipfile

import pytest
from django.test import Client, TestCase

from dsar.models import DataSubjectRequest, SourceTask
from dsar.services import request_approve, request_finalize, source_task_execute
from tests.factories import DataSubjectRequestFactory, LegalHoldFactory, LogSourceFactory
from tests.portal.conftest import ANA_EMAIL
from tests.portal.test_pages import assert_safe_and_accessible

pytestmark = pytest.mark.django_db

DSAR_CODE = re.compile(r"^\s{4}(\d{6})\s*$", re.MULTILINE)


@pytest.fixture
def source(ana):
    return LogSourceFactory(system=ana.test_conversations[0].system, connector="builtin")


def _run_tasks(dsr: DataSubjectRequest) -> None:
    """What the worker does: each source task, then the finalization."""
    for task in SourceTask.objects.filter(request=dsr):
        source_task_execute(task_id=task.pk)
    request_finalize(request_id=dsr.pk)


def _file(client, **data):
    return client.post("/portal/requests/new/", data)


def test_the_new_request_page_explains_every_kind_of_request(ana_client):
    visitor = Client()
    for who in (ana_client, visitor):
        response = who.get("/portal/requests/new/")
        assert response.status_code == 200
        assert_safe_and_accessible(response)
        page = response.content.decode()
        for sentence in (
            "Get a copy of your information",
            "machine-readable file",
            "Delete your information",
            "Correct your information",
            "Pause the use of your information",
            "Object to us using your information",
            "Do not sell or share your personal information.",
            "Limit the use of your sensitive personal information",
        ):
            assert sentence in page
    assert b"Your email address or phone number" in visitor.get("/portal/requests/new/").content
    assert (
        b"Your email address or phone number" not in ana_client.get("/portal/requests/new/").content
    )


def test_an_access_request_completes_and_the_export_downloads(ana_client, ana, source):
    response = _file(ana_client, type="access")
    assert response.status_code == 302
    dsr = DataSubjectRequest.objects.get()
    assert response["Location"] == f"/portal/requests/{dsr.pk}/"
    assert (dsr.subject, dsr.channel, dsr.status) == (ana, "portal", "in_progress")

    page = ana_client.get(response["Location"])
    assert_safe_and_accessible(page)
    assert b"We are working on it" in page.content
    assert b'<progress id="progress-' in page.content
    assert b'max="1" value="0"' in page.content

    _run_tasks(dsr)
    page = ana_client.get(f"/portal/requests/{dsr.pk}/").content.decode()
    assert "Done" in page
    assert 'max="1" value="1"' in page
    assert f"/portal/requests/{dsr.pk}/export/" in page

    handover = ana_client.get(f"/portal/requests/{dsr.pk}/export/")
    assert handover.status_code == 302
    download = ana_client.get(handover["Location"])
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert "data.json" in archive.namelist()
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"Your parcel was delivered yesterday." in everything


def test_an_erasure_says_what_is_kept_before_it_is_confirmed(ana_client, ana, source):
    LegalHoldFactory(subject=ana, reason="legal_claims")
    response = _file(ana_client, type="erasure")
    assert response.status_code == 200
    page = response.content.decode()
    assert "What we keep, and why" in page
    assert "GDPR Art. 17(3)(e)" in page
    assert "Yes, delete my information" in page
    assert not DataSubjectRequest.objects.exists()
    assert_safe_and_accessible(response)


def test_a_hold_on_a_log_source_is_named_with_its_system_before_confirming(
    ana_client, ana, source
):
    LegalHoldFactory(source=source, reason="legal_obligation")
    page = _file(ana_client, type="erasure").content.decode()
    assert f"Your conversations with {source.system.name}" in page
    assert "17(3)(b)" in page


def test_a_confirmed_erasure_ends_with_a_certificate_the_customer_can_still_reach(
    ana_client, ana, source
):
    response = _file(ana_client, type="erasure", confirm="True")
    dsr = DataSubjectRequest.objects.get()
    assert dsr.status == "awaiting_approval"  # a DPO approves erasures (settings)
    assert b"Being checked by our privacy team" in ana_client.get(response["Location"]).content

    request_approve(request=dsr, actor="user:dpo")
    _run_tasks(dsr)
    dsr.refresh_from_db()
    assert dsr.status == "completed"

    # The customer no longer exists to be signed in as; this browser still has the request.
    page = ana_client.get(f"/portal/requests/{dsr.pk}/")
    assert page.status_code == 200
    assert "portal_subject_id" not in ana_client.session
    assert f"/portal/requests/{dsr.pk}/certificate/" in page.content.decode()
    handover = ana_client.get(f"/portal/requests/{dsr.pk}/certificate/")
    certificate = ana_client.get(handover["Location"])
    assert certificate.status_code == 200
    body = certificate.json()
    assert (body["certificate"], body["request_id"], body["complete"]) == (
        "erasure",
        str(dsr.pk),
        True,
    )
    assert body["totals"]["records_before"] == 4 and body["totals"]["records_after"] == 0


def test_a_correction_needs_to_say_what_is_wrong(ana_client, ana):
    response = _file(ana_client, type="rectification", statement="  ")
    assert response.status_code == 400
    assert b"Tell us what is wrong" in response.content
    assert not DataSubjectRequest.objects.exists()
    _file(ana_client, type="rectification", statement="My name is Ana, not Anna.")
    dsr = DataSubjectRequest.objects.get()
    assert dsr.details == {"corrections": [], "statement": "My name is Ana, not Anna."}


def test_a_visitor_files_a_request_and_confirms_it_with_the_emailed_code(
    client, mailoutbox, ana, source
):
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = _file(client, type="access", identity=ANA_EMAIL)
    dsr = DataSubjectRequest.objects.get()
    assert dsr.status == "awaiting_verification"
    page = client.get(response["Location"]).content.decode()
    assert "Confirm it is you" in page

    codes = [DSAR_CODE.search(m.body) for m in mailoutbox if m.to == [ANA_EMAIL]]
    code = next(match.group(1) for match in codes if match)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    client.post(f"/portal/requests/{dsr.pk}/verify/", {"code": wrong})
    dsr.refresh_from_db()
    assert dsr.status == "awaiting_verification"
    client.post(f"/portal/requests/{dsr.pk}/verify/", {"code": code})
    dsr.refresh_from_db()
    assert dsr.verified_at is not None and dsr.status == "in_progress"


def test_the_request_list_shows_only_the_customers_own(ana_client, ana, bo):
    own = DataSubjectRequestFactory(subject=ana)
    theirs = DataSubjectRequestFactory(subject=bo)
    page = ana_client.get("/portal/requests/").content.decode()
    assert f"/portal/requests/{own.pk}/" in page
    assert f"/portal/requests/{theirs.pk}/" not in page


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("get", "export/"),
        ("get", "certificate/"),
        ("post", "verify/"),
        ("post", "new-code/"),
    ],
)
def test_another_customers_request_is_not_found(ana_client, bo, method, suffix):
    theirs = DataSubjectRequestFactory(
        subject=bo, status="awaiting_verification", export_path="var/nowhere.zip"
    )
    for request_id in (theirs.pk, uuid.uuid4()):
        response = getattr(ana_client, method)(f"/portal/requests/{request_id}/{suffix}")
        assert response.status_code == 404


def test_a_visitor_cannot_open_a_request_filed_in_another_browser(client, ana, source):
    other_browser = Client()
    _file(other_browser, type="opt_out_sale", identity=ANA_EMAIL)
    dsr = DataSubjectRequest.objects.get()
    assert other_browser.get(f"/portal/requests/{dsr.pk}/").status_code == 200
    assert client.get(f"/portal/requests/{dsr.pk}/").status_code == 404


def test_signing_out_forgets_the_requests_of_this_browser(ana_client, ana, source):
    _file(ana_client, type="opt_out_sale")
    dsr = DataSubjectRequest.objects.get()
    ana_client.post("/portal/sign-out/")
    assert ana_client.get(f"/portal/requests/{dsr.pk}/").status_code == 404
