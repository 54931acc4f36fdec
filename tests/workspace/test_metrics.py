"""The arithmetic of the CCPA §7102 metrics and of the dashboard, on fixed sets of requests."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from compliance.workspace import metrics
from compliance.workspace.permissions import EVERYTHING, staff_scope
from compliance.workspace.selectors import consent_events_in_scope, requests_in_scope
from consent.services import consent_opt_out, consent_withdraw
from dsar.models import DataSubjectRequest
from tests.factories import DataSubjectRequestFactory, PurposeFactory, SubjectFactory

pytestmark = pytest.mark.django_db


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def request(type_, status, received, completed=None, *, regulation="ccpa", due=None, **extra):
    received_at = at(received)
    return DataSubjectRequestFactory(
        type=type_,
        status=status,
        regulation=regulation,
        received_at=received_at,
        completed_at=at(completed) if completed else None,
        due_at=at(due) if due else received_at + timedelta(days=45),
        **extra,
    )


@pytest.fixture
def year_of_requests(db):
    """2025's CCPA requests, plus some that must not count."""
    first = request("access", "completed", "2025-01-10", "2025-01-20")  # 10 days
    request("portability", "partially_completed", "2025-02-01", "2025-02-05")  # 4 days
    request("access", "rejected", "2025-03-01", "2025-03-31", rejection_reason="Not verified")
    request("access", "in_progress", "2025-04-01")
    request("access", "cancelled", "2025-05-01", "2025-05-02")
    # Not counted: received the year before, a GDPR request, a duplicate answered by `first`.
    request("access", "completed", "2024-12-30", "2025-01-05")
    request("access", "completed", "2025-06-01", "2025-06-02", regulation="gdpr")
    request("access", "cancelled", "2025-01-11", "2025-01-11", duplicate_of=first)

    request("erasure", "completed", "2025-07-02", "2025-07-04T12:00")  # 2.5 days
    request("erasure", "completed", "2025-07-02", "2025-07-07T12:00")  # 5.5 days
    request("rectification", "rejected", "2025-08-01", "2025-08-02")  # 1 day
    request("opt_out_sale", "completed", "2025-09-01", "2025-09-04")  # 3 days


def by_key(rows) -> dict[str, metrics.CcpaRow]:
    return {row.category.key: row for row in rows}


def test_ccpa_metrics_count_received_complied_denied_and_the_median(year_of_requests):
    rows = by_key(metrics.ccpa_metrics(requests=DataSubjectRequest.objects.all(), year=2025))

    know = rows["know"]
    assert (know.received, know.complied, know.denied, know.open, know.withdrawn) == (5, 2, 1, 1, 1)
    assert know.median_days == 10.0  # median of 10, 4 and 30
    delete = rows["delete"]
    assert (delete.received, delete.complied, delete.denied, delete.median_days) == (2, 2, 0, 4.0)
    correct = rows["correct"]
    assert (correct.received, correct.complied, correct.denied, correct.median_days) == (
        1,
        0,
        1,
        1.0,
    )
    assert (rows["opt_out"].received, rows["opt_out"].complied, rows["opt_out"].median_days) == (
        1,
        1,
        3.0,
    )
    limit = rows["limit"]
    assert (limit.received, limit.complied, limit.denied, limit.median_days) == (0, 0, 0, None)


def test_ccpa_metrics_can_count_every_regulation(year_of_requests):
    rows = by_key(
        metrics.ccpa_metrics(requests=DataSubjectRequest.objects.all(), year=2025, regulation=None)
    )
    assert rows["know"].received == 6
    assert rows["know"].complied == 3


def test_ccpa_metrics_of_another_year_are_empty(year_of_requests):
    rows = metrics.ccpa_metrics(requests=DataSubjectRequest.objects.all(), year=2023)
    assert all(row.received == 0 for row in rows)


def test_the_ccpa_csv_holds_the_same_figures(signed_in, dpo, year_of_requests):
    response = signed_in(dpo).get(
        reverse("workspace:ccpa-metrics-csv"), {"year": 2025, "regulation": "ccpa"}
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "ccpa-metrics-2025-ccpa.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    know = next(r for r in rows if r["request_type"] == "know")
    assert (know["received"], know["complied_in_whole_or_in_part"], know["denied"]) == (
        "5",
        "2",
        "1",
    )
    assert know["median_days_to_respond"] == "10.0"
    assert next(r for r in rows if r["request_type"] == "limit")["median_days_to_respond"] == ""


def test_the_ccpa_page_shows_the_table_and_a_chart(signed_in, dpo, year_of_requests):
    response = signed_in(dpo).get(reverse("workspace:ccpa-metrics"), {"year": 2025})
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-type="know"' in page
    assert "<svg" in page and 'class="ws-bar' in page


@pytest.mark.parametrize("query", [{"year": "twenty"}, {"year": 1999}, {"regulation": "hipaa"}])
def test_the_ccpa_pages_answer_bad_parameters_with_400(signed_in, dpo, query):
    client = signed_in(dpo)
    assert client.get(reverse("workspace:ccpa-metrics"), query).status_code == 400
    assert client.get(reverse("workspace:ccpa-metrics-csv"), query).status_code == 400


def test_ccpa_metrics_count_only_the_requests_of_the_users_systems(signed_in, people, alpha, beta):
    request("erasure", "completed", "2025-03-01", "2025-03-03", subject=alpha.subject)
    request("erasure", "rejected", "2025-03-01", "2025-03-02", subject=beta.subject)

    scoped = by_key(
        metrics.ccpa_metrics(requests=requests_in_scope(staff_scope(people.alpha_actor)), year=2025)
    )
    assert (scoped["delete"].received, scoped["delete"].complied, scoped["delete"].denied) == (
        1,
        1,
        0,
    )
    everything = by_key(metrics.ccpa_metrics(requests=requests_in_scope(EVERYTHING), year=2025))
    assert everything["delete"].received == 2


# --- Dashboard -----------------------------------------------------------------------------------

NOW = at("2026-03-18T12:00")  # a Wednesday; the four weeks start Feb 23, Mar 2, Mar 9, Mar 16


@pytest.fixture
def month_of_requests(db):
    request("access", "rejected", "2026-03-03T09:00", "2026-03-04T09:00", due="2026-04-03")
    request("erasure", "completed", "2026-03-10T09:00", "2026-03-11T09:00", due="2026-04-10")
    request("access", "completed", "2026-02-01T09:00", "2026-03-17T09:00", due="2026-03-01")
    request("access", "in_progress", "2026-02-05T09:00", due="2026-03-05")  # overdue
    request("portability", "awaiting_verification", "2026-03-16T08:00", due="2026-03-22")
    cancelled = request("access", "cancelled", "2026-03-12T09:00", "2026-03-12T10:00")
    request("access", "cancelled", "2026-03-12T09:30", "2026-03-12T09:30", duplicate_of=cancelled)


def test_the_dashboard_counts_each_week_and_the_deadlines(month_of_requests):
    board = metrics.dashboard(
        requests=DataSubjectRequest.objects.all(), consent_events=None, weeks=4, now=NOW
    )

    assert board.week_labels == ["23 Feb", "02 Mar", "09 Mar", "16 Mar"]
    assert board.received_by_type == {
        "access": [0, 1, 1, 0],
        "portability": [0, 0, 0, 1],
        "erasure": [0, 0, 1, 0],
    }
    assert board.answered_on_time == [0, 1, 1, 0]
    assert board.answered_late == [0, 0, 0, 1]
    assert board.answered == 3
    assert board.on_time_rate == pytest.approx(2 / 3)
    assert board.median_days_to_close == 1.0  # of 1, 1 and 44 days
    assert (board.open, board.overdue, board.due_within_7_days) == (2, 1, 1)


def test_the_dashboard_with_no_requests_has_no_rate_and_no_median(db):
    board = metrics.dashboard(
        requests=DataSubjectRequest.objects.all(), consent_events=None, weeks=4, now=NOW
    )
    assert board.on_time_rate is None
    assert board.median_days_to_close is None
    assert board.received_by_type == {}


def test_the_dashboard_counts_withdrawals_per_purpose_of_the_users_systems(people, alpha, beta):
    alpha_purpose = PurposeFactory(slug="alpha-marketing", name="Alpha marketing")
    alpha_purpose.systems.add(alpha.system)
    beta_purpose = PurposeFactory(slug="beta-profiling", name="Beta profiling")
    beta_purpose.systems.add(beta.system)
    for _ in range(2):
        consent_withdraw(
            subject=SubjectFactory(), purpose=alpha_purpose, source="portal", actor="test"
        )
    consent_opt_out(subject=SubjectFactory(), purpose=beta_purpose, source="portal", actor="test")

    scope = staff_scope(people.alpha_actor)
    board = metrics.dashboard(
        requests=requests_in_scope(scope),
        consent_events=consent_events_in_scope(scope),
        weeks=4,
    )

    assert board.withdrawals_by_purpose == {"Alpha marketing": [0, 0, 0, 2]}
    everything = metrics.dashboard(
        requests=requests_in_scope(EVERYTHING),
        consent_events=consent_events_in_scope(EVERYTHING),
        weeks=4,
    )
    assert everything.withdrawals_by_purpose["Beta profiling"] == [0, 0, 0, 1]


def test_week_start_is_monday_midnight_utc():
    assert metrics.week_start(at("2026-03-22T23:59")) == at("2026-03-16T00:00")
    assert metrics.week_start(at("2026-03-16T00:00")) == at("2026-03-16T00:00")
