"""Every form of the portal refuses a post that does not carry the page's CSRF token."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from compliance.models import AnswerFlag, MessageRole
from tests.portal.conftest import ANA_EMAIL, code_from_outbox

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _token(response) -> str:
    match = TOKEN.search(response.content.decode())
    assert match, "the page has no CSRF token"
    return match.group(1)


@pytest.fixture
def strict():
    return Client(enforce_csrf_checks=True)


def test_asking_for_a_code_without_the_token_is_refused(strict, mailoutbox, ana):
    response = strict.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    assert response.status_code == 403
    assert b"Please try again" in response.content
    assert mailoutbox == []


def test_the_whole_sign_in_works_with_the_tokens_from_the_pages(strict, mailoutbox, ana):
    token = _token(strict.get("/portal/sign-in/"))
    response = strict.post(
        "/portal/sign-in/", {"identity": ANA_EMAIL, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    code = code_from_outbox(mailoutbox)

    assert strict.post("/portal/sign-in/code/", {"code": code}).status_code == 403
    assert "portal_subject_id" not in strict.session
    token = _token(strict.get("/portal/sign-in/code/"))
    response = strict.post("/portal/sign-in/code/", {"code": code, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert strict.session["portal_subject_id"] == str(ana.pk)


@pytest.fixture
def strict_ana(strict, mailoutbox, ana):
    strict.post(
        "/portal/sign-in/",
        {"identity": ANA_EMAIL, "csrfmiddlewaretoken": _token(strict.get("/portal/sign-in/"))},
    )
    strict.post(
        "/portal/sign-in/code/",
        {
            "code": code_from_outbox(mailoutbox),
            "csrfmiddlewaretoken": _token(strict.get("/portal/sign-in/code/")),
        },
    )
    assert strict.session["portal_subject_id"] == str(ana.pk)
    return strict


def test_reporting_an_answer_without_the_token_is_refused(strict_ana, ana):
    conversation = ana.test_conversations[0]
    answer = conversation.messages.get(role=MessageRole.ASSISTANT)
    url = f"/portal/conversations/{conversation.pk}/answers/{answer.pk}/report/"
    data = {f"m{answer.pk}-category": "wrong"}
    assert strict_ana.post(url, data).status_code == 403
    assert not AnswerFlag.objects.exists()
    token = _token(strict_ana.get(f"/portal/conversations/{conversation.pk}/"))
    assert strict_ana.post(url, {**data, "csrfmiddlewaretoken": token}).status_code == 302
    assert AnswerFlag.objects.count() == 1


def test_signing_out_without_the_token_is_refused(strict_ana):
    assert strict_ana.post("/portal/sign-out/").status_code == 403
    assert "portal_subject_id" in strict_ana.session


def test_asking_for_a_new_code_without_the_token_is_refused(strict, mailoutbox, ana):
    strict.post(
        "/portal/sign-in/",
        {"identity": ANA_EMAIL, "csrfmiddlewaretoken": _token(strict.get("/portal/sign-in/"))},
    )
    assert strict.post("/portal/sign-in/new-code/").status_code == 403
    assert len(mailoutbox) == 1


def test_a_privacy_switch_without_the_token_is_refused(strict_ana, ana):
    from consent.models import SALE_SHARING, ConsentEvent

    url = f"/portal/privacy-choices/purposes/{SALE_SHARING}/"
    assert strict_ana.post(url, {"allow": "no"}).status_code == 403
    assert not ConsentEvent.objects.exists()
    token = _token(strict_ana.get("/portal/privacy-choices/"))
    assert strict_ana.post(url, {"allow": "no", "csrfmiddlewaretoken": token}).status_code == 302
    assert ConsentEvent.objects.count() == 1


def test_filing_a_request_or_an_opt_out_without_the_token_is_refused(strict, ana):
    from dsar.models import DataSubjectRequest

    assert (
        strict.post("/portal/requests/new/", {"type": "access", "identity": ANA_EMAIL})
    ).status_code == 403
    assert (
        strict.post("/portal/privacy-choices/do-not-sell/", {"identity": ANA_EMAIL})
    ).status_code == 403
    assert not DataSubjectRequest.objects.exists()
