"""Read side of consent: the consent check (the hot path) and a subject's overview.

A check answers from, in this order: a restriction (GDPR Art. 18), the subject's own refusal
of the purpose, an opt-out of sale/sharing or a GPC signal for purposes that sell or share
(CCPA §7025/§7026), a limit on sensitive personal information for purposes that use it
(§7027), the subject's own grant, and finally the default for the jurisdiction and the
purpose's lawful basis.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet

from compliance.identities import InvalidIdentity, parse_identity_ref
from compliance.models import DataSubject, Jurisdiction, SubjectIdentity
from compliance.services import ServiceError
from consent import cache
from consent.cache import Catalogue, PurposeInfo, StateRow, SubjectStates
from consent.models import (
    OPT_IN_JURISDICTIONS,
    SALE_SHARING,
    SENSITIVE_PI,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    LawfulBasis,
    Purpose,
)
from consent.services import NotFoundError


class Reason(enum.StrEnum):
    EXPLICIT_GRANT = "explicit_grant"
    DEFAULT = "default"
    WITHDRAWN = "withdrawn"
    OBJECTED = "objected"
    OPTED_OUT = "opted_out"
    GPC = "gpc"
    RESTRICTED = "restricted"
    UNKNOWN_SUBJECT_DEFAULT = "unknown_subject_default"


@dataclass(frozen=True)
class CheckResult:
    allowed: bool
    reason: str
    state_since: datetime | None


@dataclass(frozen=True)
class CheckRequest:
    subject: str  # type:value, as the caller wrote it
    purpose: str  # slug
    gpc: bool = False


@dataclass(frozen=True)
class CheckOutcome:
    result: CheckResult
    subject_id: uuid.UUID | None
    # True when a GPC signal came with this pair for a known subject not yet opted out of
    # sale/sharing: the caller records it (consent.services.gpc_signal_record).
    gpc_to_record: bool = False


def default_allowed(*, lawful_basis: str, jurisdiction: str) -> bool:
    """Consent-based processing is off until granted under the GDPR and UK GDPR (Art. 6(1)(a),
    Art. 7) and on until opted out elsewhere (CCPA). Processing on another basis is on;
    only an objection or a restriction turns it off."""
    if lawful_basis != LawfulBasis.CONSENT:
        return True
    return jurisdiction not in OPT_IN_JURISDICTIONS


def _refusal_reason(state: StateRow) -> str:
    if state.status == ConsentStatus.WITHDRAWN:
        return Reason.WITHDRAWN
    if state.status == ConsentStatus.OBJECTED:
        return Reason.OBJECTED
    return Reason.GPC if state.source == ConsentSource.GPC else Reason.OPTED_OUT


def decide(
    *,
    purpose: PurposeInfo,
    catalogue: Catalogue,
    jurisdiction: str,
    states: SubjectStates,
    known: bool,
    restricted_at: datetime | None = None,
    gpc: bool = False,
) -> CheckResult:
    if restricted_at is not None:
        # GDPR Art. 18: kept, but not otherwise processed.
        return CheckResult(False, Reason.RESTRICTED, restricted_at)
    own = states.get(purpose.id)
    if own is not None and own.status != ConsentStatus.GRANTED:
        return CheckResult(False, _refusal_reason(own), own.since)
    if purpose.sold_or_shared or purpose.slug == SALE_SHARING:
        sale = catalogue.by_slug.get(SALE_SHARING)
        opt_out = states.get(sale.id) if sale else None
        if opt_out is not None and opt_out.status != ConsentStatus.GRANTED:
            return CheckResult(False, _refusal_reason(opt_out), opt_out.since)
        if gpc:
            # CCPA §7025: the signal is an opt-out for this browser even before, or without,
            # a record of it.
            return CheckResult(False, Reason.GPC, None)
    if purpose.sensitive:
        spi = catalogue.by_slug.get(SENSITIVE_PI)
        limit = states.get(spi.id) if spi else None
        if limit is not None and limit.status != ConsentStatus.GRANTED:
            return CheckResult(False, _refusal_reason(limit), limit.since)
    if own is not None:
        return CheckResult(True, Reason.EXPLICIT_GRANT, own.since)
    allowed = default_allowed(lawful_basis=purpose.lawful_basis, jurisdiction=jurisdiction)
    return CheckResult(allowed, Reason.DEFAULT if known else Reason.UNKNOWN_SUBJECT_DEFAULT, None)


def _states_from_db(subject_ids: Sequence) -> dict:
    found: dict = {sid: {} for sid in subject_ids}
    rows = ConsentState.objects.filter(subject_id__in=subject_ids).values_list(
        "subject_id", "purpose_id", "status", "source", "since"
    )
    for subject_id, purpose_id, status, source, since in rows:
        found[subject_id][purpose_id] = StateRow(purpose_id, status, source, since)
    return found


def _subjects_by_identity(refs: set[tuple[str, str]]) -> list[tuple]:
    """(type, value, subject id, jurisdiction, restricted_at) of the known identities. On
    PostgreSQL one hand-written query: this runs on every check, and building the same query
    through the ORM costs more CPU than executing it."""
    if connection.vendor != "postgresql":
        return _subjects_by_identity_orm(refs)
    with connection.cursor() as cursor:
        if len(refs) == 1:
            cursor.execute(_SUBJECT_SQL, list(next(iter(refs))))
        else:
            types, values = zip(*refs, strict=True) if refs else ((), ())
            cursor.execute(_SUBJECTS_SQL, [list(types), list(values)])
        return cursor.fetchall()


_SELECT_SUBJECTS = (
    "SELECT i.type, i.value, i.subject_id, s.jurisdiction, s.restricted_at"  # noqa: S608
    f" FROM {SubjectIdentity._meta.db_table} i"
    f" JOIN {DataSubject._meta.db_table} s ON s.id = i.subject_id"
)
# Table names come from the models, values are bound parameters: nothing user-made is joined.
_SUBJECT_SQL = f"{_SELECT_SUBJECTS} WHERE i.type = %s AND i.value = %s"
_SUBJECTS_SQL = (
    f"{_SELECT_SUBJECTS}"  # noqa: S608
    " WHERE (i.type, i.value) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
)


def _subjects_by_identity_orm(refs: set[tuple[str, str]]) -> list[tuple]:
    wanted = Q(pk__in=[])
    by_type: dict[str, set[str]] = {}
    for identity_type, value in refs:
        by_type.setdefault(identity_type, set()).add(value)
    for identity_type, values in by_type.items():
        wanted |= Q(type=identity_type, value__in=values)
    return list(
        SubjectIdentity.objects.filter(wanted).values_list(
            "type", "value", "subject_id", "subject__jurisdiction", "subject__restricted_at"
        )
    )


def _parse_subjects(requests: Sequence[CheckRequest], field_of) -> list[tuple[str, str]]:
    refs = []
    for i, request in enumerate(requests):
        try:
            ref = parse_identity_ref(request.subject)
        except InvalidIdentity as exc:
            raise ServiceError(str(exc), field=field_of(i, "subject")) from None
        refs.append((ref["type"], ref["value"]))
    return refs


def consent_check_many(
    *,
    requests: Sequence[CheckRequest],
    unknown_jurisdiction: str | None = None,
    field_of=lambda i, name: f"checks[{i}].{name}",
) -> list[CheckOutcome]:
    """Answer (subject, purpose) pairs. Queries: one for the subjects (their restriction and
    jurisdiction are always read fresh), one cache round trip for the states, and one
    query for the states the cache did not hold. Raises ServiceError for a malformed
    identity and NotFoundError for an unknown purpose, before answering anything."""
    jurisdiction_default = unknown_jurisdiction or settings.CONSENT_UNKNOWN_SUBJECT_JURISDICTION
    if jurisdiction_default not in Jurisdiction.values:
        raise ServiceError(
            f"The jurisdiction is one of: {', '.join(Jurisdiction.values)}.", field="jurisdiction"
        )
    refs = _parse_subjects(requests, field_of)

    subjects = {
        (identity_type, value): (subject_id, jurisdiction, restricted_at)
        for identity_type, value, subject_id, jurisdiction, restricted_at in (
            _subjects_by_identity(set(refs))
        )
    }
    subject_ids = list({row[0] for row in subjects.values()})

    blobs, tokens, catalogue_token = cache.read(subject_ids, with_catalogue=True)
    catalogue = cache.catalogue(catalogue_token)
    if any(r.purpose not in catalogue.by_slug for r in requests):
        catalogue = cache.catalogue(catalogue_token, reload=True)  # perhaps created just now
    for i, request in enumerate(requests):
        if request.purpose not in catalogue.by_slug:
            raise NotFoundError(
                "No purpose has this slug; GET /api/v1/consent/purposes/ lists them.",
                field=field_of(i, "purpose"),
            )

    missing = [sid for sid in subject_ids if sid not in blobs]
    if missing:
        loaded = _states_from_db(missing)
        cache.store({sid: (tokens.get(sid), loaded[sid]) for sid in missing})
        blobs.update(loaded)

    sale = catalogue.by_slug.get(SALE_SHARING)
    outcomes = []
    for request, ref in zip(requests, refs, strict=True):
        purpose = catalogue.by_slug[request.purpose]
        known = subjects.get(ref)
        if known is None:
            result = decide(
                purpose=purpose,
                catalogue=catalogue,
                jurisdiction=jurisdiction_default,
                states={},
                known=False,
                gpc=request.gpc,
            )
            outcomes.append(CheckOutcome(result, None))
            continue
        subject_id, jurisdiction, restricted_at = known
        states = blobs.get(subject_id, {})
        result = decide(
            purpose=purpose,
            catalogue=catalogue,
            jurisdiction=jurisdiction,
            states=states,
            known=True,
            restricted_at=restricted_at,
            gpc=request.gpc,
        )
        sale_state = states.get(sale.id) if sale else None
        record = request.gpc and (
            sale_state is None or sale_state.status != ConsentStatus.OPTED_OUT
        )
        outcomes.append(CheckOutcome(result, subject_id, record))
    return outcomes


def consent_check(
    *, subject: str, purpose: str, gpc: bool = False, unknown_jurisdiction: str | None = None
) -> CheckOutcome:
    return consent_check_many(
        requests=[CheckRequest(subject=subject, purpose=purpose, gpc=gpc)],
        unknown_jurisdiction=unknown_jurisdiction,
        field_of=lambda i, name: name,
    )[0]


# --- a subject's overview -------------------------------------------------------------------


@dataclass(frozen=True)
class PurposeAnswer:
    purpose: Purpose
    result: CheckResult
    state: ConsentState | None


def subject_consent_overview(*, subject: DataSubject) -> list[PurposeAnswer]:
    """Every purpose with the answer a check would give now, read from the database."""
    purposes = list(Purpose.objects.order_by("slug"))
    catalogue = Catalogue(
        None,
        {p.slug: _info(p) for p in purposes},
        {p.pk: _info(p) for p in purposes},
    )
    states = {s.purpose_id: s for s in ConsentState.objects.filter(subject=subject)}
    rows = {pid: StateRow(pid, s.status, s.source, s.since) for pid, s in states.items()}
    return [
        PurposeAnswer(
            purpose=p,
            result=decide(
                purpose=catalogue.by_id[p.pk],
                catalogue=catalogue,
                jurisdiction=subject.jurisdiction,
                states=rows,
                known=True,
                restricted_at=subject.restricted_at,
            ),
            state=states.get(p.pk),
        )
        for p in purposes
    ]


def consent_answer(*, subject: DataSubject, purpose: Purpose) -> CheckResult:
    """The answer for one subject and purpose, read from the database (no cache)."""
    for row in subject_consent_overview(subject=subject):
        if row.purpose.pk == purpose.pk:
            return row.result
    raise NotFoundError("No purpose has this slug.", field="purpose")


def _info(purpose: Purpose) -> PurposeInfo:
    return PurposeInfo(
        id=purpose.pk,
        slug=purpose.slug,
        lawful_basis=purpose.lawful_basis,
        sensitive=purpose.sensitive,
        sold_or_shared=purpose.sold_or_shared,
    )


def subject_consent_history(*, subject: DataSubject) -> QuerySet[ConsentEvent]:
    """Every consent event of a subject, newest first."""
    return (
        ConsentEvent.objects.filter(subject=subject)
        .select_related("purpose", "notice")
        .order_by("-occurred_at", "-id")
    )


def purpose_list() -> QuerySet[Purpose]:
    return Purpose.objects.prefetch_related("notices", "data_categories", "systems").order_by(
        "slug"
    )


def event_by_receipt_id(*, receipt_id: uuid.UUID) -> ConsentEvent | None:
    return (
        ConsentEvent.objects.select_related("subject", "purpose", "notice")
        .prefetch_related("purpose__data_categories", "purpose__systems")
        .filter(receipt_id=receipt_id)
        .first()
    )
