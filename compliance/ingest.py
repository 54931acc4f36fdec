"""The built-in log store's ingest: plugins push conversations with their messages.

A batch is all or nothing (one transaction), and idempotent on
(system, conversation id, message sequence): re-sending a conversation stores only the
messages not yet stored. On PostgreSQL messages of conversations this call created go
straight into their table with COPY (nobody else can know those rows yet); the others are
streamed with COPY into a staging table and inserted with ``ON CONFLICT DO NOTHING``, which
is safe against two concurrent senders of the same conversation. Brand-new subjects are
created in bulk, falling back to ``subject_get_or_create`` if a concurrent sender races us.
Minimisation runs here, before a message is stored; the mention index is filled just after
commit (``compliance.mention_index``). See bench/README.md for the measurements.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NotRequired, TypedDict
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from compliance.audit import audit_record, audit_record_many
from compliance.mention_index import mention_scan_queue
from compliance.minimisation import may_hold_identifiers, minimise_text
from compliance.models import (
    AIDisclosure,
    Conversation,
    DataSubject,
    IdentityType,
    Message,
    MessageRole,
    SubjectIdentity,
    System,
)
from compliance.pg import server_binding_cursor
from compliance.services import (
    ConflictError,
    ForbiddenError,
    ServiceError,
    normalize_identities,
    subject_get_or_create,
)

MAX_MESSAGE_CHARS = 20_000
MAX_MESSAGES_PER_CONVERSATION = 5_000
MAX_CONVERSATION_ID_CHARS = 200
MAX_SEQUENCE = 2_147_483_647  # the column is a PostgreSQL integer
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


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
# conversation logging. A guard gets the batch, the id of each item's subject (None for an
# anonymous conversation) and the systems by slug, and returns {item index: reason} for the
# items it refuses.
IngestGuard = Callable[
    [list["ConversationIn"], list[UUID | None], dict[str, System]], dict[int, str]
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
    for i, item in enumerate(items):
        conversation_id = item["conversation_id"]
        if (
            not isinstance(conversation_id, str)
            or not 0 < len(conversation_id) <= MAX_CONVERSATION_ID_CHARS
            or _UNSTORABLE.search(conversation_id)
        ):
            _fail(
                i,
                "conversation_id",
                f"A conversation id is 1 to {MAX_CONVERSATION_ID_CHARS} characters, "
                "without NUL characters or lone surrogates.",
            )
        for name in ("started_at", "disclosure_shown_at"):
            moment = item.get(name)
            if moment is not None and moment.tzinfo is None:
                _fail(i, name, "Give the time with a UTC offset.")
        key = (item["system"], conversation_id)
        if key in seen:
            _fail(i, "conversation_id", "This conversation appears twice in the batch.")
        seen.add(key)
        messages = item["messages"]
        if len(messages) > MAX_MESSAGES_PER_CONVERSATION:
            _fail(
                i, "messages", f"At most {MAX_MESSAGES_PER_CONVERSATION} messages per conversation."
            )
        _check_messages(i, messages)


_ROLES = frozenset(MessageRole.values)


def _check_messages(i: int, messages: list[MessageIn]) -> None:
    """The per-message checks, written for the common case of a valid batch: the texts of a
    conversation are checked together, and only a failure looks for the message to name."""
    sequences: set[int] = set()
    for j, message in enumerate(messages):
        sequence = message["sequence"]
        # type() rather than isinstance(): a bool is an int subclass, and no sequence.
        if type(sequence) is not int or not 0 <= sequence <= MAX_SEQUENCE:
            _fail(i, f"messages[{j}].sequence", f"A sequence is 0 to {MAX_SEQUENCE}.")
        if sequence in sequences:
            _fail(i, f"messages[{j}].sequence", "This sequence number appears twice.")
        sequences.add(sequence)
        if message["role"] not in _ROLES:
            roles = ", ".join(sorted(_ROLES))
            _fail(i, f"messages[{j}].role", f"Role must be one of: {roles}.")
        if message["sent_at"].tzinfo is None:
            _fail(i, f"messages[{j}].sent_at", "Give the time with a UTC offset.")
    texts = [message["text"] for message in messages]
    if not texts:
        return
    if max(map(len, texts)) <= MAX_MESSAGE_CHARS and not _UNSTORABLE.search("".join(texts)):
        return
    for j, text in enumerate(texts):
        if len(text) > MAX_MESSAGE_CHARS:
            _fail(
                i,
                f"messages[{j}].text",
                f"A message holds at most {MAX_MESSAGE_CHARS} characters.",
            )
        if _UNSTORABLE.search(text):
            # PostgreSQL text holds neither NUL nor a lone surrogate (not valid UTF-8).
            _fail(
                i,
                f"messages[{j}].text",
                "A message may not contain NUL characters or lone surrogates.",
            )


def _resolve_subjects(items: list[ConversationIn], *, actor: str) -> list[UUID | None]:
    """Map each item to its subject's id with one query for all known identities. Subjects
    whose identities are all new are created together (one INSERT each for subjects,
    identities and their audit events); only mixed cases take the slower get-or-create path."""
    refs: list[dict[str, str] | None] = []
    for i, item in enumerate(items):
        raw = item.get("subject")
        refs.append(normalize_identities(raw, field=f"conversations[{i}].subject") if raw else None)
    by_type: dict[str, set[str]] = {}
    for ref in refs:
        for identity_type, value in (ref or {}).items():
            by_type.setdefault(identity_type, set()).add(value)
    known = _known_identities(by_type)
    _create_new_subjects(refs, known, actor=actor)

    resolved: list[UUID | None] = []
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
            resolved.append(owners.pop())
            continue
        subject, _ = subject_get_or_create(
            identities=ref, actor=actor, field=f"conversations[{i}].subject"
        )
        for pair in ref.items():
            known[pair] = subject.pk
        resolved.append(subject.pk)
    return resolved


def _known_identities(by_type: dict[str, set[str]]) -> dict[tuple[str, str], UUID]:
    """{(type, value): subject id} of the stored identities among these."""
    if not by_type:
        return {}
    wanted = Q(pk__in=[])
    for identity_type, values in by_type.items():
        # __any: one array parameter, not a placeholder per customer (compliance.lookups).
        wanted |= Q(type=identity_type, value__any=list(values))
    return {
        (t, v): s
        for t, v, s in SubjectIdentity.objects.filter(wanted).values_list(
            "type", "value", "subject_id"
        )
    }


def _create_new_subjects(refs, known, *, actor: str) -> None:
    """Create, in bulk, one subject per distinct reference none of whose identities is known
    and which shares no identity with another new reference (those go the slow way)."""
    fresh: dict[tuple, dict[str, str]] = {}
    claimed: dict[tuple[str, str], tuple] = {}
    tangled: set[tuple] = set()
    for ref in refs:
        if not ref or any(pair in known for pair in ref.items()):
            continue
        key = tuple(sorted(ref.items()))
        for pair in key:
            other = claimed.setdefault(pair, key)
            if other != key:
                tangled.update((key, other))
        fresh[key] = ref
    batch = [(key, ref) for key, ref in fresh.items() if key not in tangled]
    if not batch:
        return
    new = [DataSubject(external_id=ref.get(IdentityType.CUSTOMER_ID)) for _, ref in batch]
    try:
        # A concurrent sender may register one of these identities first: then the whole
        # bulk step is undone and every item takes the get-or-create path, which copes.
        with transaction.atomic():
            identities = [
                SubjectIdentity(subject_id=subject.pk, type=t, value=v)
                for subject, (_, ref) in zip(new, batch, strict=True)
                for t, v in ref.items()
            ]
            if connection.vendor == "postgresql":
                for identity in identities:
                    identity.fill_digests()  # what SubjectIdentity's bulk_create does
                _copy_instances(DataSubject, new, with_pk=True)  # uuid keys made here
                _copy_instances(SubjectIdentity, identities, with_pk=False)
            else:
                DataSubject.objects.bulk_create(new)
                SubjectIdentity.objects.bulk_create(identities)
            audit_record_many(
                actor=actor,
                action="subject.created",
                entries=[
                    ("compliance.datasubject", str(subject.pk), {"identity_types": sorted(ref)})
                    for subject, (_, ref) in zip(new, batch, strict=True)
                ],
            )
    except IntegrityError:
        return
    for subject, (key, _) in zip(new, batch, strict=True):
        for pair in key:
            known[pair] = subject.pk


def _copy_instances(model, objs, *, with_pk: bool) -> None:
    """INSERT unsaved instances with COPY: every concrete column, prepared as ``save()``
    prepares it (``pre_save`` fills ``auto_now`` fields), at a fraction of ``bulk_create``'s
    cost for a thousand rows. Ids are not read back: give uuid keys (``with_pk``) or need
    none. PostgreSQL only; a constraint violation raises Django's ``IntegrityError``."""
    fields = [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]
    quote = connection.ops.quote_name
    statement = "COPY {} ({}) FROM STDIN".format(
        quote(model._meta.db_table), ", ".join(quote(f.column) for f in fields)
    )
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(statement) as copy,
    ):
        for obj in objs:
            copy.write_row([f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields])


# Every column of compliance_conversation but its id, in the order of _upsert_conversations'
# rows, with their PostgreSQL types (tests/compliance/test_ingest_service.py checks this list
# against the model, so a new column cannot silently go missing).
CONVERSATION_COLUMNS = (
    ("system_id", "bigint"),
    ("external_id", "varchar"),
    ("subject_id", "uuid"),
    ("started_at", "timestamptz"),
    ("disclosure_id", "bigint"),
    ("disclosure_shown_at", "timestamptz"),
    ("created_at", "timestamptz"),
)
_INSERT_CONVERSATIONS = (  # noqa: S608 (constant column names and types)
    "INSERT INTO compliance_conversation ({columns}) SELECT * FROM unnest({arrays})"
    " ON CONFLICT (system_id, external_id) DO NOTHING RETURNING id, system_id, external_id"
).format(
    columns=", ".join(name for name, _ in CONVERSATION_COLUMNS),
    # %b: the arrays travel in binary, several times cheaper to send and read than as text.
    arrays=", ".join(f"%b::{kind}[]" for _, kind in CONVERSATION_COLUMNS),
)


def _upsert_conversations(
    items, systems, disclosures, subject_ids
) -> tuple[dict[tuple[int, str], int], set[int], int]:
    """Return {(system id, conversation id): row id}, the ids this call created (known on
    PostgreSQL only) and how many it created."""
    now = timezone.now()
    rows = []
    for item, subject_id in zip(items, subject_ids, strict=True):
        system_id = systems[item["system"]].pk
        disclosure = disclosures.get((system_id, item.get("disclosure_version")))
        started_at = item.get("started_at") or min(
            (m["sent_at"] for m in item["messages"]), default=None
        )
        rows.append(
            (
                system_id,
                item["conversation_id"],
                subject_id,
                started_at or now,
                disclosure.pk if disclosure else None,
                item.get("disclosure_shown_at"),
                now,
            )
        )
    stored: dict[tuple[int, str], int] = {}
    created: set[int] = set()
    if connection.vendor == "postgresql":
        # One INSERT of the whole batch from arrays; ON CONFLICT skips conversations stored
        # before (or by a concurrent sender), and only the rows this statement inserted come
        # back: only their messages may skip the conflict check in _insert_messages.
        with server_binding_cursor() as cursor:
            cursor.execute(
                _INSERT_CONVERSATIONS, [list(column) for column in zip(*rows, strict=True)]
            )
            for pk, system_id, external_id in cursor.fetchall():
                stored[(system_id, external_id)] = pk
                created.add(pk)
        count = len(created)
    else:
        count = 0
    earlier = [row for row in rows if (row[0], row[1]) not in stored]
    if earlier:
        count += _update_earlier_conversations(earlier, stored)
    return stored, created, count


def _update_earlier_conversations(rows, stored: dict[tuple[int, str], int]) -> int:
    """Find the conversations of ``rows`` stored before this call (on databases other than
    PostgreSQL, create the others first) and fill in what a later upload may add: the
    customer or the disclosure the first one lacked. Return how many were created here."""
    created = 0
    keys = {(row[0], row[1]) for row in rows}

    def existing():
        return {
            (system_id, external_id): (pk, subject_id, disclosure_id)
            for pk, system_id, external_id, subject_id, disclosure_id in (
                Conversation.objects.filter(
                    system_id__in={k[0] for k in keys}, external_id__in={k[1] for k in keys}
                ).values_list("id", "system_id", "external_id", "subject_id", "disclosure_id")
            )
            if (system_id, external_id) in keys
        }

    found = existing()
    if connection.vendor != "postgresql":
        new = [row for row in rows if (row[0], row[1]) not in found]
        # ignore_conflicts: a concurrent sender may have created the same conversation.
        Conversation.objects.bulk_create(
            [
                Conversation(
                    system_id=system_id,
                    external_id=external_id,
                    subject_id=subject_id,
                    started_at=started_at,
                    disclosure_id=disclosure_id,
                    disclosure_shown_at=shown_at,
                    created_at=created_at,
                )
                for (
                    system_id,
                    external_id,
                    subject_id,
                    started_at,
                    disclosure_id,
                    shown_at,
                    created_at,
                ) in new
            ],
            ignore_conflicts=True,
        )
        created = len(new)
        # The new rows were created with this upload's customer and disclosure: the loop
        # below leaves them alone, unless a concurrent sender's row won.
        found = existing()
    for system_id, external_id, subject_id, _started, disclosure_id, shown_at, _created in rows:
        pk, stored_subject, stored_disclosure = found[(system_id, external_id)]
        stored[(system_id, external_id)] = pk
        if (stored_subject is None and subject_id is not None) or (
            stored_disclosure is None and disclosure_id is not None
        ):
            conversation = Conversation.objects.get(pk=pk)
            conversation.subject_id = conversation.subject_id or subject_id
            conversation.disclosure_id = conversation.disclosure_id or disclosure_id
            conversation.disclosure_shown_at = conversation.disclosure_shown_at or shown_at
            conversation.save(update_fields=["subject", "disclosure", "disclosure_shown_at"])
    return created


_MESSAGE_COLUMNS = "(conversation_id, sequence, role, text, sent_at)"  # a constant
# Binary COPY: PostgreSQL reads the values as they are instead of parsing text, and psycopg
# writes them without formatting; about 2.5 times faster than text COPY for message rows.
_MESSAGE_TYPES = ("int8", "int4", "varchar", "text", "timestamptz")


def _copy_binary(cursor, statement: str, types, rows) -> None:
    with cursor.cursor.copy(statement + " FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _message_rows(conversations, systems, stored, candidates: set[tuple[int, int]]):
    """Yield each message's row as it is stored, minimised, and note in ``candidates`` the
    ``(conversation id, sequence)`` of those that may hold an email address or phone number.
    A generator: on PostgreSQL the rows are streamed to the COPY as they are made, so the
    database stores the first while the rest are minimised."""
    for item in conversations:
        system = systems[item["system"]]
        conversation_pk = stored[(system.pk, item["conversation_id"])]
        for m in item["messages"]:
            text = m["text"]
            # One cheap shared pre-check lets most chat messages skip minimisation and
            # mention indexing. Mentions are taken later from the stored (minimised) text:
            # a redacted value is not in the log, so it is not a mention either.
            if may_hold_identifiers(text):
                text = minimise_text(system=system, text=text)
                candidates.add((conversation_pk, m["sequence"]))
            yield (conversation_pk, m["sequence"], m["role"], text, m["sent_at"])


def _insert_messages(rows, created: set[int], candidates: set[tuple[int, int]]) -> int:
    """Store the new messages of ``rows`` (see ``_message_rows``) and name the candidates
    stored now in a pending mention scan, which a worker indexes after commit
    (``compliance.mention_index``) so erasure can find a subject in other people's chats
    through an index. Return how many messages were stored."""
    if connection.vendor != "postgresql":
        return _insert_messages_orm(list(rows), candidates)
    again: list[tuple] = []
    inserted = 0
    with connection.cursor() as cursor:
        if created:
            # Messages of conversations this transaction created cannot exist yet (nobody
            # else can know the new row id before we commit): they go straight in with COPY.
            with cursor.cursor.copy(
                f"COPY compliance_message {_MESSAGE_COLUMNS} FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(_MESSAGE_TYPES)
                for row in rows:
                    if row[0] in created:
                        copy.write_row(row)
                        inserted += 1
                    else:
                        again.append(row)
        else:
            again = list(rows)
        stored_now = {pair for pair in candidates if pair[0] in created}
        if again:
            # The rest go through a staging table and ON CONFLICT, which makes re-sending
            # harmless, also for two concurrent senders of one conversation.
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS ingest_message_stage ("
                " conversation_id bigint, sequence integer, role varchar(16),"
                " text text, sent_at timestamptz) ON COMMIT DELETE ROWS"
            )
            cursor.execute("TRUNCATE ingest_message_stage")
            _copy_binary(
                cursor, f"COPY ingest_message_stage {_MESSAGE_COLUMNS}", _MESSAGE_TYPES, again
            )
            cursor.execute(
                f"INSERT INTO compliance_message {_MESSAGE_COLUMNS}"  # noqa: S608 (constant)
                " SELECT conversation_id, sequence, role, text, sent_at"
                " FROM ingest_message_stage"
                " ON CONFLICT (conversation_id, sequence) DO NOTHING"
                " RETURNING conversation_id, sequence"
            )
            # A skipped duplicate was named when it was first stored.
            returned = cursor.fetchall()
            inserted += len(returned)
            stored_now.update(pair for pair in returned if pair in candidates)
    mention_scan_queue(sorted(stored_now))
    return inserted


def _insert_messages_orm(rows: list[tuple], candidates: set[tuple[int, int]]) -> int:
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
    # Without RETURNING it is unknown which were duplicates: name every candidate (indexing a
    # message twice is harmless).
    mention_scan_queue(sorted(candidates))
    return Message.objects.filter(conversation_id__in=conversation_ids).count() - before


def conversations_ingest(
    *, conversations: list[ConversationIn], actor: str, allowed_system: System | None = None
) -> IngestResult:
    """Store a batch of conversations with their messages, all or nothing."""
    _check_shape(conversations)
    with transaction.atomic():
        slugs = {item["system"] for item in conversations}
        systems = {s.slug: s for s in System.objects.filter(slug__in=slugs)}
        versions: set[tuple[int, int]] = set()
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
                versions.add((system.pk, item["disclosure_version"]))
        # One term per distinct (system, version): a batch repeats the same pair 1,000 times.
        wanted_versions = Q(pk__in=[])
        for system_id, version in versions:
            wanted_versions |= Q(system_id=system_id, version=version)
        disclosures = {
            (d.system_id, d.version): d for d in AIDisclosure.objects.filter(wanted_versions)
        }
        for i, item in enumerate(conversations):
            version = item.get("disclosure_version")
            if version is not None and (systems[item["system"]].pk, version) not in disclosures:
                _fail(i, "disclosure_version", "This system has no disclosure with this version.")

        subject_ids = _resolve_subjects(conversations, actor=actor)
        for guard in INGEST_GUARDS:
            refused = guard(conversations, subject_ids, systems)
            if refused:
                index = min(refused)
                _fail(index, "subject", refused[index], ConflictError)
        stored, created_ids, created = _upsert_conversations(
            conversations, systems, disclosures, subject_ids
        )

        candidates: set[tuple[int, int]] = set()
        rows = _message_rows(conversations, systems, stored, candidates)
        inserted = _insert_messages(rows, created_ids, candidates)
        total = sum(len(item["messages"]) for item in conversations)
        result = IngestResult(
            conversations_created=created,
            conversations_seen=len(conversations),
            messages_created=inserted,
            messages_skipped=total - inserted,
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
