"""The built-in log store's consent guard: no new conversation logs for a customer who
withdrew, objected to or opted out of conversation logging (GDPR Art. 7(3), Art. 21)."""

from __future__ import annotations

from collections import Counter, defaultdict
from uuid import UUID

from compliance.ingest import ConversationIn
from compliance.models import Conversation, Message, System
from consent.models import CONVERSATION_LOGGING, ConsentState, ConsentStatus
from consent.services import ingest_refusal_count

REASONS = {
    ConsentStatus.WITHDRAWN: "The customer has withdrawn consent to conversation logging; "
    "this conversation was not stored.",
    ConsentStatus.OBJECTED: "The customer has objected to conversation logging "
    "(GDPR Art. 21); this conversation was not stored.",
    ConsentStatus.OPTED_OUT: "The customer has opted out of conversation logging; "
    "this conversation was not stored.",
}


def conversation_logging_guard(
    items: list[ConversationIn],
    subjects: list[UUID | None],
    systems: dict[str, System],
) -> dict[int, str]:
    """Refuse the items of customers who said no to conversation logging. Re-sending a
    conversation that is already fully stored is not refused: it stores nothing new, and
    the ingest is idempotent by design."""
    subject_ids = {s for s in subjects if s is not None}
    if not subject_ids:
        return {}
    refusing = _refusing(subject_ids)
    if not refusing:
        return {}
    flagged = [i for i, s in enumerate(subjects) if s is not None and s in refusing]
    keys = {(systems[items[i]["system"]].pk, items[i]["conversation_id"]) for i in flagged}
    stored = {
        (c.system_id, c.external_id): c.pk
        for c in Conversation.objects.filter(
            system_id__in={k[0] for k in keys}, external_id__in={k[1] for k in keys}
        ).only("id", "system_id", "external_id")
    }
    sequences: dict[int, set[int]] = defaultdict(set)
    for conversation_id, sequence in Message.objects.filter(
        conversation_id__in=stored.values()
    ).values_list("conversation_id", "sequence"):
        sequences[conversation_id].add(sequence)

    refused: dict[int, str] = {}
    for i in flagged:
        item = items[i]
        conversation = stored.get((systems[item["system"]].pk, item["conversation_id"]))
        new_messages = conversation is None or any(
            m["sequence"] not in sequences[conversation] for m in item["messages"]
        )
        if new_messages:
            refused[i] = REASONS[ConsentStatus(refusing[subjects[i]])]
    for system_slug, count in Counter(items[i]["system"] for i in refused).items():
        ingest_refusal_count(system_slug=system_slug, count=count)
    return refused


def _refusing(subject_ids: set[UUID]) -> dict[UUID, str]:
    """{subject id: status} of those of these subjects whose conversation-logging state is
    anything but granted."""
    return dict(
        # __any: one array parameter, not a placeholder per customer (compliance.lookups).
        ConsentState.objects.filter(
            subject_id__any=list(subject_ids), purpose__slug=CONVERSATION_LOGGING
        )
        .exclude(status=ConsentStatus.GRANTED)
        .values_list("subject_id", "status")
    )
