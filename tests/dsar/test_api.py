"""The requests API: scopes, who may see what, the same answer for unknown people, and the
signed download links."""

from __future__ import annotations

import re
import time

import pytest
from django.core import signing

from dsar.links import EXPORT_SALT, certificate_url, download_url
from dsar.models import DataSubjectRequest, RequestStatus, SourceTask
from tests.dsar.support import ANA_EMAIL, committed, run_all
from tests.factories import LogSourceFactory, SubjectFactory, SystemFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/requests/"


@pytest.fixture
def writer(make_api):
    return make_api("dsar:write", "dsar:read", "dsar:verified")


def create(api, **body):
    body.setdefault("type", "access")
    body.setdefault("identity", {"email": ANA_EMAIL})
    with committed():
        return api.post(URL, body, format="json")


def test_it_files_a_request_and_answers_202(ana, writer):
    response = create(writer)
    assert response.status_code == 202, response.json()
    body = response.json()
    assert set(body) == {"id", "type", "status", "duplicate", "received_at"}
    dsr = DataSubjectRequest.objects.get(pk=body["id"])
    assert dsr.subject == ana
    assert dsr.filed_by == writer.api_client
    assert dsr.channel == "api"


def test_it_refuses_a_key_without_the_write_scope(ana, make_api):
    response = create(make_api("dsar:read"))
    assert response.status_code == 403
    assert DataSubjectRequest.objects.count() == 0


def test_it_refuses_a_request_without_a_key(ana, client):
    response = client.post(URL, {"type": "access"}, content_type="application/json")
    assert response.status_code == 401


def test_an_identity_matching_nobody_gets_the_same_answer_as_one_that_matches(ana, writer):
    LogSourceFactory()
    known = create(writer).json()
    unknown_response = create(writer, identity={"email": "nobody@example.com"})
    unknown = unknown_response.json()
    assert unknown_response.status_code == 202
    for body in (known, unknown):
        body.pop("id")
        body.pop("received_at")
    assert known == unknown


def test_an_unknown_request_type_is_a_400_naming_the_field(writer):
    response = create(writer, type="forget_me_maybe")
    assert response.status_code == 400
    assert response.json()["error"]["errors"][0]["field"] == "type"
    assert DataSubjectRequest.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"type": "access", "identity": {"email": "not an email"}},
        {"type": "access", "identity": {}},
        {"type": "access", "identity": {"email": ANA_EMAIL, "phone": "+14155550123"}},
        {"type": "access", "identity": {"email": ANA_EMAIL}, "colour": "blue"},
        {"type": "access", "identity": {"email": ANA_EMAIL}, "agent": {"name": "A"}},
        {"type": "rectification", "identity": {"email": ANA_EMAIL}},
        {"type": "access", "identity": {"email": ANA_EMAIL}, "details": {"statement": "x"}},
    ],
)
def test_bad_input_is_a_400_and_writes_nothing(ana, writer, body):
    with committed():
        response = writer.post(URL, body, format="json")
    assert response.status_code == 400, response.json()
    assert DataSubjectRequest.objects.count() == 0


def test_a_client_without_the_verified_scope_files_requests_that_wait_for_the_code(
    ana, make_api, mailoutbox
):
    api = make_api("dsar:write", "dsar:read")
    body = create(api).json()
    assert body["status"] == RequestStatus.AWAITING_VERIFICATION
    code = re.search(r"^\s+(\d{6})\s*$", mailoutbox[-1].body, re.MULTILINE).group(1)
    wrong = api.post(f"{URL}{body['id']}/verify/", {"code": "abc"}, format="json")
    assert wrong.status_code == 400
    with committed():
        right = api.post(f"{URL}{body['id']}/verify/", {"code": code}, format="json")
    assert right.status_code == 200
    assert right.json()["status"] == RequestStatus.IN_PROGRESS


def test_the_detail_shows_state_progress_and_deadline(ana, writer):
    LogSourceFactory()
    LogSourceFactory()
    created = create(writer).json()
    response = writer.get(f"{URL}{created['id']}/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "in_progress"
    assert body["progress"] == {
        "sources_total": 2,
        "sources_done": 0,
        "sources_failed": 0,
        "records_found": 0,
    }
    assert body["due_at"] and body["download"] is None
    assert "identity_value" not in body and ANA_EMAIL not in str(body)


def test_the_detail_needs_the_read_scope(ana, writer, make_api):
    created = create(writer).json()
    response = make_api("dsar:write").get(f"{URL}{created['id']}/")
    assert response.status_code == 403


def test_a_client_bound_to_a_system_cannot_see_another_client_s_request(ana, make_api):
    mine = make_api("dsar:write", "dsar:read", system=SystemFactory())
    theirs = make_api("dsar:write", "dsar:read", system=SystemFactory())
    created = create(theirs).json()
    assert mine.get(f"{URL}{created['id']}/").status_code == 404
    assert mine.post(f"{URL}{created['id']}/cancel/").status_code == 404
    assert mine.get(URL).json()["results"] == []
    assert theirs.get(f"{URL}{created['id']}/").status_code == 200


def test_an_unbound_client_sees_every_request(ana, make_api):
    bound = make_api("dsar:write", system=SystemFactory())
    created = create(bound).json()
    back_office = make_api("dsar:read")
    assert back_office.get(f"{URL}{created['id']}/").status_code == 200


def test_a_waiting_request_can_be_cancelled_but_one_in_progress_cannot(ana, make_api, writer):
    waiting = create(make_api("dsar:write", "dsar:read")).json()
    LogSourceFactory()
    running = create(writer, type="portability").json()
    response = writer.post(f"{URL}{waiting['id']}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert writer.post(f"{URL}{running['id']}/cancel/").status_code == 409


def test_a_second_request_of_the_same_type_is_flagged_as_a_duplicate(ana, writer):
    create(writer)
    second = create(writer).json()
    assert second["duplicate"] is True
    assert second["status"] == "cancelled"


# --- download links --------------------------------------------------------------------------


@pytest.fixture
def completed_access(estate, writer):
    created = create(writer).json()
    dsr = DataSubjectRequest.objects.get(pk=created["id"])
    run_all(dsr)
    dsr.refresh_from_db()
    return dsr


def test_the_signed_link_downloads_the_package_without_an_api_key(completed_access, writer, client):
    body = writer.get(f"{URL}{completed_access.pk}/").json()
    assert body["download"]["sha256"] == completed_access.export_sha256
    response = client.get(body["download"]["url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Cache-Control"] == "no-store"
    content = b"".join(response.streaming_content)
    assert content[:2] == b"PK"


def test_a_link_for_another_subject_s_request_does_not_work(completed_access, client):
    bob = SubjectFactory(identities={"email": "bob2@example.com"})
    with committed():
        from dsar import services

        other = services.request_create(
            type="access",
            identity={"email": "bob2@example.com"},
            channel="api",
            actor="t",
            pre_verified=True,
        )
    assert other.subject == bob
    foreign_token = download_url(other).split("token=")[1]
    response = client.get(f"{URL}{completed_access.pk}/download/?token={foreign_token}")
    assert response.status_code == 404


def test_a_tampered_or_missing_token_does_not_work(completed_access, client):
    url = download_url(completed_access)
    assert client.get(url[:-3] + "abc").status_code == 404
    assert client.get(f"{URL}{completed_access.pk}/download/").status_code == 404


def test_an_expired_link_does_not_work(completed_access, client, settings):
    class EightDaysAgo(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time()) - 8 * 86400)

    token = EightDaysAgo(salt=EXPORT_SALT).sign_object(
        {"r": str(completed_access.pk), "s": completed_access.subject_ref}
    )
    assert settings.DSAR_EXPORT_LINK_DAYS == 7
    assert client.get(f"{URL}{completed_access.pk}/download/?token={token}").status_code == 404


def test_a_deleted_package_is_gone(completed_access, client):
    from dsar import services

    url = download_url(completed_access)
    DataSubjectRequest.objects.filter(pk=completed_access.pk).update(
        export_expires_at=completed_access.completed_at
    )
    services.exports_purge_expired()
    assert client.get(url).status_code == 410


def test_the_erasure_certificate_is_served_as_json_and_as_a_page(estate, writer, client):
    created = create(writer, type="erasure").json()
    dsr = DataSubjectRequest.objects.get(pk=created["id"])
    from dsar import services

    with committed():
        services.request_approve(request=dsr, actor="user:1")
    assert SourceTask.objects.filter(request=dsr).count() == 3
    run_all(dsr)
    url = writer.get(f"{URL}{dsr.pk}/").json()["certificate_url"]
    response = client.get(url)
    assert response.status_code == 200
    assert response.json()["totals"]["records_after"] == 0
    page = client.get(url + "&as=html")
    assert page.status_code == 200
    assert "Certificate of erasure" in page.content.decode()
    assert client.get(certificate_url(dsr)[:-2] + "xx").status_code == 404
