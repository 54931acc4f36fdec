"""Read queries of the core domain worth a name."""

from __future__ import annotations

from django.db.models import Count, Max, Min, QuerySet

from compliance.models import Conversation, DataSubject, SubjectIdentity


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
