"""The accountability pages: who may open them, what they show, and that each shows only
the systems the user covers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from compliance.audit import audit_record
from compliance.models import AnswerFlag, AuditEvent
from compliance.workspace.selectors import answer_flag_stats
from tests.factories import (
    AnswerFlagFactory,
    DataSubjectRequestFactory,
    MessageFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db

PAGES = [
    ("workspace:dashboard", "dsar.view_datasubjectrequest"),
    ("workspace:ccpa-metrics", "dsar.view_datasubjectrequest"),
    ("workspace:ccpa-metrics-csv", "dsar.view_datasubjectrequest"),
    ("workspace:ropa", "compliance.view_system"),
    ("workspace:ropa-csv", "compliance.view_system"),
    ("workspace:answer-flags", "compliance.view_answerflag"),
    ("workspace:audit-verify", "compliance.view_auditevent"),
]
NAMES = [name for name, _perm in PAGES]


@pytest.mark.parametrize("name", NAMES)
def test_a_visitor_who_is_not_signed_in_is_sent_to_the_admin_sign_in(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("name", NAMES)
def test_a_signed_in_user_who_is_not_staff_is_sent_to_the_sign_in(signed_in, name):
    customer = StaffUserFactory(username="not-staff", is_staff=False, is_superuser=False)
    response = signed_in(customer).get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("name", NAMES)
def test_staff_without_the_model_permission_are_refused(signed_in, name):
    clerk = StaffUserFactory(username="clerk", is_superuser=False)
    assert signed_in(clerk).get(reverse(name)).status_code == 403


@pytest.mark.parametrize("name", NAMES)
def test_the_dpo_opens_every_page(signed_in, dpo, alpha, name):
    assert signed_in(dpo).get(reverse(name)).status_code == 200


@pytest.mark.parametrize("name", [n for n in NAMES if n != "workspace:audit-verify"])
def test_privacy_staff_open_every_page_held_to_their_systems(signed_in, people, name):
    assert signed_in(people.alpha_viewer).get(reverse(name)).status_code == 200


def test_privacy_staff_cannot_check_the_whole_audit_trail(signed_in, people):
    # The audit trail is not held to systems: it is for whoever covers every system.
    response = signed_in(people.alpha_viewer).get(reverse("workspace:audit-verify"))
    assert response.status_code == 403


def test_the_admin_index_links_the_pages(signed_in, dpo):
    page = signed_in(dpo).get(reverse("admin:index")).content.decode()
    for name in (
        "workspace:dashboard",
        "workspace:ccpa-metrics",
        "workspace:ropa",
        "workspace:answer-flags",
        "workspace:audit-verify",
    ):
        assert reverse(name) in page


def test_the_admin_index_shows_staff_only_the_links_they_may_open(signed_in):
    clerk = StaffUserFactory(username="clerk", is_superuser=False)
    page = signed_in(clerk).get(reverse("admin:index")).content.decode()
    assert reverse("workspace:dashboard") not in page


# --- Dashboard -----------------------------------------------------------------------------------


def test_the_dashboard_draws_its_charts(signed_in, dpo, alpha):
    now = timezone.now()
    DataSubjectRequestFactory(
        subject=alpha.subject,
        type="erasure",
        status="in_progress",
        received_at=now - timedelta(days=40),
        due_at=now - timedelta(days=9),
    )
    DataSubjectRequestFactory(
        type="access",
        status="completed",
        received_at=now - timedelta(days=3),
        completed_at=now - timedelta(days=1),
    )
    response = signed_in(dpo).get(reverse("workspace:dashboard"))
    page = response.content.decode()

    assert response.status_code == 200
    assert page.count('<svg class="ws-chart"') == 3
    assert 'class="ws-bar s0"' in page
    assert re.search(r'id="ws-overdue">\s*1<', page)
    assert "<script" not in page.split("<!-- END SVGs -->")[0].split('id="content"')[1]
    assert "style=" not in page.split('id="content-main"')[1].split("</main>")[0]


def test_the_dashboard_counts_only_the_users_systems(signed_in, people, alpha, beta):
    now = timezone.now()
    for number, plugin in enumerate((alpha, beta, beta)):
        DataSubjectRequestFactory(
            subject=plugin.subject,
            type="erasure" if plugin is alpha else "access",
            status="in_progress" if plugin is alpha else "received",
            received_at=now - timedelta(days=1),
            due_at=now - timedelta(hours=1),
            subject_ref=f"ref-{number}",
        )
    response = signed_in(people.alpha_viewer).get(reverse("workspace:dashboard"))
    assert response.context["board"].overdue == 1
    assert response.context["board"].open == 1


def test_the_dashboard_answers_a_bad_week_count_with_400(signed_in, dpo):
    client = signed_in(dpo)
    assert client.get(reverse("workspace:dashboard"), {"weeks": "0"}).status_code == 400
    assert client.get(reverse("workspace:dashboard"), {"weeks": "x"}).status_code == 400
    assert client.get(reverse("workspace:dashboard"), {"weeks": "26"}).status_code == 200


# --- Flagged answers -----------------------------------------------------------------------------


def test_flag_statistics_count_per_plugin_month_and_category(alpha, beta):
    for category in ("wrong", "wrong", "harmful"):
        AnswerFlagFactory(
            message=MessageFactory(conversation=alpha.conversation, role="assistant"),
            category=category,
        )
    last_month = timezone.now().replace(day=1) - timedelta(days=3)
    old = AnswerFlagFactory(
        message=MessageFactory(conversation=alpha.conversation, role="assistant"),
        category="biased",
    )
    AnswerFlag.objects.filter(pk=old.pk).update(created_at=last_month, state="dismissed")

    stats = {s.system_name: s for s in answer_flag_stats(flags=AnswerFlag.objects.all(), months=3)}

    alpha_stats = stats["Alpha"]
    # The fixture's own flag (wrong) is in this month too.
    assert alpha_stats.months[-1].by_category == {"wrong": 3, "harmful": 1}
    assert alpha_stats.months[-2].by_category == {"biased": 1}
    assert alpha_stats.months[0].by_category == {}
    assert alpha_stats.total == 5
    assert alpha_stats.by_state == {"new": 4, "dismissed": 1}
    assert stats["Beta"].total == 1


def test_the_flag_page_shows_only_the_users_plugins_and_links_the_queue(signed_in, people):
    response = signed_in(people.alpha_viewer).get(reverse("workspace:answer-flags"))
    page = response.content.decode()
    assert "Alpha: answers flagged per month" in page
    assert "Beta" not in page
    assert reverse("admin:compliance_answerflag_changelist") in page


def test_the_flag_queue_links_the_statistics(signed_in, dpo):
    page = signed_in(dpo).get(reverse("admin:compliance_answerflag_changelist")).content.decode()
    assert reverse("workspace:answer-flags") in page


# --- Audit chain ---------------------------------------------------------------------------------


def test_the_audit_log_has_a_verify_chain_button(signed_in, dpo):
    page = signed_in(dpo).get(reverse("admin:compliance_auditevent_changelist")).content.decode()
    assert reverse("workspace:audit-verify") in page


def test_verifying_an_intact_chain_says_so(signed_in, dpo):
    audit_record(actor="test", action="test.one")
    audit_record(actor="test", action="test.two")
    client = signed_in(dpo)

    assert "ws-chain-result" not in client.get(reverse("workspace:audit-verify")).content.decode()
    response = client.post(reverse("workspace:audit-verify"))

    assert response.status_code == 200
    assert response.context["report"].intact
    assert "The audit chain is intact" in response.content.decode()


def test_verifying_a_tampered_chain_names_the_event(signed_in, dpo):
    audit_record(actor="test", action="test.one")
    changed = audit_record(actor="test", action="test.two")
    audit_record(actor="test", action="test.three")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE compliance_auditevent SET actor = 'someone-else' WHERE id = %s", [changed.pk]
        )

    response = signed_in(dpo).post(reverse("workspace:audit-verify"))

    assert not response.context["report"].intact
    assert response.context["report"].broken_at == changed.pk
    assert "The audit chain is broken" in response.content.decode()
    assert AuditEvent.objects.filter(pk=changed.pk).exists()


def test_the_chain_check_needs_a_post_with_a_csrf_token(dpo):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(dpo)
    assert client.post(reverse("workspace:audit-verify")).status_code == 403
