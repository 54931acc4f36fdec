"""Read queries for retention policies and legal holds: which policy governs a source, which
holds are active and what they cover. Retention enforcement, the DSAR erasure engine, the
admin and access reports all ask these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict
from uuid import UUID

from django.db.models import Q, QuerySet
from django.utils import timezone

from compliance.models import (
    DataSubject,
    LegalHold,
    LegalHoldReason,
    LogSource,
    RetentionPolicy,
    System,
)

# Ties between policies of the same duration go to the narrower scope: a DPO who wrote a
# policy for one source meant that source.
_SCOPE_RANK = {"source": 0, "system": 1, "data_category": 2}


def _precedence(policy: RetentionPolicy) -> tuple[int, int, int]:
    return (policy.duration_days, _SCOPE_RANK[policy.scope_kind], policy.pk)


def _system_categories() -> dict[int, set[int]]:
    through = System.data_categories.through
    categories: dict[int, set[int]] = {}
    for system_id, category_id in through.objects.values_list("system_id", "datacategory_id"):
        categories.setdefault(system_id, set()).add(category_id)
    return categories


def policies_covering(
    sources: Iterable[LogSource], *, include_disabled: bool = False
) -> dict[int, list[RetentionPolicy]]:
    """For each source, every policy that covers it (its own, its system's, and those of the
    data categories its system holds), the one that applies first. Two queries whatever the
    number of sources."""
    sources = list(sources)
    policies = RetentionPolicy.objects.select_related("source", "system", "data_category")
    if not include_disabled:
        policies = policies.filter(enabled=True)
    policies = list(policies)
    categories = _system_categories() if any(p.data_category_id for p in policies) else {}
    covering: dict[int, list[RetentionPolicy]] = {}
    for source in sources:
        held_categories = categories.get(source.system_id, set())
        covering[source.pk] = sorted(
            (
                p
                for p in policies
                if p.source_id == source.pk
                or p.system_id == source.system_id
                or (p.data_category_id is not None and p.data_category_id in held_categories)
            ),
            key=_precedence,
        )
    return covering


def effective_policies(sources: Iterable[LogSource]) -> dict[int, RetentionPolicy | None]:
    return {
        source_id: (found[0] if found else None)
        for source_id, found in policies_covering(sources).items()
    }


def effective_policy_for_source(source: LogSource) -> RetentionPolicy | None:
    """The policy that applies to a source's records: of the enabled policies that cover it,
    the shortest; on equal durations the narrower scope (source, then system, then data
    category). Legal holds do not change which policy applies: they suspend it for what
    they cover (see ``source_holds`` and ``held_subjects_for_source``)."""
    return effective_policies([source])[source.pk]


@dataclass(frozen=True)
class GovernedSource:
    source: LogSource
    effective: RetentionPolicy | None
    # The policy does not apply here because ``effective`` is shorter.
    overridden: bool
    holds: list[LegalHold] = field(default_factory=list)


def policy_sources(policy: RetentionPolicy) -> list[GovernedSource]:
    """Every log source a policy covers, with the policy that actually applies there."""
    sources = LogSource.objects.select_related("system").order_by("system__name", "name")
    if policy.source_id:
        sources = sources.filter(pk=policy.source_id)
    elif policy.system_id:
        sources = sources.filter(system_id=policy.system_id)
    else:
        sources = sources.filter(system__data_categories=policy.data_category_id)
    sources = list(sources)
    effective = effective_policies(sources)
    holds = source_holds_bulk(sources)
    return [
        GovernedSource(
            source=source,
            effective=effective[source.pk],
            overridden=effective[source.pk] is not None and effective[source.pk].pk != policy.pk,
            holds=holds.get(source.pk, []),
        )
        for source in sources
    ]


def sources_without_policy() -> list[LogSource]:
    """Enabled sources no enabled policy covers: their logs are kept without limit, which
    GDPR Art. 5(1)(e) does not allow."""
    sources = list(LogSource.objects.filter(enabled=True).select_related("system"))
    effective = effective_policies(sources)
    return [s for s in sources if effective[s.pk] is None]


class RetentionPeriod(TypedDict):
    policy_id: int
    policy: str
    days: int
    action: str
    criteria: str


def retention_period_for_source(source: LogSource) -> RetentionPeriod | None:
    """What an access report states about how long a source's records are kept
    (GDPR Art. 15(1)(d)); None where no policy covers the source."""
    policy = effective_policy_for_source(source)
    if policy is None:
        return None
    return RetentionPeriod(
        policy_id=policy.pk,
        policy=policy.name,
        days=policy.duration_days,
        action=policy.action,
        criteria=policy.description,
    )


# --- Legal holds ------------------------------------------------------------------------------


def holds_active(*, at: datetime | None = None) -> QuerySet[LegalHold]:
    """Holds in force at ``at`` (now): started, not yet ended, not lifted."""
    at = at or timezone.now()
    return LegalHold.objects.filter(lifted_at__isnull=True, starts_at__lte=at).filter(
        Q(ends_at__isnull=True) | Q(ends_at__gt=at)
    )


def source_holds(source: LogSource, *, at: datetime | None = None) -> list[LegalHold]:
    """Active holds on the whole source: on it, or on its system."""
    return list(holds_active(at=at).filter(Q(source_id=source.pk) | Q(system_id=source.system_id)))


def source_holds_bulk(
    sources: Iterable[LogSource], *, at: datetime | None = None
) -> dict[int, list[LegalHold]]:
    sources = list(sources)
    holds = list(
        holds_active(at=at).filter(
            Q(source_id__in=[s.pk for s in sources])
            | Q(system_id__in={s.system_id for s in sources})
        )
    )
    return {
        source.pk: [h for h in holds if h.source_id == source.pk or h.system_id == source.system_id]
        for source in sources
    }


def held_sources(*, at: datetime | None = None) -> dict[int, list[LegalHold]]:
    """``{log source id: holds}`` for every source held in full (by a source or system
    hold). Retention skips these sources and counts their in-scope records as held."""
    holds = list(holds_active(at=at).filter(Q(source__isnull=False) | Q(system__isnull=False)))
    if not holds:
        return {}
    system_ids = {h.system_id for h in holds if h.system_id}
    by_source: dict[int, list[LegalHold]] = {}
    for source_id, system_id in LogSource.objects.filter(
        Q(pk__in=[h.source_id for h in holds if h.source_id]) | Q(system_id__in=system_ids)
    ).values_list("pk", "system_id"):
        by_source[source_id] = [
            h for h in holds if h.source_id == source_id or h.system_id == system_id
        ]
    return by_source


def held_subjects(*, at: datetime | None = None) -> list[DataSubject]:
    """Subjects with an active subject hold: their records are kept in every source."""
    subject_ids = holds_active(at=at).filter(subject__isnull=False).values("subject_id")
    return list(DataSubject.objects.filter(pk__in=subject_ids))


def held_subjects_for_source(source: LogSource, *, at: datetime | None = None) -> list[DataSubject]:
    """Subjects whose records retention must leave alone in this source. A subject hold
    covers the subject everywhere, so today this is the same for every source; the source
    is the argument so that narrower holds can be added without changing callers."""
    return held_subjects(at=at)


def legal_holds_covering(
    *,
    subject: DataSubject | UUID | str,
    source: LogSource | None = None,
    at: datetime | None = None,
) -> QuerySet[LegalHold]:
    """Active holds that stop erasing this subject's data: holds on the subject itself, and
    holds on the source (or its system) when one is named, else on any source or system.
    The DSAR erasure engine asks this before it erases anything (GDPR Art. 17(3))."""
    subject_id = subject.pk if isinstance(subject, DataSubject) else subject
    covering = Q(subject_id=subject_id)
    if source is None:
        covering |= Q(source__isnull=False) | Q(system__isnull=False)
    else:
        covering |= Q(source_id=source.pk) | Q(system_id=source.system_id)
    return holds_active(at=at).filter(covering).order_by("starts_at", "pk")


def hold_reasons(holds: Iterable[LegalHold]) -> list[str]:
    """The Art. 17(3) exceptions behind these holds, as the subject may be told them: the
    reason's label only, never the staff's free-text detail."""
    return sorted({str(LegalHoldReason(h.reason).label) for h in holds})


def held_sources_for_subject(
    *, subject: DataSubject | UUID | str, at: datetime | None = None
) -> dict[int, str]:
    """``{log source id: reason}`` for every enabled source whose data of this subject a
    hold keeps: all of them under a subject hold, else those under a source or system
    hold. The reason names the exception (e.g. "GDPR Art. 17(3)(e): establishment, exercise
    or defence of legal claims") and holds no personal data. This is the body
    ``dsar.holds.held_sources_for`` is meant to call."""
    subject_id = subject.pk if isinstance(subject, DataSubject) else subject
    holds = list(legal_holds_covering(subject=subject_id, at=at))
    if not holds:
        return {}
    subject_holds = [h for h in holds if h.subject_id is not None]
    result: dict[int, str] = {}
    for source in LogSource.objects.filter(enabled=True):
        covering = subject_holds + [
            h for h in holds if h.source_id == source.pk or h.system_id == source.system_id
        ]
        if covering:
            result[source.pk] = "; ".join(hold_reasons(covering))
    return result
