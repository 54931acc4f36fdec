"""Privacy choices and requests in a real browser, against the live server and — for the
requests — a real Celery worker: switch a consent off and see the consent check answer no,
send GPC and see the notice, download a signed receipt, file an access request and watch it
complete, download the ZIP and look inside, file an erasure and get its certificate."""

from __future__ import annotations

import json
import time
import zipfile

import jwt
import pytest
from playwright.sync_api import expect

from consent.models import SALE_SHARING
from consent.selectors import consent_check
from dsar.models import DataSubjectRequest
from dsar.services import request_approve
from tests.e2e.test_portal import ANA, sign_in
from tests.factories import LogSourceFactory, PurposeFactory
from tests.portal.conftest import make_customer

pytestmark = pytest.mark.slow


def _allowed(purpose: str) -> bool:
    return consent_check(subject=f"email:{ANA}", purpose=purpose).result.allowed


def _wait_for_status(page, text: str, *, timeout: float = 90) -> None:
    """Reload the request page (it has no JavaScript polling) until the status reads
    ``text``."""
    deadline = time.monotonic() + timeout
    status = page.locator(".request-status")
    while time.monotonic() < deadline:
        if status.inner_text().strip() == text:
            return
        time.sleep(0.5)
        page.reload()
    raise AssertionError(f"the request did not reach {text!r}: {status.inner_text()!r}")


def test_a_customer_switches_a_consent_off_and_the_check_answers_no(
    page, screens, mailoutbox, transactional_db
):
    make_customer(ANA)
    PurposeFactory(
        slug="product-tips",
        name="Product tips by email",
        notices=["We send you tips about products you asked our assistant about."],
    )
    sign_in(page, screens, mailoutbox, ANA)
    page.get_by_role("link", name="Your privacy choices").click()
    switch = page.get_by_role("switch", name="Product tips by email")
    expect(switch).to_have_attribute("aria-checked", "false")
    screens.shoot(page, "privacy-choices")

    switch.click()
    expect(page.get_by_text("Turned on: Product tips by email.")).to_be_visible()
    expect(switch).to_have_attribute("aria-checked", "true")
    assert _allowed("product-tips")

    switch.click()
    expect(page.get_by_text("Turned off: Product tips by email.")).to_be_visible()
    expect(switch).to_have_attribute("aria-checked", "false")
    assert not _allowed("product-tips")
    screens.shoot(page, "privacy-choices-switched-off")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download").first.click()
    receipt = download_info.value.path().read_bytes()
    claims = jwt.decode(receipt, options={"verify_signature": False})
    assert claims["version"] == "KI-CR-v1.1.0"
    assert page.problems == [], page.problems


def test_a_browser_sending_gpc_sees_the_notice_and_is_opted_out(
    browser, live_server, screens, mailoutbox, transactional_db
):
    ana = make_customer(ANA)
    # A Californian: selling and sharing is on until they opt out (CCPA), so the signal
    # visibly changes the answer.
    type(ana).objects.filter(pk=ana.pk).update(jurisdiction="US-CA")
    context = browser.new_context(base_url=live_server.url, extra_http_headers={"Sec-GPC": "1"})
    page = context.new_page()
    page.goto("/portal/privacy-choices/do-not-sell/")
    expect(page.get_by_text("Opt-Out Preference Signal Honored")).to_be_visible()
    screens.shoot(page, "gpc-visitor")
    assert _allowed(SALE_SHARING)  # nobody is known yet: nothing to record

    sign_in(page, screens, mailoutbox, ANA)
    expect(page.get_by_text("Opt-Out Preference Signal Honored")).to_be_visible()
    page.get_by_role("link", name="Your privacy choices").click()
    expect(
        page.get_by_role("switch", name="Selling or sharing personal information")
    ).to_have_attribute("aria-checked", "false")
    expect(page.get_by_text("Global Privacy Control signal").first).to_be_visible()
    screens.shoot(page, "gpc-signed-in")
    assert not _allowed(SALE_SHARING)
    context.close()


def test_a_customer_gets_a_copy_and_then_has_everything_erased(
    page, screens, mailoutbox, transactional_db, workers
):
    workers.start()
    ana = make_customer(ANA)
    LogSourceFactory(system=ana.test_conversations[0].system, connector="builtin")
    sign_in(page, screens, mailoutbox, ANA)

    # Access: filed, carried out by the worker, downloaded.
    page.get_by_role("link", name="Your requests", exact=True).click()
    page.get_by_role("link", name="Make a new request").click()
    screens.shoot(page, "request-new")
    page.get_by_label("A copy of my information").check()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="A copy of my information")).to_be_visible()
    _wait_for_status(page, "Done")
    expect(page.locator("progress")).to_have_attribute("value", "1")
    screens.shoot(page, "access-done")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download your information (ZIP file)").click()
    archive = zipfile.ZipFile(download_info.value.path())
    assert "data.json" in archive.namelist()
    data = json.loads(archive.read("data.json"))
    assert data  # the report of what we hold
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"Your parcel was delivered yesterday." in everything
    assert b"You are chatting with an AI assistant." in everything

    # Erasure: told what stays, confirmed, approved by the DPO, certified.
    page.get_by_role("link", name="Your requests", exact=True).click()
    page.get_by_role("link", name="Make a new request").click()
    page.get_by_label("Delete my information").check()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="What we keep, and why")).to_be_visible()
    screens.shoot(page, "erasure-confirm")
    page.get_by_role("button", name="Yes, delete my information").click()
    expect(page.locator(".request-status")).to_have_text("Being checked by our privacy team")
    screens.shoot(page, "erasure-awaiting-approval")

    erasure = DataSubjectRequest.objects.get(type="erasure")
    request_approve(request=erasure, actor="user:dpo")
    _wait_for_status(page, "Done")
    # The customer is gone, so the page no longer shows them signed in.
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    screens.shoot(page, "erasure-done")
    page.get_by_role("link", name="See the certificate of erasure").click()
    expect(page.get_by_text(str(erasure.pk)).first).to_be_visible()
    screens.shoot(page, "erasure-certificate")
    assert not type(ana).objects.filter(pk=ana.pk).exists()
