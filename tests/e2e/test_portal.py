"""The portal in a real browser: a customer signs in with the code from their email, sees
their data, opens a conversation and reports an AI answer; a DPO finds the report in the
admin review queue and decides on it; the customer sees the decision."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from compliance.models import AnswerFlag
from tests.portal.conftest import code_from_outbox, make_customer

pytestmark = pytest.mark.slow

ANA = "ana.e2e@example.com"


def sign_in(page, screens, mailoutbox, email: str) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("what our AI assistants know")
    screens.shoot(page, "landing")
    page.get_by_label("Your email address or phone number").fill(email)
    page.get_by_role("button", name="Send me a code").click()
    expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    assert email not in page.url
    screens.shoot(page, "code")
    page.get_by_label("Sign-in code").fill(code_from_outbox(mailoutbox))
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Your data", exact=True)).to_be_visible()


def report_first_answer(page, screens) -> None:
    page.get_by_role("link", name="Your conversations", exact=True).click()
    expect(page.get_by_role("heading", name="Your conversations")).to_be_visible()
    screens.shoot(page, "conversations")
    page.get_by_role("link", name=re.compile("^Open the conversation")).first.click()
    expect(page.get_by_text("Your parcel was delivered yesterday.")).to_be_visible()
    screens.shoot(page, "conversation")
    page.get_by_text("Report this answer").click()
    page.get_by_label("Wrong").check()
    page.get_by_label("Tell us more").fill("The parcel never arrived.")
    screens.shoot(page, "report-form")
    page.get_by_role("button", name="Send report").click()
    expect(page.get_by_text("A person will look at this answer")).to_be_visible()
    expect(page.get_by_text("You reported this answer as “wrong”.")).to_be_visible()
    screens.shoot(page, "reported")


def test_a_customer_reports_an_answer_and_a_dpo_decides_on_it(
    page, browser, live_server, screens, mailoutbox, transactional_db
):
    ana = make_customer(ANA)
    make_customer("bo.e2e@example.com", system_slug="travel-assistant")

    sign_in(page, screens, mailoutbox, ANA)
    expect(page.get_by_role("heading", name="Shop Assistant")).to_be_visible()
    expect(page.get_by_text("You are chatting with an AI assistant.")).to_be_visible()
    expect(page.get_by_text("Notice version 1, shown in 2 conversations.")).to_be_visible()
    expect(page.get_by_text("Travel Assistant")).to_have_count(0)
    screens.shoot(page, "home")

    report_first_answer(page, screens)
    flag = AnswerFlag.objects.get()
    assert flag.subject_id == ana.pk and flag.category == "wrong"
    assert page.problems == [], page.problems  # no CSP violation, no script error

    get_user_model().objects.create_superuser("dpo-e2e", password="dpo-e2e-password")
    admin = browser.new_context(base_url=live_server.url).new_page()
    admin.goto("/admin/login/?next=/admin/compliance/answerflag/")
    admin.get_by_label("Username").fill("dpo-e2e")
    admin.get_by_label("Password").fill("dpo-e2e-password")
    admin.get_by_role("button", name="Log in").click()
    expect(admin.get_by_role("link", name=f"{flag.message.conversation_id} #")).to_be_visible()
    expect(admin.locator("#result_list")).to_contain_text("Shop Assistant")
    screens.shoot(admin, "admin-queue")
    admin.locator(f"input[name='_selected_action'][value='{flag.pk}']").check()
    admin.locator("select[name='action']").select_option("mark_rectification")
    admin.get_by_role("button", name="Go").click()
    expect(admin.get_by_text("1 reports updated.")).to_be_visible()
    screens.shoot(admin, "admin-decided")
    admin.context.close()

    page.reload()
    expect(page.get_by_text("we corrected the information")).to_be_visible()
    screens.shoot(page, "customer-sees-decision")


def test_the_portal_works_without_javascript(
    page_without_js, screens, mailoutbox, transactional_db
):
    make_customer(ANA)
    page = page_without_js
    sign_in(page, screens, mailoutbox, ANA)
    report_first_answer(page, screens)
    assert AnswerFlag.objects.count() == 1
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto("/portal/conversations/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screens.shoot(page, "signed-out")


def test_the_skip_link_is_the_first_stop_for_the_keyboard(page, screens, transactional_db):
    page.goto("/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    screens.shoot(page, "skip-link-focused")
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    # The focus ring is drawn: the outline is not "none" on a focused control.
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_the_other_customers_conversation_is_not_found_in_the_browser(
    page, screens, mailoutbox, transactional_db
):
    make_customer(ANA)
    bo = make_customer("bo.e2e@example.com", system_slug="travel-assistant")
    sign_in(page, screens, mailoutbox, ANA)
    response = page.goto(f"/portal/conversations/{bo.test_conversations[0].pk}/")
    assert response.status == 404
    expect(page.get_by_text("Where is my parcel? (bo.e2e@example.com)")).to_have_count(0)
