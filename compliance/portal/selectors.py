"""Read queries behind the portal's pages. Every one is scoped to one subject: the portal
never loads a row it would then have to hide."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, QuerySet

from compliance.models import (
    AIDisclosure,
    AnswerFlag,
    Conversation,
    DataSubject,
    Message,
)
from compliance.selectors import subject_conversation_summary


@dataclass
class DisclosureShown:
    version: int
    text: str
    published_at: datetime
    conversations: int


@dataclass
class AssistantOverview:
    slug: str
    name: str
    conversations: int
    first: datetime
    last: datetime
    disclosures: list[DisclosureShown] = field(default_factory=list)
    # Conversations for which the plugin recorded no AI notice: shown, not hidden.
    without_disclosure: int = 0


def portal_assistant_overview(*, subject: DataSubject) -> list[AssistantOverview]:
    """Per AI assistant: the subject's conversations and the AI notices (EU AI Act Art. 50)
    they were shown, with text and version."""
    overview = {
        row["system__slug"]: AssistantOverview(
            slug=row["system__slug"],
            name=row["system__name"],
            conversations=row["conversations"],
            first=row["first"],
            last=row["last"],
        )
        for row in subject_conversation_summary(subject=subject)
    }
    shown = (
        Conversation.objects.filter(subject=subject)
        .values("system__slug", "disclosure_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = [(row["system__slug"], row["disclosure_id"], row["n"]) for row in shown]
    disclosures = AIDisclosure.objects.in_bulk([d for _, d, _ in counts if d is not None])
    for slug, disclosure_id, n in counts:
        entry = overview[slug]
        if disclosure_id is None:
            entry.without_disclosure += n
            continue
        disclosure = disclosures[disclosure_id]
        entry.disclosures.append(
            DisclosureShown(
                version=disclosure.version,
                text=disclosure.text,
                published_at=disclosure.published_at,
                conversations=n,
            )
        )
    for entry in overview.values():
        entry.disclosures.sort(key=lambda d: d.version)
    return list(overview.values())


def portal_conversation_list(*, subject: DataSubject) -> QuerySet[Conversation]:
    return (
        Conversation.objects.filter(subject=subject)
        .select_related("system", "disclosure")
        .annotate(message_count=Count("messages"))
        .order_by("-started_at", "-pk")
    )


def portal_conversation_get(*, subject: DataSubject, conversation_id: int) -> Conversation | None:
    return (
        Conversation.objects.select_related("system", "disclosure")
        .filter(pk=conversation_id, subject=subject)
        .first()
    )


def portal_conversation_messages(*, conversation: Conversation) -> QuerySet[Message]:
    return Message.objects.filter(conversation=conversation).order_by("sequence")


def portal_message_get(
    *, subject: DataSubject, conversation_id: int, message_id: int
) -> Message | None:
    return (
        Message.objects.select_related("conversation", "conversation__system")
        .filter(pk=message_id, conversation_id=conversation_id, conversation__subject=subject)
        .first()
    )


def portal_flags_by_message(
    *, subject: DataSubject, conversation: Conversation
) -> dict[int, AnswerFlag]:
    flags = AnswerFlag.objects.filter(subject=subject, message__conversation=conversation)
    return {flag.message_id: flag for flag in flags}
