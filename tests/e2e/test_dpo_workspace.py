"""The DPO workspace in a real browser, against the live server and a real Celery worker: a
DPO signs in to the admin, filters the overdue requests, approves an erasure, sees it carried
out on the request's page, and reads the dashboard's charts. Screenshots go to
var/screenshots/ like the portal's."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from compliance.models import Message, MessageRole
from dsar import services
from dsar.models import DataSubjectRequest
from tests.factories import (
    ConversationFactory,
    LogSourceFactory,
    MessageFactory,
    StaffUserFactory,
    SubjectFactory,
    SystemFactory,
)

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"


def _wait_for(check, *, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _erasure_overdue(email: str) -> DataSubjectRequest:
    dsr = services.request_create(
        type="erasure",
        identity={"email": email},
        channel="email",
        actor="staff",
        pre_verified=True,
    )
    # Received six weeks ago and never approved: past its one-month deadline.
    received = timezone.now() - timedelta(days=42)
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(
        received_at=received, due_at=received + timedelta(days=30)
    )
    return dsr


def test_a_dpo_approves_an_overdue_erasure_and_reads_the_dashboard(
    page, screens, transactional_db, workers
):
    workers.start()
    # Django's admin pages declare no icon, so the browser asks for /favicon.ico and gets
    # a 404 (not a problem of these pages; see docs/workspace.md).
    page.on(
        "console",
        lambda msg: (
            page.problems.remove(msg.text)
            if msg.location.get("url", "").endswith("/favicon.ico") and msg.text in page.problems
            else None
        ),
    )
    StaffUserFactory(username="dpo", password=PASSWORD)
    system = SystemFactory(slug="shop-assistant", name="Shop assistant")
    LogSourceFactory(system=system, name="built-in store", connector="builtin")
    mia = SubjectFactory(identities={"email": "mia@example.com"})
    conversation = ConversationFactory(system=system, subject=mia)
    for sequence, role in enumerate([MessageRole.CUSTOMER, MessageRole.ASSISTANT]):
        MessageFactory(conversation=conversation, sequence=sequence, role=role)
    overdue = _erasure_overdue("mia@example.com")
    on_time = services.request_create(
        type="access", identity={"email": "leo@example.com"}, channel="email", actor="staff"
    )

    page.goto("/admin/")
    page.get_by_label("Username").fill("dpo")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#accountability-module")).to_be_visible()
    screens.shoot(page, "admin-index")

    page.locator("#content-main a[href='/admin/dsar/datasubjectrequest/']").first.click()
    expect(page.locator("#result_list")).to_contain_text(str(on_time.pk)[:8])
    page.get_by_role("link", name="Overdue").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(str(overdue.pk)[:8])
    expect(rows.first.locator(".ws-days-overdue")).to_contain_text("overdue")
    screens.shoot(page, "queue-overdue")

    rows.first.locator("input.action-select").check()
    page.locator("select[name=action]").select_option("approve")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist")).to_contain_text("1 requests approved and started.")
    screens.shoot(page, "erasure-approved")

    _wait_for(
        lambda: DataSubjectRequest.objects.get(pk=overdue.pk).status == "completed",
        what="the erasure to complete",
    )
    assert not Message.objects.filter(conversation__system=system).exists()

    page.goto(f"/admin/dsar/datasubjectrequest/{overdue.pk}/change/")
    expect(page.locator(".field-timeline")).to_contain_text("dsar.request.completed")
    expect(page.locator(".field-timeline")).to_contain_text("dpo")
    expect(page.locator("#source_tasks-group")).to_contain_text("built-in store")
    screens.shoot(page, "request-timeline")

    page.goto("/admin/")
    page.get_by_role("link", name="Dashboard: deadlines, volumes, withdrawals").click()
    charts = page.locator("svg.ws-chart")
    expect(charts).to_have_count(3)
    expect(page.locator("#ws-received-panel svg .ws-bar")).not_to_have_count(0)
    expect(page.locator("#ws-answered-panel svg .ws-bar")).to_have_count(1)
    expect(page.locator("#ws-received")).to_have_text("2")
    box = charts.first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 150
    screens.shoot(page, "dashboard")

    page.get_by_role("link", name="CCPA §7102 metrics").first.click()
    received_year = DataSubjectRequest.objects.get(pk=overdue.pk).received_at.year
    page.locator("#ws-year").select_option(str(received_year))
    page.locator("#ws-regulation").select_option("all")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#ws-ccpa-table tr[data-type=delete] td").first).to_have_text("1")
    screens.shoot(page, "ccpa-metrics")

    page.get_by_role("link", name="Record of processing (Art. 30)").click()
    expect(page.locator("#ropa-shop-assistant")).to_contain_text("no retention policy")
    screens.shoot(page, "record-of-processing")
    assert page.problems == [], page.problems
