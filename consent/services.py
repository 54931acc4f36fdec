"""Every change to purposes, notices and consents. The API, the admin, the portal, the DSAR
app and the demo seed all call these; each owns its transaction, writes an audit event in
it, and invalidates the consent-check cache only after it commits (see consent/cache.py).

For the DSAR app:

- ``consent_object_legitimate_interests(subject=..., actor=..., source=...)``: an objection
  under GDPR Art. 21 turns off every purpose based on legitimate interest.
- ``consent_withdraw`` / ``consent_object`` / ``consent_opt_out`` for one purpose.
- A restriction (GDPR Art. 18) is not a consent event: whoever sets or lifts
  ``restricted_at`` calls ``consent.cache.subjects_changed_on_commit([subject.pk])`` in
  the same transaction, since the check's hot path caches it (consent/cache.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import F
from django.utils import timezone

from compliance.audit import audit_record
from compliance.models import DataCategory, DataSubject, System
from compliance.services import ConflictError, ServiceError
from consent import cache
from consent.builtin import builtin_purpose
from consent.models import (
    SALE_SHARING,
    STATUS_AFTER,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    IngestRefusal,
    LawfulBasis,
    Purpose,
    PurposeNotice,
    ReceiptPurposeCategory,
)
from integrations.services import webhook_emit

# Evidence a caller may attach, besides the hashed IP the service computes itself. Anything
# else is refused so that no raw personal data slips into the evidence by accident.
EVIDENCE_KEYS = {"system", "client", "collection_point", "dsar_request"}
MAX_EVIDENCE_CHARS = 100

# Consent and objections concern purposes the subject can refuse; processing necessary for
# a contract or a legal obligation cannot be refused (GDPR Art. 6(1)(b)/(c); Art. 21 covers
# only (e) and (f)). Those purposes take no events.
REFUSABLE_BASES = {LawfulBasis.CONSENT, LawfulBasis.LEGITIMATE_INTEREST}


class NotFoundError(ServiceError):
    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message, field=field, code="not_found")


def ip_hash(ip_address: str) -> str:
    """A keyed hash of an IP address: the same address gives the same hash, so evidence can
    be matched, but the address cannot be recovered by hashing the whole IPv4 space."""
    digest = hmac.new(settings.SECRET_KEY.encode(), ip_address.strip().encode(), hashlib.sha256)
    return digest.hexdigest()


def _clean_evidence(evidence: Mapping[str, object] | None, ip_address: str | None) -> dict:
    cleaned: dict[str, object] = {}
    for key, value in (evidence or {}).items():
        if key not in EVIDENCE_KEYS:
            raise ServiceError(
                f"Evidence may hold only: {', '.join(sorted(EVIDENCE_KEYS))}.",
                field=f"evidence.{key}",
            )
        if not isinstance(value, str) or len(value) > MAX_EVIDENCE_CHARS:
            raise ServiceError(
                f"Evidence values are text of at most {MAX_EVIDENCE_CHARS} characters.",
                field=f"evidence.{key}",
            )
        cleaned[key] = value
    if ip_address:
        cleaned["ip_hash"] = ip_hash(ip_address)
    return cleaned


# --- purposes and notices -------------------------------------------------------------------


def _check_purpose_fields(*, slug: str, name: str, description: str, lawful_basis: str) -> None:
    if not slug.strip():
        raise ServiceError("A purpose needs a slug.", field="slug")
    if not name.strip():
        raise ServiceError("A purpose needs a name.", field="name")
    if not description.strip():
        raise ServiceError("Describe the purpose in plain language.", field="description")
    if lawful_basis not in LawfulBasis.values:
        raise ServiceError(
            f"The lawful basis is one of: {', '.join(LawfulBasis.values)}.", field="lawful_basis"
        )


def purpose_create(
    *,
    slug: str,
    name: str,
    description: str,
    lawful_basis: str,
    notice_text: str,
    actor: str,
    sensitive: bool = False,
    sold_or_shared: bool = False,
    third_party_name: str = "",
    receipt_category: str = ReceiptPurposeCategory.CORE_FUNCTION,
    data_categories: Iterable[DataCategory] = (),
    systems: Iterable[System] = (),
) -> Purpose:
    """Create a purpose with its first notice; a purpose is never without a text to show."""
    _check_purpose_fields(slug=slug, name=name, description=description, lawful_basis=lawful_basis)
    if not notice_text.strip():
        raise ServiceError("A purpose needs the notice text customers are shown.", field="notice")
    if receipt_category not in ReceiptPurposeCategory.values:
        raise ServiceError("Unknown receipt purpose category.", field="receipt_category")
    try:
        with transaction.atomic():
            purpose = Purpose.objects.create(
                slug=slug.strip(),
                name=name.strip(),
                description=description.strip(),
                lawful_basis=lawful_basis,
                sensitive=sensitive,
                sold_or_shared=sold_or_shared,
                third_party_name=third_party_name.strip(),
                receipt_category=receipt_category,
            )
            purpose.data_categories.set(list(data_categories))
            purpose.systems.set(list(systems))
            PurposeNotice.objects.create(purpose=purpose, version=1, text=notice_text.strip())
            audit_record(
                actor=actor,
                action="purpose.created",
                target=purpose,
                detail={"slug": purpose.slug, "lawful_basis": lawful_basis, "notice_version": 1},
            )
    except IntegrityError:
        raise ConflictError("A purpose with this slug exists.", field="slug") from None
    return purpose


def purpose_save(*, purpose: Purpose, actor: str, created: bool) -> Purpose:
    """Save the admin's edit of a purpose's descriptive fields. Notices change only through
    ``purpose_notice_publish``."""
    _check_purpose_fields(
        slug=purpose.slug,
        name=purpose.name,
        description=purpose.description,
        lawful_basis=purpose.lawful_basis,
    )
    with transaction.atomic():
        if not created:
            before = Purpose.objects.select_for_update().get(pk=purpose.pk)
            if before.slug != purpose.slug:
                # Plugins ask by slug; renaming would silently break every caller.
                raise ServiceError("A purpose's slug cannot change.", field="slug")
        purpose.save()
        audit_record(
            actor=actor,
            action="purpose.created" if created else "purpose.updated",
            target=purpose,
            detail={"slug": purpose.slug, "lawful_basis": purpose.lawful_basis},
        )
    return purpose


def purpose_notice_publish(*, purpose: Purpose, text: str, actor: str) -> PurposeNotice:
    """Publish a new notice version. Earlier versions stay: each consent names the version the
    customer saw (GDPR Art. 7(1)). Publishing the current text again changes nothing."""
    text = text.strip()
    if not text:
        raise ServiceError("The notice text is empty.", field="text")
    with transaction.atomic():
        Purpose.objects.select_for_update().filter(pk=purpose.pk).first()
        latest = purpose.notices.order_by("-version").first()
        if latest is not None and latest.text == text:
            return latest
        notice = PurposeNotice.objects.create(
            purpose=purpose, version=(latest.version + 1) if latest else 1, text=text
        )
        audit_record(
            actor=actor,
            action="purpose.notice_published",
            target=notice,
            detail={"purpose": purpose.slug, "version": notice.version},
        )
    return notice


# --- consent events -------------------------------------------------------------------------


def _notice_for(purpose: Purpose, notice_version: int | None) -> PurposeNotice | None:
    if notice_version is None:
        return purpose.notices.order_by("-version").first()
    notice = purpose.notices.filter(version=notice_version).first()
    if notice is None:
        raise ServiceError("This purpose has no notice with this version.", field="notice_version")
    return notice


def consent_record(
    *,
    subject: DataSubject,
    purpose: Purpose,
    action: str,
    source: str,
    actor: str,
    notice_version: int | None = None,
    evidence: Mapping[str, object] | None = None,
    ip_address: str | None = None,
) -> ConsentEvent:
    """Append one consent event and bring the subject's state for the purpose in line with
    it, in one transaction. The newest event always decides the state: events for one
    subject are serialized by a lock on the subject row.

    ``notice_version`` defaults to the purpose's current notice. ``ip_address`` is stored
    only as a keyed hash."""
    if action not in ConsentAction.values:
        raise ServiceError(
            f"The action is one of: {', '.join(ConsentAction.values)}.", field="action"
        )
    if source not in ConsentSource.values:
        raise ServiceError(
            f"The source is one of: {', '.join(ConsentSource.values)}.", field="source"
        )
    if purpose.lawful_basis not in REFUSABLE_BASES:
        raise ServiceError(
            f"'{purpose.slug}' is processed because it is necessary "
            f"({purpose.get_lawful_basis_display()}), not by consent: it cannot be granted, "
            "withdrawn, objected to or opted out of. A customer can ask for restriction or "
            "erasure instead.",
            field="purpose",
        )
    cleaned = _clean_evidence(evidence, ip_address)
    notice = _notice_for(purpose, notice_version)
    with transaction.atomic():
        jurisdiction = (
            DataSubject.objects.select_for_update()
            .filter(pk=subject.pk)
            .values_list("jurisdiction", flat=True)
            .first()
        )
        if jurisdiction is None:
            raise NotFoundError("This data subject does not exist.", field="subject")
        now = timezone.now()
        event = ConsentEvent.objects.create(
            subject_id=subject.pk,
            purpose=purpose,
            action=action,
            source=source,
            notice=notice,
            jurisdiction=jurisdiction,
            occurred_at=now,
            actor=actor,
            evidence=cleaned,
        )
        state = _state_apply(event)
        if action in (ConsentAction.WITHDRAW, ConsentAction.OBJECT):
            # Retention's withdrawal rule: a policy may say that a customer's logs go when
            # they withdraw consent to conversation logging (GDPR Art. 17(1)(b)). It only
            # plans a run here; a worker carries it out after this transaction commits.
            from compliance.retention.services import retention_on_consent_withdrawn

            retention_on_consent_withdrawn(subject=subject, purpose_slug=purpose.slug, actor=actor)
        audit_record(
            actor=actor,
            action=f"consent.{action}",
            target=event,
            detail={
                "subject": str(subject.pk),
                "purpose": purpose.slug,
                "source": source,
                "notice_version": notice.version if notice else None,
            },
        )
        # Other systems must stop (or may start) using the data for this purpose: told
        # through the webhook outbox, in this transaction (GDPR Art. 7(3), CCPA §7026).
        webhook_emit(
            event_type="consent.changed",
            system=None,
            subject_id=subject.pk,
            payload={
                "purpose": purpose.slug,
                "action": action,
                "state": state.status,
                "source": source,
                "occurred_at": now,
            },
        )
        cache.subjects_changed_on_commit([subject.pk])
    return event


def _state_apply(event: ConsentEvent) -> ConsentState:
    status = STATUS_AFTER[ConsentAction(event.action)]
    state = ConsentState.objects.filter(
        subject_id=event.subject_id, purpose_id=event.purpose_id
    ).first()
    if state is None:
        return ConsentState.objects.create(
            subject_id=event.subject_id,
            purpose_id=event.purpose_id,
            status=status,
            source=event.source,
            since=event.occurred_at,
            last_event=event,
        )
    if state.status != status:
        state.since = event.occurred_at
    state.status = status
    state.source = event.source
    state.last_event = event
    state.save(update_fields=["status", "source", "since", "last_event", "updated_at"])
    return state


def consent_grant(
    *,
    subject: DataSubject,
    purpose: Purpose,
    source: str,
    actor: str,
    notice_version: int | None = None,
    evidence: Mapping[str, object] | None = None,
    ip_address: str | None = None,
) -> ConsentEvent:
    return consent_record(
        subject=subject,
        purpose=purpose,
        action=ConsentAction.GRANT,
        source=source,
        actor=actor,
        notice_version=notice_version,
        evidence=evidence,
        ip_address=ip_address,
    )


def consent_withdraw(
    *,
    subject: DataSubject,
    purpose: Purpose,
    source: str,
    actor: str,
    notice_version: int | None = None,
    evidence: Mapping[str, object] | None = None,
    ip_address: str | None = None,
) -> ConsentEvent:
    """GDPR Art. 7(3): withdrawing takes exactly what granting takes, nothing more."""
    return consent_record(
        subject=subject,
        purpose=purpose,
        action=ConsentAction.WITHDRAW,
        source=source,
        actor=actor,
        notice_version=notice_version,
        evidence=evidence,
        ip_address=ip_address,
    )


def consent_object(
    *,
    subject: DataSubject,
    purpose: Purpose,
    source: str,
    actor: str,
    notice_version: int | None = None,
    evidence: Mapping[str, object] | None = None,
    ip_address: str | None = None,
) -> ConsentEvent:
    """GDPR Art. 21: an objection stops processing based on legitimate interest."""
    return consent_record(
        subject=subject,
        purpose=purpose,
        action=ConsentAction.OBJECT,
        source=source,
        actor=actor,
        notice_version=notice_version,
        evidence=evidence,
        ip_address=ip_address,
    )


def consent_opt_out(
    *,
    subject: DataSubject,
    purpose: Purpose,
    source: str,
    actor: str,
    notice_version: int | None = None,
    evidence: Mapping[str, object] | None = None,
    ip_address: str | None = None,
) -> ConsentEvent:
    """CCPA §7026/§7027: an opt-out needs no identity verification."""
    return consent_record(
        subject=subject,
        purpose=purpose,
        action=ConsentAction.OPT_OUT,
        source=source,
        actor=actor,
        notice_version=notice_version,
        evidence=evidence,
        ip_address=ip_address,
    )


def consent_opt_in(
    *,
    subject: DataSubject,
    purpose: Purpose,
    source: str,
    actor: str,
    notice_version: int | None = None,
    evidence: Mapping[str, object] | None = None,
    ip_address: str | None = None,
) -> ConsentEvent:
    return consent_record(
        subject=subject,
        purpose=purpose,
        action=ConsentAction.OPT_IN,
        source=source,
        actor=actor,
        notice_version=notice_version,
        evidence=evidence,
        ip_address=ip_address,
    )


def consent_object_legitimate_interests(
    *, subject: DataSubject, actor: str, source: str
) -> list[ConsentEvent]:
    """GDPR Art. 21(1): an objection to processing turns off every purpose based on
    legitimate interest that is not already objected to. All or nothing."""
    with transaction.atomic():
        objected = set(
            ConsentState.objects.filter(
                subject_id=subject.pk, status=ConsentStatus.OBJECTED
            ).values_list("purpose_id", flat=True)
        )
        purposes = Purpose.objects.filter(lawful_basis=LawfulBasis.LEGITIMATE_INTEREST).exclude(
            pk__in=objected
        )
        return [
            consent_object(subject=subject, purpose=purpose, source=source, actor=actor)
            for purpose in purposes.order_by("slug")
        ]


def gpc_signal_record(
    *,
    subject: DataSubject,
    actor: str,
    evidence: Mapping[str, object] | None = None,
    ip_address: str | None = None,
) -> ConsentEvent | None:
    """Record a Global Privacy Control signal as an opt-out of sale/sharing (CCPA §7025).
    A subject already opted out gets no new event, so a signal sent with every request does
    not flood the history. The signal's absence never opts anyone back in: there is no
    counterpart to this function."""
    purpose = builtin_purpose(SALE_SHARING)
    with transaction.atomic():
        # Lock first, so that two requests carrying the signal record it once.
        if not DataSubject.objects.select_for_update().filter(pk=subject.pk).exists():
            raise NotFoundError("This data subject does not exist.", field="subject")
        already = ConsentState.objects.filter(
            subject_id=subject.pk, purpose=purpose, status=ConsentStatus.OPTED_OUT
        ).exists()
        if already:
            return None
        return consent_opt_out(
            subject=subject,
            purpose=purpose,
            source=ConsentSource.GPC,
            actor=actor,
            evidence=evidence,
            ip_address=ip_address,
        )


# --- refusals of the built-in log store -----------------------------------------------------


def ingest_refusal_count(*, system_slug: str, count: int) -> None:
    """Add ``count`` refused conversations to a system's counter.

    It is called from inside the ingest transaction, which the refusal then rolls back, so
    on PostgreSQL the counter is written through a connection of its own (autocommit, one
    atomic upsert). SQLite allows one writer at a time and the ingest holds that lock, so
    there the count waits for the end of the request (see ``flush_pending_refusals``).
    """
    if count <= 0:
        return
    now = timezone.now()
    if not connection.in_atomic_block:
        _refusal_upsert(connection, system_slug, count, now)
    elif connection.vendor == "postgresql":
        side = connections.create_connection(connection.alias)
        try:
            _refusal_upsert(side, system_slug, count, now)
        finally:
            side.close()
    else:
        _PENDING.append((system_slug, count, now))


def _refusal_upsert(conn, system_slug: str, count: int, now: datetime) -> None:
    table = IngestRefusal._meta.db_table
    with conn.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (system_slug, count, last_refused_at) VALUES (%s, %s, %s) "  # noqa: S608
            f"ON CONFLICT (system_slug) DO UPDATE SET count = {table}.count + EXCLUDED.count, "
            "last_refused_at = EXCLUDED.last_refused_at",
            [system_slug, count, now],
        )


_PENDING: list[tuple[str, int, datetime]] = []


def flush_pending_refusals(**_kwargs) -> None:
    """Write refusal counts that had to wait for the ingest transaction to end (SQLite)."""
    while _PENDING:
        system_slug, count, now = _PENDING.pop()
        if connection.in_atomic_block:
            _PENDING.append((system_slug, count, now))
            return
        IngestRefusal.objects.get_or_create(system_slug=system_slug)
        IngestRefusal.objects.filter(system_slug=system_slug).update(
            count=F("count") + count, last_refused_at=now
        )
