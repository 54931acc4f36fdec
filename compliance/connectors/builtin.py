"""The built-in store: conversations plugins push through the ingest API, in this service's
own tables (``Conversation``, ``Message``, ``MessageMention``).

A builtin LogSource covers the conversations of its own system. Keyed records are the
messages of conversations whose ``subject`` is the subject. Mentions are found through the
``MessageMention`` index (one lookup on ``(type, value)``), never by scanning message text;
a worker fills it just after ingest, and every method here first indexes what is still
pending (``compliance.mention_index``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from operator import or_

from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, connection, transaction
from django.db.models import (
    CASCADE,
    DO_NOTHING,
    SET_NULL,
    Exists,
    OuterRef,
    ProtectedError,
    Q,
    QuerySet,
    RestrictedError,
)
from django.db.models.signals import post_delete, pre_delete

from compliance.connectors.base import (
    ERASED_MARKER,
    KEYED,
    MENTION,
    Connector,
    Counts,
    EraseResult,
    ErasureStrategy,
    PurgeBatch,
    PurgeStrategy,
    Record,
    SubjectKeys,
    common_config,
    register_connector,
    reject_unknown_keys,
)
from compliance.mention_index import mentions_index_pending
from compliance.mentions import (
    EMAIL,
    PHONE,
    extract_mentions,
    lookup_values,
    phone_lookup_values,
    redact_text,
)
from compliance.models import (
    AIDisclosure,
    ConnectorKind,
    Conversation,
    DataSubject,
    Message,
    MessageMention,
)
from compliance.pg import server_binding_cursor
from compliance.services import ServiceError

_CHUNK = 2000
_RECORD_FIELDS = (
    "pk",
    "conversation__external_id",
    "sequence",
    "role",
    "text",
    "sent_at",
    "conversation__started_at",
    "conversation__disclosure__version",
    "conversation__disclosure_shown_at",
)


def _mention_query(pairs: Iterable[tuple[str, str]]) -> Q | None:
    parts = [Q(type=t, value=v) for t, v in sorted(pairs)]
    return reduce(or_, parts) if parts else None


@dataclass(frozen=True)
class _MentionSql:
    tables: str
    where: str
    params: list
    kinds: str  # SELECT items: did the index find an email / a phone in the message
    kinds_params: list


def _pairs(keys: SubjectKeys) -> list[tuple[str, str]]:
    return sorted(lookup_values(emails=keys.emails, phones=keys.phones))


@contextmanager
def _pg_cursor() -> Iterator:
    """psycopg's own cursor on Django's connection (same transaction, same type loaders),
    without Django's cursor wrapper. It still binds parameters on the client (Django makes
    the connection's cursors ClientCursors); where whole id lists are sent, use
    ``compliance.pg.server_binding_cursor``. PostgreSQL only (``%s`` placeholders)."""
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        yield cursor


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class _NeedsCollector(Exception):
    """A relation whose delete semantics only Django's collector carries out."""


def _delete_statements(
    model,
    column: str,
    subquery: str | None,
    params: list,
    seen: frozenset = frozenset(),
    *,
    exempt: frozenset = frozenset(),
) -> list[tuple[type | None, str, list]]:
    """SQL that deletes the rows of ``model`` whose ``column`` is in ``subquery``, and what
    cascades from them, dependents first: what Django's collector does, without loading
    every row into Python first (erasure must cost about what hand-written SQL costs).
    With ``subquery`` None, ``params`` is ``[values]`` and the rows are those whose
    ``column`` is one of the values (``= ANY(%b)``: one array parameter however many,
    which psycopg sends in binary, several times faster than as text; PostgreSQL and
    psycopg's own cursor only); when ``column`` is the primary key, what cascades is found
    by the same values rather than through ``model``'s table again. ``exempt`` names foreign keys to
    ``model`` that the caller's condition guarantees no row uses; they are not followed.
    Raises _NeedsCollector for anything beyond CASCADE, SET_NULL and DO_NOTHING, for
    many-to-many and generic relations, and for models with delete signal receivers, so
    rows other apps add later are never left dangling or deleted the wrong way."""
    if model in seen or pre_delete.has_listeners(model) or post_delete.has_listeners(model):
        raise _NeedsCollector
    if model._meta.many_to_many or model._meta.private_fields:
        raise _NeedsCollector
    seen = seen | {model}
    quote = connection.ops.quote_name
    # Identifiers come from our own models' metadata, quoted; values are parameters.
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    where = f"{quote(column)} = ANY(%b)" if subquery is None else f"{quote(column)} IN ({subquery})"
    own_keys = f"SELECT {pk} FROM {table} WHERE {where}"  # noqa: S608
    by_values = subquery is None and column == model._meta.pk.column
    statements: list[tuple[type | None, str, list]] = []
    for relation in model._meta.related_objects:
        field = relation.field
        if field in exempt:
            continue
        if (
            relation.many_to_many
            or field.remote_field.model is not model
            or field.target_field.column != model._meta.pk.column
        ):
            raise _NeedsCollector
        if relation.on_delete is DO_NOTHING:
            continue
        if relation.on_delete is CASCADE:
            statements += _delete_statements(
                relation.related_model, field.column, None if by_values else own_keys, params, seen
            )
        elif relation.on_delete is SET_NULL:
            related_table, related_column = (
                quote(relation.related_model._meta.db_table),
                quote(field.column),
            )
            related = (
                f"{related_column} = ANY(%b)" if by_values else f"{related_column} IN ({own_keys})"
            )
            statements.append(
                (
                    None,
                    f"UPDATE {related_table} SET {related_column} = NULL WHERE {related}",  # noqa: S608
                    params,
                )
            )
        else:
            raise _NeedsCollector
    statements.append((model, f"DELETE FROM {table} WHERE {where}", params))  # noqa: S608
    return statements


def _delete_cascading(queryset: QuerySet, count: type) -> int:
    """Delete ``queryset`` with its cascade; return how many ``count`` rows went."""
    try:
        subquery, params = queryset.order_by().values("pk").query.sql_with_params()
    except EmptyResultSet:
        return 0
    try:
        statements = _delete_statements(
            queryset.model, queryset.model._meta.pk.column, subquery, list(params)
        )
    except _NeedsCollector:
        _, deleted = queryset.delete()
        return deleted.get(count._meta.label, 0)
    deleted_count = 0
    with _pg_cursor() if connection.vendor == "postgresql" else connection.cursor() as cursor:
        for deleted_model, statement, statement_params in statements:
            cursor.execute(statement, statement_params)
            if deleted_model is count:
                deleted_count += cursor.rowcount
    return deleted_count


def _id_batches(candidates: QuerySet, *, after: int, batch_size: int) -> Iterator[list[int]]:
    """The primary keys of ``candidates`` greater than ``after``, in order, ``batch_size``
    at a time, each batch read when the one before it has been worked."""
    if connection.vendor == "postgresql":
        return _id_batches_sql(candidates, after=after, batch_size=batch_size)
    return _id_batches_orm(candidates, after=after, batch_size=batch_size)


def _id_batches_orm(candidates: QuerySet, *, after: int, batch_size: int) -> Iterator[list[int]]:
    candidates = candidates.order_by("pk").values_list("pk", flat=True)
    while ids := list(candidates.filter(pk__gt=after)[:batch_size]):
        yield ids
        after = ids[-1]


def _id_batches_sql(candidates: QuerySet, *, after: int, batch_size: int) -> Iterator[list[int]]:
    """``_id_batches_orm`` with the query composed once by the ORM: each batch is the same
    statement with a new lower bound. PostgreSQL only."""
    try:
        subquery, params = candidates.order_by().values("pk").query.sql_with_params()
    except EmptyResultSet:
        return
    # PostgreSQL pulls the subquery up: the plan is that of the flat query, walking the
    # primary key from ``after``.
    query = f"SELECT id FROM ({subquery}) AS candidate (id) WHERE id > %s ORDER BY id LIMIT %s"  # noqa: S608
    while True:
        with server_binding_cursor() as cursor:
            cursor.execute(query, [*params, after, batch_size])
            ids = [pk for (pk,) in cursor.fetchall()]
        if not ids:
            return
        yield ids
        after = ids[-1]


def _delete_messages_sql(ids: list[int]) -> int:
    """Delete these messages with what cascades from them (their mentions, ...), then the
    conversations they leave empty; return how many messages went. A few statements with
    one array parameter each, in the caller's transaction. PostgreSQL only; raises
    _NeedsCollector before changing anything if a relation needs Django's collector."""
    quote = connection.ops.quote_name
    message, conversation = Message._meta, Conversation._meta
    parent = message.get_field("conversation")
    messages = [ids]
    *cascade, (_, delete_messages, _) = _delete_statements(
        Message, message.pk.column, None, messages
    )
    # Only a conversation without messages goes, so none cascade from it; what other apps
    # hang off conversations follows it (bound below to the conversations that went).
    # Django's foreign keys are checked at commit, so those rows may go after it.
    *conversation_cascade, _ = _delete_statements(
        Conversation, conversation.pk.column, None, [], exempt=frozenset({parent})
    )
    table, pk, column = (
        quote(conversation.db_table),
        quote(conversation.pk.column),
        quote(parent.column),
    )
    delete_emptied = (
        f"DELETE FROM {table} c WHERE c.{pk} = ANY(%b) AND NOT EXISTS"  # noqa: S608
        f" (SELECT 1 FROM {quote(message.db_table)} m WHERE m.{column} = c.{pk})"
        f" RETURNING c.{pk}"
    )
    with server_binding_cursor() as cursor:
        for _, statement, params in cascade:
            cursor.execute(statement, params)
        cursor.execute(f"{delete_messages} RETURNING {column}", messages)
        gone = cursor.fetchall()
        # A conversation left without messages holds nothing but the link to its subject.
        touched = sorted({conversation_id for (conversation_id,) in gone})
        if touched:
            cursor.execute(delete_emptied, [touched])
            emptied = [conversation_id for (conversation_id,) in cursor.fetchall()]
            if emptied:
                for _, statement, _ in conversation_cascade:
                    cursor.execute(statement, [emptied])
    return len(gone)


def _delete_messages_orm(ids: list[int]) -> int:
    """What ``_delete_messages_sql`` does, through the ORM (SQLite, and relations only
    Django's collector handles)."""
    conversation_ids = set(
        # order_by(): Message's default ordering would join and sort the conversations.
        Message.objects.filter(pk__in=ids).order_by().values_list("conversation_id", flat=True)
    )
    deleted = _delete_cascading(Message.objects.filter(pk__in=ids), Message)
    # A conversation left without messages holds nothing but the link to its subject.
    empty = Conversation.objects.filter(pk__in=conversation_ids, messages__isnull=True)
    try:
        with transaction.atomic():
            _delete_cascading(empty, Conversation)
    except (ProtectedError, RestrictedError):
        pass  # another app keeps it as evidence; its messages are gone all the same
    return deleted


def mentions_backfill(
    *, after: int = 0, batch_size: int = 5000, rebuild: bool = False
) -> Iterator[tuple[int, int, int]]:
    """Extract the mentions of messages stored before the index existed, in primary-key
    order, one transaction per batch. Yields ``(last message id, messages, mentions added)``
    so an interrupted run can go on with ``after``. Without ``rebuild`` messages that already
    have mention rows are left as they are; with it every message's rows are recomputed,
    e.g. after PHONE_DEFAULT_REGION changed."""
    while True:
        batch = list(
            Message.objects.filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", "text")[:batch_size]
        )
        if not batch:
            return
        after = batch[-1][0]
        ids = [pk for pk, _ in batch]
        with transaction.atomic():
            if rebuild:
                MessageMention.objects.filter(message_id__in=ids).delete()
                indexed = set()
            else:
                indexed = set(
                    MessageMention.objects.filter(message_id__in=ids).values_list(
                        "message_id", flat=True
                    )
                )
            rows = [
                MessageMention(message_id=pk, type=t, value=v)
                for pk, text in batch
                if pk not in indexed
                for t, v in extract_mentions(text)
            ]
            MessageMention.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
        yield after, len(batch), len(rows)


@register_connector
class BuiltinConnector(Connector):
    kind = ConnectorKind.BUILTIN

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        # The built-in store needs no settings: the LogSource's system says which
        # conversations it covers.
        reject_unknown_keys(config, set())
        return common_config(config)

    # --- queries ------------------------------------------------------------------------

    def _keyed_conversations(self, keys: SubjectKeys) -> QuerySet[Conversation]:
        if keys.subject_id is None:
            return Conversation.objects.none()
        return Conversation.objects.filter(
            system_id=self.source.system_id, subject_id=keys.subject_id
        )

    def _keyed_messages(self, keys: SubjectKeys) -> QuerySet[Message]:
        if keys.subject_id is None:
            return Message.objects.none()
        return Message.objects.filter(
            conversation__system_id=self.source.system_id,
            conversation__subject_id=keys.subject_id,
        )

    def _mention_messages(self, keys: SubjectKeys) -> QuerySet[Message]:
        wanted = _mention_query(lookup_values(emails=keys.emails, phones=keys.phones))
        if wanted is None:
            return Message.objects.none()
        messages = Message.objects.filter(
            pk__in=MessageMention.objects.filter(wanted).values("message_id"),
            conversation__system_id=self.source.system_id,
        )
        if keys.subject_id is not None:
            messages = messages.exclude(conversation__subject_id=keys.subject_id)
        return messages

    def _keyed_rows(self, keys: SubjectKeys) -> Iterator[tuple]:
        # A subject can have a great many messages: a server-side cursor streams them.
        rows = (
            self._keyed_messages(keys)
            .order_by("conversation_id", "sequence")
            .values_list(*_RECORD_FIELDS)
        )
        for row in rows.iterator(chunk_size=_CHUNK):
            yield (*row, None)

    def _mention_sql(self, keys: SubjectKeys, emails: list[str], phones: list[str]) -> _MentionSql:
        """The subject's mention messages in SQL (aliases ``m`` for the message, ``c`` for
        its conversation), for the PostgreSQL fast paths."""
        quote = connection.ops.quote_name
        message, mention = quote(Message._meta.db_table), quote(MessageMention._meta.db_table)
        conversation = quote(Conversation._meta.db_table)

        def marks(values: list[str]) -> str:
            return ", ".join(["%s"] * len(values))

        def found(kind: str, values: list[str]) -> str:
            if not values:
                return "0"
            if not (emails and phones):
                return "1"  # one kind searched: every row found has it
            return (
                f"CASE WHEN EXISTS (SELECT 1 FROM {mention} x WHERE x.message_id = m.id"  # noqa: S608
                f" AND x.type = '{kind}' AND x.value IN ({marks(values)})) THEN 1 ELSE 0 END"
            )

        groups = [(kind, values) for kind, values in ((EMAIL, emails), (PHONE, phones)) if values]
        wanted = " OR ".join(f"(type = %s AND value IN ({marks(v)}))" for _, v in groups)
        params = [x for kind, values in groups for x in (kind, *values)]
        params.append(self.source.system_id)
        not_keyed = ""
        if keys.subject_id is not None:
            not_keyed = " AND (c.subject_id IS NULL OR c.subject_id <> %s)"
            params.append(DataSubject._meta.pk.get_db_prep_value(keys.subject_id, connection))
        # Table names come from our models, quoted; every value is a parameter.
        return _MentionSql(
            tables=f"{message} m JOIN {conversation} c ON c.id = m.conversation_id",
            where=(
                f"m.id IN (SELECT message_id FROM {mention} WHERE {wanted})"  # noqa: S608
                f" AND c.system_id = %s{not_keyed}"
            ),
            params=params,
            kinds=f"{found(EMAIL, emails)}, {found(PHONE, phones)}",
            kinds_params=[*emails, *phones] if emails and phones else [],
        )

    def _mention_rows(self, keys: SubjectKeys) -> Iterator[tuple]:
        """The subject's mentions in pages by primary key, one query for most subjects.
        Written in SQL rather than built by the ORM: this is the free-text search of every
        access request, and building the query cost more than running it. It selects what
        ``_mention_messages`` selects (``test_the_sql_and_orm_mention_searches_agree``),
        plus which kinds of identifier the index found in each message."""
        emails = sorted(keys.emails)
        phones = sorted({v for p in keys.phones for v in phone_lookup_values(p)})
        if not emails and not phones:
            return
        if connection.vendor != "postgresql":
            # SQLite (the embedded mode) returns raw strings to a raw cursor: the ORM
            # converts them.
            yield from self._mention_rows_orm(keys, emails, phones)
            return
        found = self._mention_sql(keys, emails, phones)
        disclosure = connection.ops.quote_name(AIDisclosure._meta.db_table)
        query = (
            "SELECT m.id, c.external_id, m.sequence, m.role, m.text, m.sent_at, c.started_at,"  # noqa: S608
            f" d.version, c.disclosure_shown_at, {found.kinds}"
            f" FROM {found.tables} LEFT JOIN {disclosure} d ON d.id = c.disclosure_id"
            f" WHERE {found.where} AND m.id > %s ORDER BY m.id LIMIT %s"
        )
        after = 0
        with _pg_cursor() as cursor:
            while True:
                cursor.execute(query, [*found.kinds_params, *found.params, after, _CHUNK])
                page = cursor.fetchall()
                for *row, email_found, phone_found in page:
                    kinds = [EMAIL] if email_found else []
                    kinds += [PHONE] if phone_found else []
                    yield (*row, kinds)
                if len(page) < _CHUNK:
                    return
                after = page[-1][0]

    def _mention_rows_orm(
        self, keys: SubjectKeys, emails: list[str], phones: list[str]
    ) -> Iterator[tuple]:
        def found(kind: str, values: list[str]):
            return Exists(
                MessageMention.objects.filter(message=OuterRef("pk"), type=kind, value__in=values)
            )

        messages = self._mention_messages(keys).annotate(
            has_email=found(EMAIL, emails), has_phone=found(PHONE, phones)
        )
        after = 0
        while True:
            page = list(
                messages.filter(pk__gt=after)
                .order_by("pk")
                .values_list(*_RECORD_FIELDS, "has_email", "has_phone")[:_CHUNK]
            )
            for *row, email_found, phone_found in page:
                kinds = [EMAIL] if email_found else []
                kinds += [PHONE] if phone_found else []
                yield (*row, kinds)
            if len(page) < _CHUNK:
                return
            after = page[-1][0]

    def _records(self, rows: Iterator[tuple], match: str) -> Iterator[Record]:
        system = self.source.system.slug
        for pk, conversation, sequence, role, text, sent_at, started, version, shown, kinds in rows:
            extra = {
                "system": system,
                "sequence": sequence,
                "conversation_started_at": _iso(started),
                "disclosure_version": version,
                "disclosure_shown_at": _iso(shown),
            }
            if kinds is not None:
                extra["mentioned"] = kinds
            yield Record(
                source_id=self.source.pk,
                record_id=str(pk),
                conversation_id=conversation,
                sent_at=sent_at,
                role=role,
                text=text,
                match=match,
                extra=extra,
            )

    def _index_pending_mentions(self) -> None:
        # Ingest leaves the mention index to a worker; whatever was stored before this call
        # is indexed (or waited for) first, so no mention is missed (compliance.mention_index).
        mentions_index_pending(wait=True)

    # --- the interface ------------------------------------------------------------------

    def find(self, keys: SubjectKeys) -> Iterator[Record]:
        self._reset()
        self._index_pending_mentions()
        if keys.subject_id is not None:
            yield from self._records(self._keyed_rows(keys), KEYED)
        yield from self._records(self._mention_rows(keys), MENTION)

    def count(self, keys: SubjectKeys) -> Counts:
        self._reset()
        self._index_pending_mentions()
        return Counts(
            keyed=self._keyed_messages(keys).count(),
            mentions=self._mention_messages(keys).count(),
        )

    def erase(self, keys: SubjectKeys, *, strategy: str) -> EraseResult:
        self._reset()
        self._index_pending_mentions()
        self._check_strategy(strategy, ErasureStrategy)
        with transaction.atomic():
            conversations = self._keyed_conversations(keys)
            if strategy == ErasureStrategy.DELETE:
                # Other apps hang rows off conversations and messages (answer flags, ...):
                # they go with them, as Django's collector would delete them.
                keyed = _delete_cascading(conversations, Message)
            else:
                # The conversation stays (its system, times and the AI disclosure shown are
                # not the subject's data and prove EU AI Act Art. 50 compliance), without
                # its text and without the link to the subject.
                messages = self._keyed_messages(keys)
                MessageMention.objects.filter(message__in=messages).delete()
                keyed = messages.update(text=ERASED_MARKER)
                conversations.update(subject=None)
            mentions = self._redact_mentions(keys)
        return EraseResult(keyed=keyed, mentions=mentions)

    def _redact_mentions(self, keys: SubjectKeys) -> int:
        emails = sorted(keys.emails)
        phones = sorted({v for p in keys.phones for v in phone_lookup_values(p)})
        if not emails and not phones:
            return 0
        if connection.vendor == "postgresql":
            found = self._mention_sql(keys, emails, phones)
            with _pg_cursor() as cursor:
                cursor.execute(
                    f"SELECT m.id, m.text FROM {found.tables} WHERE {found.where}"  # noqa: S608
                    " ORDER BY m.id FOR UPDATE OF m",
                    found.params,
                )
                rows = cursor.fetchall()
        else:
            rows = list(
                self._mention_messages(keys)
                .select_for_update(of=("self",))
                .order_by("pk")
                .values_list("pk", "text")
            )
        changed = []
        for pk, text in rows:
            redacted, replaced = redact_text(text, emails=keys.emails, phones=keys.phones)
            if replaced:
                changed.append((pk, redacted))
        ids = [pk for pk, _ in rows]
        # Only the subject's identifiers left these texts; what else they mention stays
        # indexed. Also for rows whose text no longer matched: their entries were stale.
        wanted = _mention_query(lookup_values(emails=keys.emails, phones=keys.phones))
        if connection.vendor == "postgresql":
            quote = connection.ops.quote_name
            message, mention = quote(Message._meta.db_table), quote(MessageMention._meta.db_table)
            with _pg_cursor() as cursor:
                if changed:
                    cursor.executemany(
                        f"UPDATE {message} SET text = %s WHERE id = %s",  # noqa: S608
                        [(text, pk) for pk, text in changed],
                    )
                if ids:
                    pairs = " OR ".join(["(type = %s AND value = %s)"] * len(_pairs(keys)))
                    cursor.execute(
                        f"DELETE FROM {mention} WHERE message_id = ANY(%s) AND ({pairs})",  # noqa: S608
                        [ids, *[x for pair in _pairs(keys) for x in pair]],
                    )
        else:
            Message.objects.bulk_update(
                [Message(pk=pk, text=text) for pk, text in changed], ["text"], batch_size=500
            )
            if ids and wanted is not None:
                MessageMention.objects.filter(wanted, message_id__in=ids).delete()
        return len(changed)

    def purge(
        self,
        *,
        older_than: datetime,
        strategy: str,
        batch_size: int = 2000,
        exclude: Sequence[SubjectKeys] = (),
        dry_run: bool = False,
        resume_after: str | None = None,
    ) -> Iterator[PurgeBatch]:
        # Not a generator itself: the checks, and indexing what ingest left pending, run
        # now, in transactions of their own, rather than inside the first batch's
        # transaction, which a retention run keeps short.
        self._reset()
        self._index_pending_mentions()
        self._check_strategy(strategy, PurgeStrategy)
        if older_than.tzinfo is None:
            raise ServiceError("Give the cut-off with a UTC offset.", field="older_than")
        try:
            after = int(resume_after) if resume_after else 0
        except ValueError:
            raise ServiceError("Not a cursor of this source.", field="resume_after") from None
        if strategy == PurgeStrategy.DETACH:
            held_subjects = [k.subject_id for k in exclude if k.subject_id is not None]
            return self._purge_detach(
                older_than, batch_size, held_subjects, dry_run=dry_run, after=after
            )
        candidates = self._purge_candidates(
            older_than=older_than, strategy=strategy, exclude=exclude
        )
        return self._purge_messages(
            candidates, strategy=strategy, batch_size=batch_size, dry_run=dry_run, after=after
        )

    def _purge_messages(
        self,
        candidates: QuerySet[Message],
        *,
        strategy: str,
        batch_size: int,
        dry_run: bool,
        after: int,
    ) -> Iterator[PurgeBatch]:
        for ids in _id_batches(candidates, after=after, batch_size=batch_size):
            after = ids[-1]
            if dry_run:
                yield PurgeBatch(affected=len(ids), cursor=str(after), dry_run=True)
                continue
            # Inside a retention run this joins the run's transaction for the batch, which
            # commits or rolls back the batch together with its count: a savepoint would
            # only add round trips.
            with transaction.atomic(savepoint=False):
                if strategy == PurgeStrategy.DELETE:
                    affected = self._delete_messages(ids)
                else:
                    MessageMention.objects.filter(message_id__in=ids).delete()
                    affected = (
                        Message.objects.filter(pk__in=ids)
                        .exclude(text=ERASED_MARKER)
                        .update(text=ERASED_MARKER)
                    )
            yield PurgeBatch(affected=affected, cursor=str(after))

    def _purge_candidates(
        self, *, older_than: datetime, strategy: str, exclude: Sequence[SubjectKeys]
    ) -> QuerySet[Message]:
        """The messages a delete or redact purge works on: sent before ``older_than``,
        neither keyed to a held subject nor mentioning one (GDPR Art. 17(3))."""
        held_subjects = [k.subject_id for k in exclude if k.subject_id is not None]
        held_mentions = _mention_query(
            pair for k in exclude for pair in lookup_values(emails=k.emails, phones=k.phones)
        )
        candidates = Message.objects.filter(
            conversation__system_id=self.source.system_id, sent_at__lt=older_than
        )
        if held_subjects:
            candidates = candidates.exclude(conversation__subject_id__in=held_subjects)
        if held_mentions is not None:
            candidates = candidates.exclude(
                pk__in=MessageMention.objects.filter(held_mentions).values("message_id")
            )
        if strategy == PurgeStrategy.REDACT:
            # Already redacted rows are not work: a rerun without a cursor redoes nothing.
            candidates = candidates.exclude(text=ERASED_MARKER)
        return candidates

    def _delete_messages(self, ids: list[int]) -> int:
        if connection.vendor == "postgresql":
            try:
                return _delete_messages_sql(ids)
            except _NeedsCollector:
                pass  # another app's relations need Django's collector
        return _delete_messages_orm(ids)

    def _purge_detach(
        self,
        older_than: datetime,
        batch_size: int,
        held_subjects: list,
        *,
        dry_run: bool,
        after: int,
    ) -> Iterator[PurgeBatch]:
        # The link to the subject is per conversation: a conversation is detached once it
        # has no message at or after the cut-off.
        candidates = Conversation.objects.filter(
            system_id=self.source.system_id,
            subject__isnull=False,
            started_at__lt=older_than,
        ).exclude(messages__sent_at__gte=older_than)
        if held_subjects:
            candidates = candidates.exclude(subject_id__in=held_subjects)
        while True:
            ids = list(
                candidates.filter(pk__gt=after)
                .order_by("pk")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                return
            after = ids[-1]
            affected = Message.objects.filter(conversation_id__in=ids).count()
            if not dry_run:
                with transaction.atomic():
                    Conversation.objects.filter(pk__in=ids, subject__isnull=False).update(
                        subject=None
                    )
            yield PurgeBatch(affected=affected, cursor=str(after), dry_run=dry_run)

    def health(self) -> str | None:
        try:
            connection.ensure_connection()
        except DatabaseError as exc:
            return f"The service's database is unreachable ({exc.__class__.__name__})."
        return None
