"""Read queries of the workspace: querysets held to a user's systems, the record of
processing activities (GDPR Art. 30) and the statistics of flagged AI answers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncMonth
from django.utils import timezone

from compliance.minimisation import MinimisationCategory
from compliance.models import (
    AnswerFlag,
    AnswerFlagCategory,
    AnswerFlagState,
    Conversation,
    System,
)
from compliance.retention.selectors import effective_policies
from compliance.workspace.permissions import (
    SystemScope,
    paths_q,
    request_systems_q,
    scope_filter,
)
from consent.models import ConsentEvent, Purpose
from dsar.models import DataSubjectRequest

# --- Querysets held to a user's systems ----------------------------------------------------------


def requests_in_scope(scope: SystemScope) -> QuerySet[DataSubjectRequest]:
    return scope_filter(DataSubjectRequest.objects.all(), scope, request_systems_q)


def consent_events_in_scope(scope: SystemScope) -> QuerySet[ConsentEvent]:
    """Consent events of the purposes the user's systems serve."""
    return scope_filter(ConsentEvent.objects.all(), scope, paths_q(["purpose__systems"]))


def answer_flags_in_scope(scope: SystemScope) -> QuerySet[AnswerFlag]:
    return scope_filter(AnswerFlag.objects.all(), scope, paths_q(["message__conversation__system"]))


def systems_in_scope(scope: SystemScope) -> QuerySet[System]:
    return scope.systems().order_by("name")


# --- Record of processing activities (GDPR Art. 30) ----------------------------------------------

# What the service itself does for every system, whatever its configuration (Art. 30(1)(g),
# Art. 32): stated once here so the record and the code cannot drift apart silently.
STANDARD_SECURITY_MEASURES = (
    "Tamper-evident audit trail: every change is a hash-chained event",
    "API access per client with scoped keys, stored only as SHA-256 digests",
    "Staff access limited per system (object permissions) and audited",
    "No personal data in application logs or URLs, no raw personal data in the audit trail",
)
DATA_SUBJECT_CATEGORY = "Customers who talk to the AI assistant"
NO_TRANSFERS_RECORDED = "None recorded in this service"


@dataclass
class RopaPurpose:
    name: str
    slug: str
    lawful_basis: str
    data_categories: list[str]
    third_party: str
    sold_or_shared: bool
    sensitive: bool


@dataclass
class RopaRetention:
    source: str
    enabled: bool
    policy: str  # empty: no policy covers the source
    days: int | None
    action: str


@dataclass
class RopaEntry:
    system: System
    controller: str
    controller_contact: str
    role: str
    owner_contact: str
    purposes: list[RopaPurpose]
    data_categories: list[str]
    sensitive_categories: list[str]
    subject_categories: list[str]
    recipients: list[str]
    transfers: str
    retention: list[RopaRetention]
    security_measures: list[str] = field(default_factory=list)

    @property
    def retention_gaps(self) -> int:
        return sum(1 for r in self.retention if r.enabled and not r.policy)


def _subject_jurisdictions(system_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, set[str]] = defaultdict(set)
    rows = (
        Conversation.objects.filter(system_id__in=system_ids, subject__isnull=False)
        .values_list("system_id", "subject__jurisdiction")
        .distinct()
    )
    for system_id, jurisdiction in rows:
        found[system_id].add(jurisdiction)
    return {k: sorted(v) for k, v in found.items()}


def record_of_processing(scope: SystemScope) -> list[RopaEntry]:
    """One entry per system the user covers: who is responsible, for which purposes and on
    which lawful basis, which categories of data and of subjects, who receives the data,
    transfers, how long each log source keeps it, and the security measures (Art. 30(1))."""
    systems = list(systems_in_scope(scope).prefetch_related("data_categories", "log_sources"))
    system_ids = [s.pk for s in systems]
    purposes_by_system: dict[int, list[Purpose]] = defaultdict(list)
    for purpose in (
        Purpose.objects.filter(systems__in=system_ids)
        .prefetch_related("data_categories", "systems")
        .distinct()
        .order_by("name")
    ):
        for system in purpose.systems.all():
            purposes_by_system[system.pk].append(purpose)
    sources = [source for system in systems for source in system.log_sources.all()]
    policies = effective_policies(sources)
    jurisdictions = _subject_jurisdictions(system_ids)
    controller = settings.CONSENT_CONTROLLER
    minimise_labels = dict(MinimisationCategory.choices)

    entries = []
    for system in systems:
        categories = {c.name: c.sensitive for c in system.data_categories.all()}
        ropa_purposes = []
        for purpose in purposes_by_system.get(system.pk, []):
            purpose_categories = [c.name for c in purpose.data_categories.all()]
            for category in purpose.data_categories.all():
                categories.setdefault(category.name, category.sensitive)
            ropa_purposes.append(
                RopaPurpose(
                    name=purpose.name,
                    slug=purpose.slug,
                    lawful_basis=str(purpose.get_lawful_basis_display()),
                    data_categories=purpose_categories,
                    third_party=purpose.third_party_name,
                    sold_or_shared=purpose.sold_or_shared,
                    sensitive=purpose.sensitive,
                )
            )
        recipients = [line.strip() for line in system.recipients.splitlines() if line.strip()]
        for purpose in ropa_purposes:
            if purpose.third_party and purpose.third_party not in recipients:
                recipients.append(purpose.third_party)
        retention = []
        for source in sorted(system.log_sources.all(), key=lambda s: s.name):
            policy = policies.get(source.pk)
            retention.append(
                RopaRetention(
                    source=source.name,
                    enabled=source.enabled,
                    policy=policy.name if policy else "",
                    days=policy.duration_days if policy else None,
                    action=str(policy.get_action_display()) if policy else "",
                )
            )
        minimised = [str(minimise_labels.get(c, c)) for c in system.minimise_categories or []]
        security = list(STANDARD_SECURITY_MEASURES)
        if minimised:
            security.insert(0, "Redacted from logs before storage: " + ", ".join(minimised))
        where = jurisdictions.get(system.pk)
        entries.append(
            RopaEntry(
                system=system,
                controller=controller["name"],
                controller_contact=controller["email"],
                role=str(system.get_role_display()),
                owner_contact=system.owner_contact,
                purposes=ropa_purposes,
                data_categories=sorted(categories),
                sensitive_categories=sorted(n for n, sensitive in categories.items() if sensitive),
                subject_categories=[
                    DATA_SUBJECT_CATEGORY + (f" ({', '.join(where)})" if where else "")
                ],
                recipients=recipients,
                transfers=NO_TRANSFERS_RECORDED,
                retention=retention,
                security_measures=security,
            )
        )
    return entries


# --- Flagged AI answers --------------------------------------------------------------------------


@dataclass
class FlagMonth:
    month: datetime
    by_category: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_category.values())


@dataclass
class SystemFlagStats:
    system_id: int
    system_name: str
    months: list[FlagMonth]
    by_state: dict[str, int]

    @property
    def total(self) -> int:
        return sum(m.total for m in self.months)

    def category_series(self, category: str) -> list[int]:
        return [m.by_category.get(category, 0) for m in self.months]


def month_starts(now: datetime, count: int) -> list[datetime]:
    now = now.astimezone(UTC)
    year, month = now.year, now.month
    starts = []
    for _ in range(count):
        starts.append(datetime(year, month, 1, tzinfo=UTC))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return starts[::-1]


def answer_flag_stats(
    *, flags: QuerySet[AnswerFlag], months: int = 12, now: datetime | None = None
) -> list[SystemFlagStats]:
    """Per system (plugin) and calendar month (UTC), how many answers were flagged in each
    category, and how many flags of the window are in each review state; systems with no
    flag in the window are left out. A rising month stands out in the per-system charts."""
    now = now or timezone.now()
    starts = month_starts(now, months)
    index = {m: i for i, m in enumerate(starts)}
    window = flags.filter(created_at__gte=starts[0])
    counts = (
        window.annotate(month=TruncMonth("created_at", tzinfo=UTC))
        .values(
            "message__conversation__system",
            "message__conversation__system__name",
            "month",
            "category",
        )
        .annotate(n=Count("pk"))
    )
    stats: dict[int, SystemFlagStats] = {}
    for row in counts:
        system_id = row["message__conversation__system"]
        entry = stats.setdefault(
            system_id,
            SystemFlagStats(
                system_id=system_id,
                system_name=row["message__conversation__system__name"],
                months=[FlagMonth(month=m, by_category={}) for m in starts],
                by_state={},
            ),
        )
        if row["month"] in index:
            month = entry.months[index[row["month"]]]
            month.by_category[row["category"]] = (
                month.by_category.get(row["category"], 0) + row["n"]
            )
    states = window.values("message__conversation__system", "state").annotate(n=Count("pk"))
    for row in states:
        entry = stats.get(row["message__conversation__system"])
        if entry is not None:
            entry.by_state[row["state"]] = row["n"]
    return sorted(stats.values(), key=lambda s: s.system_name)


FLAG_CATEGORIES = list(AnswerFlagCategory.choices)
FLAG_STATES = list(AnswerFlagState.choices)
