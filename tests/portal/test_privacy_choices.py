"""Privacy choices in the portal: a switch per purpose that the consent check follows, the
two CCPA links, the Global Privacy Control notice, the history and its signed receipts."""

from __future__ import annotations

import uuid

import jwt
import pytest
from django.test import TestCase

from consent.models import SALE_SHARING, ConsentEvent
from consent.selectors import consent_check
from dsar.models import DataSubjectRequest
from tests.factories import PurposeFactory
from tests.portal.conftest import ANA_EMAIL
from tests.portal.test_pages import assert_safe_and_accessible
from tests.portal.test_sign_in import CSRF_INPUT

pytestmark = pytest.mark.django_db

PAGE = "/portal/privacy-choices/"


@pytest.fixture
def tips(db):
    return PurposeFactory(
        slug="product-tips",
        name="Product tips by email",
        notices=["We send you tips about products you asked our assistant about."],
    )


def _allowed(subject, slug: str, *, gpc: bool = False) -> bool:
    return consent_check(subject=f"email:{ANA_EMAIL}", purpose=slug, gpc=gpc).result.allowed


def _switch(client, slug: str, *, allow: bool):
    # The consent check reads through a cache that writes invalidate after commit: run the
    # on-commit callbacks as a real commit would.
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(
            f"/portal/privacy-choices/purposes/{slug}/", {"allow": "yes" if allow else "no"}
        )


def test_the_page_shows_every_purpose_with_its_notice_and_a_switch(ana_client, tips):
    response = ana_client.get(PAGE)
    assert response.status_code == 200
    assert_safe_and_accessible(response)
    page = response.content.decode()
    assert "Product tips by email" in page
    assert "We send you tips about products you asked our assistant about." in page
    assert 'role="switch"' in page
    assert page.count('role="switch"') == 3  # tips and the two CCPA opt-outs
    assert "Do Not Sell or Share My Personal Information" in page
    assert "Limit the Use of My Sensitive Personal Information" in page


def test_switching_a_consent_on_and_off_is_one_click_each_and_the_check_follows(
    ana_client, ana, tips
):
    assert not _allowed(ana, "product-tips")  # EU default: off until granted
    response = _switch(ana_client, "product-tips", allow=True)
    assert response.status_code == 302
    assert response["Location"] == f"{PAGE}#purpose-product-tips"
    assert _allowed(ana, "product-tips")
    assert 'aria-checked="true"' in ana_client.get(PAGE).content.decode()

    _switch(ana_client, "product-tips", allow=False)
    assert not _allowed(ana, "product-tips")
    actions = list(
        ConsentEvent.objects.filter(subject=ana, purpose=tips)
        .order_by("id")
        .values_list("action", "source")
    )
    assert actions == [("grant", "portal"), ("withdraw", "portal")]


def test_the_ccpa_switches_record_an_opt_out_and_an_opt_in(ana_client, ana):
    _switch(ana_client, SALE_SHARING, allow=False)
    assert not _allowed(ana, SALE_SHARING)
    _switch(ana_client, SALE_SHARING, allow=True)
    actions = list(
        ConsentEvent.objects.filter(subject=ana, purpose__slug=SALE_SHARING)
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["opt_out", "opt_in"]


def test_a_purpose_that_is_necessary_has_no_switch_and_refuses_one(ana_client, ana):
    PurposeFactory(slug="answering-you", name="Answering you", lawful_basis="contract")
    page = ana_client.get(PAGE).content.decode()
    assert "Always on" in page
    response = _switch(ana_client, "answering-you", allow=False)
    assert response.status_code == 302
    assert not ConsentEvent.objects.filter(purpose__slug="answering-you").exists()
    assert "has no switch" in ana_client.get(PAGE).content.decode()


def test_an_unknown_purpose_is_not_found(ana_client):
    assert _switch(ana_client, "no-such-purpose", allow=False).status_code == 404


def test_switching_needs_a_signed_in_customer(client, ana, tips):
    response = _switch(client, "product-tips", allow=True)
    assert response["Location"] == "/portal/sign-in/"
    assert not ConsentEvent.objects.exists()


def test_the_switch_needs_a_post(ana_client, tips):
    assert ana_client.get("/portal/privacy-choices/purposes/product-tips/").status_code == 405


# --- Global Privacy Control -----------------------------------------------------------------


def test_a_gpc_signal_shows_the_notice_and_is_recorded_once(ana_client, ana):
    with TestCase.captureOnCommitCallbacks(execute=True):
        first = ana_client.get(PAGE, HTTP_SEC_GPC="1")
    assert b"Opt-Out Preference Signal Honored" in first.content
    ana_client.get("/", HTTP_SEC_GPC="1")
    events = ConsentEvent.objects.filter(subject=ana, purpose__slug=SALE_SHARING)
    assert list(events.values_list("action", "source")) == [("opt_out", "gpc")]
    assert not _allowed(ana, SALE_SHARING)


def test_without_the_signal_there_is_no_notice_and_nothing_is_recorded(ana_client, ana):
    for header in ({}, {"HTTP_SEC_GPC": "0"}, {"HTTP_SEC_GPC": "yes"}):
        response = ana_client.get(PAGE, **header)
        assert response.status_code == 200
        assert b"Opt-Out Preference Signal Honored" not in response.content
    assert not ConsentEvent.objects.exists()


def test_a_visitor_who_is_not_signed_in_sees_the_notice_too(client, db):
    assert b"Opt-Out Preference Signal Honored" in client.get("/", HTTP_SEC_GPC="1").content


# --- History and receipts ---------------------------------------------------------------------


def test_the_history_lists_each_choice_with_a_receipt_to_download(ana_client, ana, tips):
    _switch(ana_client, "product-tips", allow=True)
    event = ConsentEvent.objects.get(subject=ana)
    page = ana_client.get(PAGE).content.decode()
    assert f"/portal/privacy-choices/receipts/{event.receipt_id}/" in page

    response = ana_client.get(f"/portal/privacy-choices/receipts/{event.receipt_id}/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/jwt"
    assert "attachment" in response["Content-Disposition"]
    claims = jwt.decode(response.content, options={"verify_signature": False})
    assert claims["version"] == "KI-CR-v1.1.0"
    assert claims["consentReceiptID"] == str(event.receipt_id)


def test_another_customers_receipt_is_not_found(ana_client, bo, tips):
    from consent.services import consent_grant

    theirs = consent_grant(subject=bo, purpose=tips, source="api", actor="test")
    response = ana_client.get(f"/portal/privacy-choices/receipts/{theirs.receipt_id}/")
    assert response.status_code == 404
    random_id = uuid.uuid4()
    assert ana_client.get(f"/portal/privacy-choices/receipts/{random_id}/").status_code == 404


# --- The two CCPA links ---------------------------------------------------------------------


def test_every_page_links_the_two_ccpa_choices(client, db):
    page = client.get("/").content.decode()
    assert 'href="/portal/privacy-choices/do-not-sell/"' in page
    assert 'href="/portal/privacy-choices/limit-sensitive/"' in page


def test_a_signed_in_customer_opts_out_with_one_click(ana_client, ana):
    page = ana_client.get("/portal/privacy-choices/do-not-sell/")
    assert_safe_and_accessible(page)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = ana_client.post("/portal/privacy-choices/do-not-sell/")
    assert response.status_code == 302
    assert not _allowed(ana, SALE_SHARING)


def test_a_visitor_opts_out_without_signing_in_or_a_code(client, mailoutbox, ana):
    page = client.get("/portal/privacy-choices/limit-sensitive/")
    assert page.status_code == 200
    assert_safe_and_accessible(page)
    response = client.post("/portal/privacy-choices/limit-sensitive/", {"identity": ANA_EMAIL})
    assert response.status_code == 302
    dsr = DataSubjectRequest.objects.get()
    assert (dsr.type, dsr.subject_id, dsr.channel) == ("limit_sensitive", ana.pk, "portal")
    assert dsr.verification_method == "not_required"
    assert not [m for m in mailoutbox if "code" in m.subject.lower()]


def test_a_visitor_with_an_unknown_address_gets_the_same_answer(client, ana):
    known = client.post("/portal/privacy-choices/do-not-sell/", {"identity": ANA_EMAIL})
    known_page = client.get(known["Location"]).content
    client.cookies.clear()
    unknown = client.post("/portal/privacy-choices/do-not-sell/", {"identity": "x@example.com"})
    unknown_page = client.get(unknown["Location"]).content
    assert known["Location"] == unknown["Location"]
    strip = CSRF_INPUT.sub
    assert strip(b"", known_page) == strip(b"", unknown_page)


def test_an_unknown_ccpa_link_is_not_found(client, db):
    assert client.get("/portal/privacy-choices/sell-everything/").status_code == 404
