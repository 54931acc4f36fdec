"""The figures of the accountability pages: the dashboard and the CCPA §7102 metrics. Pure
reads over querysets the caller has already held to the user's systems, so the same code
serves a DPO who covers everything and one who covers one plugin."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Count, QuerySet
from django.db.models.functions import TruncWeek
from django.utils import timezone

from consent.models import ConsentAction, ConsentEvent
from dsar.models import (
    OPEN_STATUSES,
    DataSubjectRequest,
    Regulation,
    RequestStatus,
    RequestType,
)

COMPLIED_STATUSES = frozenset({RequestStatus.COMPLETED, RequestStatus.PARTIALLY_COMPLETED})
DENIED_STATUSES = frozenset({RequestStatus.REJECTED})
# Answered: the subject got their answer (done, done in part, or refused with reasons).
# A cancelled request was withdrawn, not answered, and counts in neither figure.
ANSWERED = COMPLIED_STATUSES | DENIED_STATUSES
# Withdrawing consent, objecting and opting out all stop a use of data the subject had
# allowed (GDPR Art. 7(3), 21; CCPA §7026): the dashboard counts them together.
WITHDRAWAL_ACTIONS = (ConsentAction.WITHDRAW, ConsentAction.OBJECT, ConsentAction.OPT_OUT)


def days_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 86400


def median_days(durations: Iterable[float]) -> float | None:
    values = list(durations)
    return round(statistics.median(values), 1) if values else None


def week_start(moment: datetime) -> datetime:
    """Monday 00:00 UTC of the week holding ``moment``."""
    moment = moment.astimezone(UTC)
    day = moment - timedelta(days=moment.weekday())
    return day.replace(hour=0, minute=0, second=0, microsecond=0)


def weeks_ending(now: datetime, count: int) -> list[datetime]:
    last = week_start(now)
    return [last - timedelta(weeks=count - 1 - i) for i in range(count)]


# --- CCPA §7102 ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CcpaCategory:
    key: str
    label: str
    types: frozenset[str]


# 11 CCR §7102(a)(1): requests to know, delete, correct, opt-out of sale/sharing and limit.
CCPA_CATEGORIES: tuple[CcpaCategory, ...] = (
    CcpaCategory(
        "know",
        "Requests to know",
        frozenset({RequestType.ACCESS, RequestType.PORTABILITY}),
    ),
    CcpaCategory("delete", "Requests to delete", frozenset({RequestType.ERASURE})),
    CcpaCategory("correct", "Requests to correct", frozenset({RequestType.RECTIFICATION})),
    CcpaCategory(
        "opt_out", "Requests to opt out of sale/sharing", frozenset({RequestType.OPT_OUT_SALE})
    ),
    CcpaCategory(
        "limit",
        "Requests to limit use of sensitive personal information",
        frozenset({RequestType.LIMIT_SENSITIVE}),
    ),
)


@dataclass(frozen=True)
class CcpaRow:
    category: CcpaCategory
    received: int
    complied: int
    denied: int
    open: int
    withdrawn: int
    median_days: float | None


def year_bounds(year: int) -> tuple[datetime, datetime]:
    return (
        datetime(year, 1, 1, tzinfo=UTC),
        datetime(year + 1, 1, 1, tzinfo=UTC),
    )


def ccpa_metrics(
    *, requests: QuerySet[DataSubjectRequest], year: int, regulation: str | None = Regulation.CCPA
) -> list[CcpaRow]:
    """11 CCR §7102(a): per request type, the requests received in ``year`` (UTC), how many
    were complied with in whole or in part, how many denied, and the median number of days
    from receipt to the response (over the complied and denied ones).

    Counted by the year of receipt, so a request received in December and answered in
    January counts in the year it was received. A duplicate (a second request for the same
    subject and type while the first was open, answered by the first) is not counted again.
    ``regulation=None`` counts every regulation."""
    since, until = year_bounds(year)
    rows = requests.filter(received_at__gte=since, received_at__lt=until, duplicate_of__isnull=True)
    if regulation:
        rows = rows.filter(regulation=regulation)
    values = list(rows.values_list("type", "status", "received_at", "completed_at"))
    result = []
    for category in CCPA_CATEGORIES:
        mine = [v for v in values if v[0] in category.types]
        answered = [v for v in mine if v[1] in ANSWERED and v[3] is not None]
        result.append(
            CcpaRow(
                category=category,
                received=len(mine),
                complied=sum(1 for v in mine if v[1] in COMPLIED_STATUSES),
                denied=sum(1 for v in mine if v[1] in DENIED_STATUSES),
                open=sum(1 for v in mine if v[1] in OPEN_STATUSES),
                withdrawn=sum(1 for v in mine if v[1] == RequestStatus.CANCELLED),
                median_days=median_days(days_between(v[2], v[3]) for v in answered),
            )
        )
    return result


# --- Dashboard -----------------------------------------------------------------------------------


@dataclass
class Dashboard:
    weeks: list[datetime]
    received_by_type: dict[str, list[int]]  # request type -> count per week
    answered_on_time: list[int]
    answered_late: list[int]
    on_time_rate: float | None  # answered within the deadline, of all answered, in the window
    median_days_to_close: float | None
    answered: int
    open: int
    overdue: int
    due_within_7_days: int
    withdrawals_by_purpose: dict[str, list[int]] = field(default_factory=dict)

    @property
    def week_labels(self) -> list[str]:
        return [w.strftime("%d %b") for w in self.weeks]

    @property
    def received_total(self) -> int:
        return sum(sum(v) for v in self.received_by_type.values())


def _week_index(weeks: Sequence[datetime]) -> dict[datetime, int]:
    return {w: i for i, w in enumerate(weeks)}


def dashboard(
    *,
    requests: QuerySet[DataSubjectRequest],
    consent_events: QuerySet[ConsentEvent] | None,
    weeks: int,
    now: datetime | None = None,
) -> Dashboard:
    """Requests received per week by type, answered on time or late per week, the on-time
    rate and median days to close over the window, what is open and overdue now, and consent
    withdrawals per purpose per week. Weeks run Monday to Sunday, UTC."""
    now = now or timezone.now()
    week_list = weeks_ending(now, weeks)
    index = _week_index(week_list)
    since = week_list[0]

    received: dict[str, list[int]] = {}
    by_week = (
        requests.filter(received_at__gte=since, duplicate_of__isnull=True)
        .annotate(week=TruncWeek("received_at", tzinfo=UTC))
        .values("week", "type")
        .annotate(n=Count("pk"))
    )
    for row in by_week:
        week = row["week"]
        if week in index:
            received.setdefault(row["type"], [0] * weeks)[index[week]] += row["n"]
    received = {t: received[t] for t in RequestType.values if t in received}

    answered_rows = list(
        requests.filter(
            status__in=ANSWERED, completed_at__gte=since, duplicate_of__isnull=True
        ).values_list("received_at", "completed_at", "due_at")
    )
    on_time = [0] * weeks
    late = [0] * weeks
    for _received_at, completed_at, due_at in answered_rows:
        week = week_start(completed_at)
        if week not in index:
            continue
        if completed_at <= due_at:
            on_time[index[week]] += 1
        else:
            late[index[week]] += 1
    answered = sum(on_time) + sum(late)

    open_requests = requests.filter(status__in=OPEN_STATUSES, duplicate_of__isnull=True)
    withdrawals: dict[str, list[int]] = {}
    if consent_events is not None:
        rows = (
            consent_events.filter(action__in=WITHDRAWAL_ACTIONS, occurred_at__gte=since)
            .annotate(week=TruncWeek("occurred_at", tzinfo=UTC))
            .values("week", "purpose__name")
            .annotate(n=Count("pk"))
            .order_by("purpose__name")
        )
        for row in rows:
            if row["week"] in index:
                series = withdrawals.setdefault(row["purpose__name"], [0] * weeks)
                series[index[row["week"]]] += row["n"]

    return Dashboard(
        weeks=week_list,
        received_by_type=received,
        answered_on_time=on_time,
        answered_late=late,
        on_time_rate=(sum(on_time) / answered) if answered else None,
        median_days_to_close=median_days(
            days_between(r, c) for r, c, _d in answered_rows if week_start(c) in index
        ),
        answered=answered,
        open=open_requests.count(),
        overdue=open_requests.filter(due_at__lt=now).count(),
        due_within_7_days=open_requests.filter(
            due_at__gte=now, due_at__lt=now + timedelta(days=7)
        ).count(),
        withdrawals_by_purpose=withdrawals,
    )
