"""Actions that change the core domain. Views, the admin, the API, tasks and commands all
call these; each owns its transaction and writes an audit event."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping

from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.audit import audit_record
from compliance.identities import InvalidIdentity, normalize_identity
from compliance.models import (
    AIDisclosure,
    ApiClient,
    ApiKey,
    DataSubject,
    IdentityType,
    Jurisdiction,
    LogSource,
    SubjectIdentity,
    System,
)
from compliance.selectors import subject_find_by_identity

KNOWN_SCOPES = {
    "logs:write": "Push conversation logs to the built-in store.",
    "logs:read": "Read conversation logs.",
    "subjects:read": "Look up data subjects and their identities.",
    "subjects:write": "Create data subjects.",
    "consent:read": "Ask whether a subject's data may be used for a purpose.",
    "consent:write": "Record consent events.",
    "dsar:write": "File data subject requests.",
    "dsar:read": "Follow data subject requests and download their results.",
    "dsar:verified": "Requests filed by this client arrive with the identity verified.",
    "sources:read": "Read the configured log sources.",
    "webhooks:manage": "Manage webhook subscriptions.",
}


class ServiceError(Exception):
    """A problem the caller caused; ``field`` points at the input that caused it."""

    def __init__(self, message: str, *, field: str = "", code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class ConflictError(ServiceError):
    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message, field=field, code="conflict")


class ForbiddenError(ServiceError):
    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message, field=field, code="permission_denied")


def normalize_identities(raw: Mapping[str, object], *, field: str = "identities") -> dict[str, str]:
    """Normalize a ``{type: value}`` mapping; raise ServiceError naming the bad field."""
    if not raw:
        raise ServiceError("Give at least one identity: customer_id, email or phone.", field=field)
    normalized: dict[str, str] = {}
    for identity_type, value in raw.items():
        if value in (None, ""):
            continue
        try:
            normalized[identity_type] = normalize_identity(identity_type, value)
        except InvalidIdentity as exc:
            raise ServiceError(str(exc), field=f"{field}.{identity_type}") from None
    if not normalized:
        raise ServiceError("Give at least one identity: customer_id, email or phone.", field=field)
    return normalized


def _subject_for_identities(identities: dict[str, str], *, field: str) -> DataSubject | None:
    found: DataSubject | None = None
    for identity_type, value in identities.items():
        subject = subject_find_by_identity(identity_type=identity_type, value=value)
        if subject is None:
            continue
        if found is not None and subject.pk != found.pk:
            raise ConflictError("These identities belong to different data subjects.", field=field)
        found = subject
    return found


def _attach_identities(subject: DataSubject, identities: dict[str, str]) -> list[str]:
    added = []
    for identity_type, value in identities.items():
        identity, created = SubjectIdentity.objects.get_or_create(
            type=identity_type, value=value, defaults={"subject": subject}
        )
        if identity.subject_id != subject.pk:
            # A concurrent transaction gave this identity to another subject after we looked.
            # get_or_create would hand us theirs and leave ours without it (an orphan subject
            # when we just created it); fail so subject_get_or_create looks again.
            raise IntegrityError("identity registered concurrently")
        if created:
            added.append(identity_type)
    customer_id = identities.get(IdentityType.CUSTOMER_ID)
    if customer_id and not subject.external_id:
        subject.external_id = customer_id
        subject.save(update_fields=["external_id", "updated_at"])
    return added


def subject_create(
    *,
    identities: Mapping[str, object],
    actor: str,
    display_name: str = "",
    jurisdiction: str = Jurisdiction.OTHER,
) -> DataSubject:
    """Create a subject; refuse if any identity is already someone's."""
    normalized = normalize_identities(identities)
    if jurisdiction not in Jurisdiction.values:
        raise ServiceError("Unknown jurisdiction.", field="jurisdiction")
    try:
        with transaction.atomic():
            if _subject_for_identities(normalized, field="identities") is not None:
                raise ConflictError(
                    "A data subject with one of these identities exists.", field="identities"
                )
            subject = DataSubject.objects.create(
                display_name=display_name.strip(),
                jurisdiction=jurisdiction,
                external_id=normalized.get(IdentityType.CUSTOMER_ID),
            )
            SubjectIdentity.objects.bulk_create(
                SubjectIdentity(subject=subject, type=t, value=v) for t, v in normalized.items()
            )
            audit_record(
                actor=actor,
                action="subject.created",
                target=subject,
                detail={"identity_types": sorted(normalized)},
            )
    except IntegrityError:
        # Another transaction registered the same identity between our check and insert.
        raise ConflictError(
            "A data subject with one of these identities exists.", field="identities"
        ) from None
    return subject


def subject_get_or_create(
    *,
    identities: Mapping[str, object],
    actor: str,
    jurisdiction: str = Jurisdiction.OTHER,
    field: str = "subject",
) -> tuple[DataSubject, bool]:
    """Find the subject that owns any of these identities, or create one. Identities not yet
    known are attached to the subject found."""
    normalized = normalize_identities(identities, field=field)
    for _attempt in range(2):
        try:
            with transaction.atomic():
                subject = _subject_for_identities(normalized, field=field)
                if subject is not None:
                    added = _attach_identities(subject, normalized)
                    if added:
                        audit_record(
                            actor=actor,
                            action="subject.identities_added",
                            target=subject,
                            detail={"identity_types": added},
                        )
                    return subject, False
                subject = DataSubject.objects.create(
                    jurisdiction=jurisdiction,
                    external_id=normalized.get(IdentityType.CUSTOMER_ID),
                )
                _attach_identities(subject, normalized)
                audit_record(
                    actor=actor,
                    action="subject.created",
                    target=subject,
                    detail={"identity_types": sorted(normalized)},
                )
                return subject, True
        except IntegrityError:
            continue  # lost a race with a concurrent creator: look again
    raise ConflictError("These identities are being registered concurrently; retry.", field=field)


def subject_update(
    *,
    subject: DataSubject,
    actor: str,
    display_name: str | None = None,
    jurisdiction: str | None = None,
) -> DataSubject:
    changed = []
    if display_name is not None and display_name != subject.display_name:
        subject.display_name = display_name.strip()
        changed.append("display_name")
    if jurisdiction is not None and jurisdiction != subject.jurisdiction:
        if jurisdiction not in Jurisdiction.values:
            raise ServiceError("Unknown jurisdiction.", field="jurisdiction")
        subject.jurisdiction = jurisdiction
        changed.append("jurisdiction")
    if changed:
        with transaction.atomic():
            subject.save(update_fields=[*changed, "updated_at"])
            audit_record(
                actor=actor, action="subject.updated", target=subject, detail={"fields": changed}
            )
    return subject


def system_save(*, system: System, actor: str, created: bool) -> System:
    with transaction.atomic():
        system.save()
        audit_record(
            actor=actor,
            action="system.created" if created else "system.updated",
            target=system,
            detail={"slug": system.slug},
        )
    return system


def log_source_save(*, source: LogSource, actor: str, created: bool) -> LogSource:
    """Save a log source a DPO configured. The audit event names the connector and the
    settings' keys, never their values: a connection string may hold a password."""
    with transaction.atomic():
        source.save()
        audit_record(
            actor=actor,
            action="log_source.created" if created else "log_source.updated",
            target=source,
            detail={
                "system": source.system.slug,
                "connector": source.connector,
                "enabled": source.enabled,
                "config_keys": sorted(source.config or {}),
            },
        )
    return source


def disclosure_publish(*, system: System, text: str, actor: str) -> AIDisclosure:
    """Publish a new version of a system's AI disclosure (EU AI Act Art. 50). Versions are
    never edited: what a customer was shown must stay provable."""
    text = text.strip()
    if not text:
        raise ServiceError("The disclosure text is empty.", field="text")
    with transaction.atomic():
        System.objects.select_for_update().filter(pk=system.pk).first()
        latest = system.disclosures.order_by("-version").first()
        if latest is not None and latest.text == text:
            return latest
        disclosure = AIDisclosure.objects.create(
            system=system, version=(latest.version + 1) if latest else 1, text=text
        )
        audit_record(
            actor=actor,
            action="disclosure.published",
            target=disclosure,
            detail={"system": system.slug, "version": disclosure.version},
        )
    return disclosure


def _key_digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _api_auth_changed() -> None:
    # compliance.auth caches authenticated keys; it imports this module, hence the late import.
    from compliance.auth import api_auth_cache_invalidate

    api_auth_cache_invalidate()


def api_client_create(
    *, name: str, scopes: Iterable[str], actor: str, system: System | None = None
) -> ApiClient:
    scopes = sorted(set(scopes))
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:
        raise ServiceError(f"Unknown scopes: {', '.join(unknown)}.", field="scopes")
    if not name.strip():
        raise ServiceError("A client needs a name.", field="name")
    with transaction.atomic():
        if ApiClient.objects.filter(name=name.strip()).exists():
            raise ConflictError("An API client with this name exists.", field="name")
        client = ApiClient.objects.create(name=name.strip(), scopes=scopes, system=system)
        audit_record(
            actor=actor,
            action="api_client.created",
            target=client,
            detail={"scopes": scopes, "system": system.slug if system else None},
        )
    return client


def api_client_update(*, client: ApiClient, scopes: Iterable[str], actor: str,
                      system: System | None) -> ApiClient:
    scopes = sorted(set(scopes))
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:
        raise ServiceError(f"Unknown scopes: {', '.join(unknown)}.", field="scopes")
    with transaction.atomic():
        before = ApiClient.objects.select_for_update().get(pk=client.pk)
        ApiClient.objects.filter(pk=client.pk).update(scopes=scopes, system=system)
        _api_auth_changed()
        audit_record(actor=actor, action="api_client.updated", target=client,
                     detail={"scopes_before": before.scopes, "scopes": scopes,
                             "system": system.slug if system else None})
    client.refresh_from_db()
    return client


def api_key_issue(*, client: ApiClient, actor: str) -> tuple[ApiKey, str]:
    """Issue a key and return it with its raw value, which is never stored or shown again."""
    if client.revoked_at is not None:
        raise ServiceError("This API client is revoked.", field="client")
    raw = "pcs_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        key = ApiKey.objects.create(client=client, prefix=raw[:10], digest=_key_digest(raw))
        audit_record(
            actor=actor,
            action="api_key.issued",
            target=key,
            detail={"client": client.name, "prefix": key.prefix},
        )
    return key, raw


def api_key_revoke(*, key: ApiKey, actor: str) -> ApiKey:
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        _api_auth_changed()
        if updated:
            audit_record(
                actor=actor,
                action="api_key.revoked",
                target=key,
                detail={"client": key.client.name, "prefix": key.prefix},
            )
    key.refresh_from_db()
    return key


def api_client_revoke(*, client: ApiClient, actor: str) -> ApiClient:
    now = timezone.now()
    with transaction.atomic():
        updated = ApiClient.objects.filter(pk=client.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        client.keys.filter(revoked_at__isnull=True).update(revoked_at=now)
        _api_auth_changed()
        if updated:
            audit_record(
                actor=actor,
                action="api_client.revoked",
                target=client,
                detail={"client": client.name},
            )
    client.refresh_from_db()
    return client


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The live key for this raw value, or None if unknown or revoked."""
    key = (
        ApiKey.objects.select_related("client", "client__system")
        .filter(
            digest=_key_digest(raw_key), revoked_at__isnull=True, client__revoked_at__isnull=True
        )
        .first()
    )
    return key
