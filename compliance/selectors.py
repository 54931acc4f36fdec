"""Read queries of the core domain worth a name."""

from __future__ import annotations

from django.db.models import Count, Max, Min, QuerySet

from compliance.models import (
    IDENTITY_DIGEST_COLUMNS,
    Conversation,
    DataSubject,
    SubjectIdentity,
)


def subject_find_by_identity(*, identity_type: str, value: str) -> DataSubject | None:
    """One indexed query on (type, value). ``value`` must already be normalized."""
    identity = (
        SubjectIdentity.objects.select_related("subject")
        .filter(type=identity_type, value=value)
        .first()
    )
    return identity.subject if identity else None


def subject_list() -> QuerySet[DataSubject]:
    return DataSubject.objects.prefetch_related("identities")


def subject_conversation_summary(*, subject: DataSubject) -> QuerySet:
    """Per system: how many conversations, first and last, for a subject's overview."""
    return (
        Conversation.objects.filter(subject=subject)
        .values("system__slug", "system__name")
        .annotate(conversations=Count("id"), first=Min("started_at"), last=Max("started_at"))
        .order_by("system__name")
    )


def subject_identity_find_by_hash(
    *, identity_type: str, hash_format: str, digest: str
) -> SubjectIdentity | None:
    """The stored identity whose normalized value has this digest (``hash_format`` one of
    sha256, sha1, md5; ``digest`` in hex, either case). One indexed query on (type, digest)."""
    column = IDENTITY_DIGEST_COLUMNS.get(hash_format)
    if column is None:
        raise ValueError(f"Unknown hash format {hash_format!r}.")
    return (
        SubjectIdentity.objects.select_related("subject")
        .filter(type=identity_type, **{column: digest.strip().lower()})
        .order_by("pk")
        .first()
    )


def subject_find_by_hashed_identity(
    *, identity_type: str, hash_format: str, digest: str
) -> DataSubject | None:
    """The subject owning an identity named only by its digest (OpenDSR hashed identities)."""
    identity = subject_identity_find_by_hash(
        identity_type=identity_type, hash_format=hash_format, digest=digest
    )
    return identity.subject if identity else None


def conversations_visible(*, client) -> QuerySet[Conversation]:
    """Conversations an API client may read: its own system's if it is bound to one."""
    queryset = Conversation.objects.select_related("system", "disclosure")
    if client.system_id is not None:
        queryset = queryset.filter(system_id=client.system_id)
    return queryset
