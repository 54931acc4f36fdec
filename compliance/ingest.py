"""The built-in log store's ingest: plugins push conversations with their messages.

A batch is all or nothing (one transaction), and idempotent on
(system, conversation id, message sequence): re-sending a conversation stores only the
messages not yet stored. On PostgreSQL messages are streamed with COPY into a staging table
and inserted with ``ON CONFLICT DO NOTHING``, which is both the fastest path and safe
against two concurrent senders of the same conversation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NotRequired, TypedDict

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from compliance.audit import audit_record
from compliance.minimisation import minimise_text
from compliance.models import (
    AIDisclosure,
    Conversation,
    DataSubject,
    Message,
    MessageRole,
    SubjectIdentity,
    System,
)
from compliance.services import (
    ConflictError,
    ForbiddenError,
    ServiceError,
    normalize_identities,
    subject_get_or_create,
)

MAX_MESSAGE_CHARS = 20_000
MAX_MESSAGES_PER_CONVERSATION = 5_000


class MessageIn(TypedDict):
    sequence: int
    role: str
    text: str
    sent_at: datetime


class ConversationIn(TypedDict):
    system: str
    conversation_id: str
    messages: list[MessageIn]
    subject: NotRequired[dict[str, str] | None]
    started_at: NotRequired[datetime | None]
    disclosure_version: NotRequired[int | None]
    disclosure_shown_at: NotRequired[datetime | None]


@dataclass(frozen=True)
class IngestResult:
    conversations_created: int
    conversations_seen: int
    messages_created: int
    messages_skipped: int


# Checks other apps register (in their AppConfig.ready) to refuse conversations before they
# are stored, e.g. the consent app refusing logs of a customer who withdrew consent to
# conversation logging. A guard gets the batch's resolved subjects and systems and returns
# {item index: reason} for the items it refuses.
IngestGuard = Callable[
    [list["ConversationIn"], list[DataSubject | None], dict[str, System]], dict[int, str]
]
INGEST_GUARDS: list[IngestGuard] = []


def register_ingest_guard(guard: IngestGuard) -> None:
    if guard not in INGEST_GUARDS:
        INGEST_GUARDS.append(guard)


class IngestError(ServiceError):
    """Names the item of the batch (``conversations[3].messages[0].text``)."""


def _fail(index: int, field: str, message: str, exc: type[ServiceError] = IngestError):
    raise exc(
        message, field=f"conversations[{index}].{field}" if field else f"conversations[{index}]"
    )


def _check_shape(items: list[ConversationIn]) -> None:
    if not items:
        raise IngestError("The batch is empty.", field="conversations")
    if len(items) > settings.INGEST_MAX_BATCH:
        raise IngestError(
            f"A batch holds at most {settings.INGEST_MAX_BATCH} conversations.",
            field="conversations",
        )
    seen: set[tuple[str, str]] = set()
    roles = set(MessageRole.values)
    for i, item in enumerate(items):
        key = (item["system"], item["conversation_id"])
        if key in seen:
            _fail(i, "conversation_id", "This conversation appears twice in the batch.")
        seen.add(key)
        messages = item["messages"]
        if len(messages) > MAX_MESSAGES_PER_CONVERSATION:
            _fail(
                i, "messages", f"At most {MAX_MESSAGES_PER_CONVERSATION} messages per conversation."
            )
        sequences: set[int] = set()
        for j, message in enumerate(messages):
            if message["sequence"] in sequences:
                _fail(i, f"messages[{j}].sequence", "This sequence number appears twice.")
            sequences.add(message["sequence"])
            if message["role"] not in roles:
                _fail(i, f"messages[{j}].role", f"Role must be one of: {', '.join(sorted(roles))}.")
            text = message["text"]
            if len(text) > MAX_MESSAGE_CHARS:
                _fail(
                    i,
                    f"messages[{j}].text",
                    f"A message holds at most {MAX_MESSAGE_CHARS} characters.",
                )
            if "\x00" in text:
                _fail(i, f"messages[{j}].text", "A message may not contain NUL characters.")
            if message["sent_at"].tzinfo is None:
                _fail(i, f"messages[{j}].sent_at", "Give the time with a UTC offset.")


def _resolve_subjects(items: list[ConversationIn], *, actor: str) -> list[DataSubject | None]:
    """Map each item to its subject with one query for all known identities; only new
    subjects or new identities take the slower get-or-create path."""
    refs: list[dict[str, str] | None] = []
    for i, item in enumerate(items):
        raw = item.get("subject")
        refs.append(normalize_identities(raw, field=f"conversations[{i}].subject") if raw else None)
    wanted = Q(pk__in=[])
    by_type: dict[str, set[str]] = {}
    for ref in refs:
        for identity_type, value in (ref or {}).items():
            by_type.setdefault(identity_type, set()).add(value)
    for identity_type, values in by_type.items():
        wanted |= Q(type=identity_type, value__in=values)
    known = {
        (row.type, row.value): row.subject_id for row in SubjectIdentity.objects.filter(wanted)
    }
    subjects = {s.pk: s for s in DataSubject.objects.filter(pk__in=set(known.values()))}

    resolved: list[DataSubject | None] = []
    for i, ref in enumerate(refs):
        if ref is None:
            resolved.append(None)
            continue
        owners = {known.get(pair) for pair in ref.items()}
        if len(owners - {None}) > 1:
            _fail(
                i, "subject", "These identities belong to different data subjects.", ConflictError
            )
        if None not in owners:
            resolved.append(subjects[owners.pop()])
            continue
        subject, _ = subject_get_or_create(
            identities=ref, actor=actor, field=f"conversations[{i}].subject"
        )
        for pair in ref.items():
            known[pair] = subject.pk
        subjects[subject.pk] = subject
        resolved.append(subject)
    return resolved


def _upsert_conversations(items, systems, disclosures, subjects) -> tuple[dict, int]:
    keys = {(systems[item["system"]].pk, item["conversation_id"]) for item in items}
    existing = {
        (c.system_id, c.external_id): c
        for c in Conversation.objects.filter(
            system_id__in={k[0] for k in keys}, external_id__in={k[1] for k in keys}
        )
        if (c.system_id, c.external_id) in keys
    }
    to_create = []
    for item, subject in zip(items, subjects, strict=True):
        system = systems[item["system"]]
        key = (system.pk, item["conversation_id"])
        disclosure = disclosures.get((system.pk, item.get("disclosure_version")))
        conversation = existing.get(key)
        if conversation is None:
            started_at = item.get("started_at") or min(
                (m["sent_at"] for m in item["messages"]), default=None
            )
            to_create.append(
                Conversation(
                    system=system,
                    external_id=item["conversation_id"],
                    subject=subject,
                    started_at=started_at or timezone.now(),
                    disclosure=disclosure,
                    disclosure_shown_at=item.get("disclosure_shown_at"),
                )
            )
        elif (conversation.subject_id is None and subject is not None) or (
            conversation.disclosure_id is None and disclosure is not None
        ):
            # A later upload may name the customer or the disclosure the first one lacked.
            conversation.subject = conversation.subject or subject
            conversation.disclosure = conversation.disclosure or disclosure
            conversation.disclosure_shown_at = conversation.disclosure_shown_at or item.get(
                "disclosure_shown_at"
            )
            conversation.save(update_fields=["subject", "disclosure", "disclosure_shown_at"])
    if to_create:
        # ignore_conflicts: a concurrent sender may have created the same conversation.
        Conversation.objects.bulk_create(to_create, ignore_conflicts=True)
        created_keys = {(c.system_id, c.external_id) for c in to_create}
        for c in Conversation.objects.filter(
            system_id__in={k[0] for k in created_keys},
            external_id__in={k[1] for k in created_keys},
        ):
            if (c.system_id, c.external_id) in created_keys:
                existing[(c.system_id, c.external_id)] = c
    return existing, len(to_create)


def _insert_messages(rows: list[tuple[int, int, str, str, datetime]]) -> int:
    if not rows:
        return 0
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS ingest_message_stage ("
                " conversation_id bigint, sequence integer, role varchar(16),"
                " text text, sent_at timestamptz) ON COMMIT DELETE ROWS"
            )
            cursor.execute("TRUNCATE ingest_message_stage")
            with cursor.cursor.copy(
                "COPY ingest_message_stage (conversation_id, sequence, role, text, sent_at)"
                " FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                "INSERT INTO compliance_message (conversation_id, sequence, role, text, sent_at)"
                " SELECT conversation_id, sequence, role, text, sent_at"
                " FROM ingest_message_stage"
                " ON CONFLICT (conversation_id, sequence) DO NOTHING"
            )
            return cursor.rowcount
    conversation_ids = {row[0] for row in rows}
    before = Message.objects.filter(conversation_id__in=conversation_ids).count()
    Message.objects.bulk_create(
        (
            Message(conversation_id=c, sequence=s, role=r, text=t, sent_at=at)
            for c, s, r, t, at in rows
        ),
        ignore_conflicts=True,
        batch_size=500,
    )
    return Message.objects.filter(conversation_id__in=conversation_ids).count() - before


def conversations_ingest(
    *, conversations: list[ConversationIn], actor: str, allowed_system: System | None = None
) -> IngestResult:
    """Store a batch of conversations with their messages, all or nothing."""
    _check_shape(conversations)
    with transaction.atomic():
        slugs = {item["system"] for item in conversations}
        systems = {s.slug: s for s in System.objects.filter(slug__in=slugs)}
        wanted_versions = Q(pk__in=[])
        for i, item in enumerate(conversations):
            system = systems.get(item["system"])
            if system is None:
                _fail(i, "system", "No system with this slug is registered.")
            if allowed_system is not None and system.pk != allowed_system.pk:
                _fail(
                    i,
                    "system",
                    "This API client may only send logs for its own system.",
                    ForbiddenError,
                )
            if item.get("disclosure_version") is not None:
                wanted_versions |= Q(system=system, version=item["disclosure_version"])
        disclosures = {
            (d.system_id, d.version): d for d in AIDisclosure.objects.filter(wanted_versions)
        }
        for i, item in enumerate(conversations):
            version = item.get("disclosure_version")
            if version is not None and (systems[item["system"]].pk, version) not in disclosures:
                _fail(i, "disclosure_version", "This system has no disclosure with this version.")

        subjects = _resolve_subjects(conversations, actor=actor)
        for guard in INGEST_GUARDS:
            refused = guard(conversations, subjects, systems)
            if refused:
                index = min(refused)
                _fail(index, "subject", refused[index], ConflictError)
        stored, created = _upsert_conversations(conversations, systems, disclosures, subjects)

        rows = []
        for item in conversations:
            system = systems[item["system"]]
            conversation = stored[(system.pk, item["conversation_id"])]
            rows.extend(
                (
                    conversation.pk,
                    m["sequence"],
                    m["role"],
                    minimise_text(system=system, text=m["text"]),
                    m["sent_at"],
                )
                for m in item["messages"]
            )
        inserted = _insert_messages(rows)
        result = IngestResult(
            conversations_created=created,
            conversations_seen=len(conversations),
            messages_created=inserted,
            messages_skipped=len(rows) - inserted,
        )
        audit_record(
            actor=actor,
            action="conversations.ingested",
            target_type="compliance.system",
            target_id=",".join(sorted(str(s.pk) for s in systems.values())),
            detail={
                "systems": sorted(slugs),
                "conversations": len(conversations),
                "conversations_created": created,
                "messages_created": inserted,
                "messages_skipped": result.messages_skipped,
            },
        )
    return result
