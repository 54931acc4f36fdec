"""An external PostgreSQL table holding one message per row, in someone else's database.

The DPO maps the columns in the LogSource config (never hard-coded here). Every identifier
goes through ``psycopg.sql.Identifier`` and every value is a bound parameter. We cannot
create indexes on this database; docs/connectors.md lists the ones that make it fast.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import phonenumbers
import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

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
    SourceUnavailable,
    SubjectKeys,
    common_config,
    config_bool,
    config_identifier,
    config_identity_type,
    config_optional_str,
    config_str,
    register_connector,
    reject_unknown_keys,
)
from compliance.mentions import (
    email_like_patterns,
    mentions_subject,
    phone_like_patterns,
    redact_text,
    subject_spans,
)
from compliance.models import ConnectorKind, IdentityType
from compliance.services import ServiceError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_KNOWN = {
    "dsn",
    "dsn_env",
    "table",
    "identity_column",
    "identity_type",
    "text_column",
    "timestamp_column",
    "primary_key_column",
    "conversation_column",
    "role_column",
    "identity_normalized",
    "redact_identity_to",
    "connect_timeout",
}


def _phone_digit_forms(e164: str) -> set[str]:
    """The digits a phone column may hold for this number once separators are stripped."""
    digits = e164.lstrip("+")
    forms = {digits, "00" + digits}
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return forms
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    forms.add(re.sub(r"\D", "", national))
    return forms


class _IdleConnections(threading.local):
    """One idle connection per DSN and thread, reused by the next call: opening a
    connection costs more than most of the queries we send (the DSAR engine counts, erases
    and counts again). A connection is taken out while in use, so two calls never share
    one, checked with a round trip before reuse, and dropped after a minute idle."""

    MAX_IDLE_SECONDS = 60.0

    def __init__(self):
        self.connections: dict[str, tuple[psycopg.Connection, float]] = {}

    def take(self, dsn: str) -> psycopg.Connection | None:
        entry = self.connections.pop(dsn, None)
        if entry is None:
            return None
        conn, since = entry
        if time.monotonic() - since > self.MAX_IDLE_SECONDS or conn.closed or conn.broken:
            conn.close()
            return None
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            conn.close()
            return None
        return conn

    def give_back(self, dsn: str, conn: psycopg.Connection) -> None:
        if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            conn.close()
            return
        previous = self.connections.pop(dsn, None)
        if previous is not None:
            previous[0].close()
        self.connections[dsn] = (conn, time.monotonic())


_idle_connections = _IdleConnections()


@register_connector
class SqlConnector(Connector):
    kind = ConnectorKind.SQL

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        reject_unknown_keys(config, _KNOWN)
        dsn = config_optional_str(config, "dsn")
        dsn_env = config_optional_str(config, "dsn_env")
        if bool(dsn) == bool(dsn_env):
            raise ServiceError(
                "Give either dsn (a PostgreSQL connection string) or dsn_env (the name of an "
                "environment variable holding it), not both.",
                field="config.dsn",
            )
        if dsn is not None:
            try:
                conninfo_to_dict(dsn)
            except psycopg.Error:
                # Never repeat the value: it may hold a password.
                raise ServiceError(
                    "dsn is not a valid PostgreSQL connection string.", field="config.dsn"
                ) from None
        if dsn_env is not None and not _ENV_NAME.match(dsn_env):
            raise ServiceError(
                "dsn_env must be an environment variable name.", field="config.dsn_env"
            )
        table = config_str(config, "table")
        parts = table.split(".")
        if len(parts) > 2 or not all(re.match(r"^[^\x00-\x1f\x7f]{1,63}$", p) for p in parts):
            raise ServiceError(
                "table is a table name, optionally schema-qualified (schema.table).",
                field="config.table",
            )
        timeout = config.get("connect_timeout", 5)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 60:
            raise ServiceError(
                "connect_timeout is 1 to 60 seconds.", field="config.connect_timeout"
            )
        redact_to = config.get("redact_identity_to")
        if redact_to is not None and not isinstance(redact_to, str):
            raise ServiceError(
                "redact_identity_to is a string, or null for SQL NULL.",
                field="config.redact_identity_to",
            )
        normalized = {
            **common_config(config),
            "dsn": dsn,
            "dsn_env": dsn_env,
            "table": table,
            "identity_column": config_identifier(config, "identity_column"),
            "identity_type": config_identity_type(config),
            "text_column": config_identifier(config, "text_column"),
            "timestamp_column": config_identifier(config, "timestamp_column"),
            "primary_key_column": config_identifier(config, "primary_key_column"),
            "conversation_column": config_identifier(config, "conversation_column", required=False),
            "role_column": config_identifier(config, "role_column", required=False),
            "identity_normalized": config_bool(config, "identity_normalized", default=False),
            "redact_identity_to": redact_to,
            "connect_timeout": timeout,
        }
        columns = [
            normalized[k]
            for k in ("identity_column", "text_column", "timestamp_column", "primary_key_column")
        ]
        if len(set(columns)) != len(columns):
            raise ServiceError(
                "identity, text, timestamp and primary key must be different columns.",
                field="config.identity_column",
            )
        return normalized

    def __init__(self, source):
        super().__init__(source)
        c = self.config
        self._table = sql.Identifier(*c["table"].split("."))
        self._pk = sql.Identifier(c["primary_key_column"])
        self._identity = sql.Identifier(c["identity_column"])
        self._text = sql.Identifier(c["text_column"])
        self._ts = sql.Identifier(c["timestamp_column"])
        self._conversation = (
            sql.Identifier(c["conversation_column"]) if c["conversation_column"] else None
        )
        self._role = sql.Identifier(c["role_column"]) if c["role_column"] else None

    # --- connection ---------------------------------------------------------------------

    def _dsn(self) -> str:
        if self.config["dsn"]:
            return self.config["dsn"]
        value = os.environ.get(self.config["dsn_env"], "")
        if not value:
            raise SourceUnavailable("The environment variable named in dsn_env is not set.")
        return value

    def _scrub(self, message: str, dsn: str) -> str:
        line = message.strip().splitlines()[0] if message.strip() else ""
        try:
            password = conninfo_to_dict(dsn).get("password")
        except psycopg.Error:
            password = None
        for secret in filter(None, (dsn, password)):
            line = line.replace(secret, "***")
        return line

    def _reason(self, exc: psycopg.Error) -> str:
        """A reason safe to store and show: identifiers and error classes, never values."""
        if isinstance(exc, errors.UndefinedTable | errors.UndefinedColumn):
            return (
                "The table or a column named in the configuration does not exist: "
                f"{exc.diag.message_primary}."
            )
        if isinstance(exc, errors.InsufficientPrivilege):
            return f"The external database refused access: {exc.diag.message_primary}."
        if isinstance(exc, errors.NotNullViolation):
            return (
                "The identity column does not accept NULL: set redact_identity_to, or erase "
                "with the delete strategy."
            )
        if isinstance(exc, errors.DataError):
            # The message would quote the offending value, which is personal data.
            return (
                f"The external database refused a value ({exc.__class__.__name__}, SQLSTATE "
                f"{exc.sqlstate}): check that identity_type fits identity_column."
            )
        return f"The external database failed ({exc.__class__.__name__}" + (
            f", SQLSTATE {exc.sqlstate})." if exc.sqlstate else ")."
        )

    def _open(self, dsn: str) -> psycopg.Connection:
        try:
            # Autocommit, so that each ``conn.transaction()`` block is a transaction of its
            # own (a purge commits batch by batch), not a savepoint in one long transaction.
            conn = psycopg.connect(
                dsn,
                autocommit=True,
                connect_timeout=self.config["connect_timeout"],
                application_name="privacy-compliance",
                # No server-side prepared statements: a generic plan cannot know a LIKE
                # pattern, so it cannot use a trigram index, and scans the whole table.
                prepare_threshold=None,
            )
        except psycopg.Error as exc:
            raise SourceUnavailable(
                "The external database is unreachable: " + self._scrub(str(exc), dsn)
            ) from None
        try:
            conn.execute("SET TIME ZONE 'UTC'")
            # Our server-side cursors read every row they declare: plan for all of them,
            # not for the first 10% (which turns an index search into a table scan).
            conn.execute("SET cursor_tuple_fraction = 1.0")
        except psycopg.Error as exc:
            conn.close()
            raise SourceUnavailable(self._reason(exc)) from None
        return conn

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection]:
        dsn = self._dsn()
        conn = _idle_connections.take(dsn) or self._open(dsn)
        try:
            yield conn
        except psycopg.OperationalError as exc:
            conn.close()
            raise SourceUnavailable(
                "The connection to the external database failed: " + self._scrub(str(exc), dsn)
            ) from None
        except psycopg.Error as exc:
            conn.close()
            raise SourceUnavailable(self._reason(exc)) from None
        except BaseException:
            # Interrupted mid-way (a consumer that stopped reading, a crash): the connection
            # may be inside a transaction or a cursor; never hand it out again.
            conn.close()
            raise
        _idle_connections.give_back(dsn, conn)

    # --- predicates ---------------------------------------------------------------------

    def _identity_values(self, keys: SubjectKeys) -> list[str]:
        identity_type = self.config["identity_type"]
        values = keys.values(identity_type)
        if self.config["identity_normalized"] or identity_type == IdentityType.CUSTOMER_ID:
            return list(values)
        if identity_type == IdentityType.PHONE:
            return sorted({form for phone in values for form in _phone_digit_forms(phone)})
        return list(values)

    def _identity_match(self, values: list[str], column: sql.Composable) -> sql.Composable:
        """``column`` holds one of ``values``: an index on the column (or on the expression
        below, for emails and phones not stored normalized) answers it."""
        identity_type = self.config["identity_type"]
        if self.config["identity_normalized"] or identity_type == IdentityType.CUSTOMER_ID:
            expression = column
        elif identity_type == IdentityType.EMAIL:
            expression = sql.SQL("lower(btrim({}))").format(column)
        else:
            expression = sql.SQL("regexp_replace({}, '[^0-9]', '', 'g')").format(column)
        # One placeholder per value, so the server types them like the column (an integer
        # or uuid customer id works as well as text).
        return sql.SQL("{} IN ({})").format(
            expression, sql.SQL(", ").join(sql.Placeholder() * len(values))
        )

    def _keyed(self, keys: SubjectKeys) -> tuple[sql.Composable, list] | None:
        values = self._identity_values(keys)
        if not values:
            return None
        direct = self._identity_match(values, self._identity)
        if self._conversation is None:
            return direct, values
        # The subject's identity may be on only some rows of a conversation (the customer's
        # turns); the assistant's answers in that conversation are theirs too.
        inner = sql.SQL("{conv} IN (SELECT {conv} FROM {table} WHERE {match})").format(
            conv=self._conversation, table=self._table, match=direct
        )
        return sql.SQL("({} OR {})").format(direct, inner), [*values, *values]

    def _mention_filter(
        self, emails: Sequence[str], phones: Sequence[str]
    ) -> tuple[sql.Composable, list] | None:
        patterns = [p for e in emails for p in email_like_patterns(e)]
        patterns += [p for ph in phones for p in phone_like_patterns(ph)]
        if not patterns:
            return None
        clause = sql.SQL(" OR ").join(sql.SQL("{} ILIKE %s").format(self._text) for _ in patterns)
        return sql.SQL("({})").format(clause), patterns

    def _not_keyed_mentions(self, keys: SubjectKeys) -> tuple[sql.Composable, list] | None:
        mention = self._mention_filter(keys.emails, keys.phones)
        if mention is None:
            return None
        keyed = self._keyed(keys)
        if keyed is None:
            return mention
        return (
            sql.SQL("NOT COALESCE({}, false) AND {}").format(keyed[0], mention[0]),
            [*keyed[1], *mention[1]],
        )

    def _columns(self) -> sql.Composable:
        null = sql.SQL("NULL")
        return sql.SQL(", ").join(
            [
                self._pk,
                self._conversation or null,
                self._ts,
                self._role or null,
                self._text,
            ]
        )

    # --- records ------------------------------------------------------------------------

    def _record(self, row, match: str, keys: SubjectKeys) -> Record:
        pk, conversation, sent_at, role, text = row
        if isinstance(sent_at, datetime) and sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=UTC)
        text = text or ""
        extra = {"table": self.config["table"]}
        if match == MENTION:
            extra["mentioned"] = sorted(
                {s.type for s in subject_spans(text, emails=keys.emails, phones=keys.phones)}
            )
        return Record(
            source_id=self.source.pk,
            record_id=str(pk),
            conversation_id=str(conversation if conversation is not None else pk),
            sent_at=sent_at if isinstance(sent_at, datetime) else None,
            role=str(role) if role is not None else "",
            text=text,
            match=match,
            extra=extra,
        )

    def _stream(self, conn, query: sql.Composable, params: list) -> Iterator[tuple]:
        # A server-side cursor: rows arrive in chunks, memory stays flat.
        with conn.transaction(), conn.cursor(name="compliance_connector") as cursor:
            cursor.itersize = 2000
            cursor.execute(query, params)
            yield from cursor

    def find(self, keys: SubjectKeys) -> Iterator[Record]:
        self._reset()
        keyed = self._keyed(keys)
        mentions = self._not_keyed_mentions(keys)
        if keyed is None and mentions is None:
            return
        with self._connect() as conn:
            if keyed is not None:
                query = sql.SQL("SELECT {cols} FROM {table} WHERE {where} ORDER BY {pk}").format(
                    cols=self._columns(), table=self._table, where=keyed[0], pk=self._pk
                )
                for row in self._stream(conn, query, keyed[1]):
                    yield self._record(row, KEYED, keys)
            if mentions is not None:
                query = sql.SQL("SELECT {cols} FROM {table} WHERE {where} ORDER BY {pk}").format(
                    cols=self._columns(), table=self._table, where=mentions[0], pk=self._pk
                )
                for row in self._stream(conn, query, mentions[1]):
                    # LIKE finds candidates (joanna@ for anna@); the extractor confirms.
                    if mentions_subject(row[4] or "", emails=keys.emails, phones=keys.phones):
                        yield self._record(row, MENTION, keys)

    def count(self, keys: SubjectKeys) -> Counts:
        self._reset()
        keyed = self._keyed(keys)
        mentions = self._not_keyed_mentions(keys)
        keyed_count = mention_count = 0
        if keyed is None and mentions is None:
            return Counts(keyed=0, mentions=0)
        with self._connect() as conn:
            if keyed is not None:
                query = sql.SQL("SELECT count(*) FROM {table} WHERE {where}").format(
                    table=self._table, where=keyed[0]
                )
                keyed_count = conn.execute(query, keyed[1]).fetchone()[0]
            if mentions is not None:
                query = sql.SQL("SELECT {text} FROM {table} WHERE {where}").format(
                    text=self._text, table=self._table, where=mentions[0]
                )
                mention_count = sum(
                    1
                    for (text,) in self._stream(conn, query, mentions[1])
                    if mentions_subject(text or "", emails=keys.emails, phones=keys.phones)
                )
        return Counts(keyed=keyed_count, mentions=mention_count)

    def erase(self, keys: SubjectKeys, *, strategy: str) -> EraseResult:
        self._reset()
        self._check_strategy(strategy, ErasureStrategy)
        keyed = self._keyed(keys)
        mentions = self._not_keyed_mentions(keys)
        keyed_count = mention_count = 0
        if keyed is None and mentions is None:
            return EraseResult(keyed=0, mentions=0)
        with self._connect() as conn, conn.transaction():
            if keyed is not None:
                if strategy == ErasureStrategy.DELETE:
                    query = sql.SQL("DELETE FROM {table} WHERE {where}").format(
                        table=self._table, where=keyed[0]
                    )
                    params = keyed[1]
                else:
                    # The identity goes too, so the row is no longer the subject's and a
                    # second run finds nothing.
                    query = sql.SQL(
                        "UPDATE {table} SET {text} = %s, {identity} = %s WHERE {where}"
                    ).format(
                        table=self._table,
                        text=self._text,
                        identity=self._identity,
                        where=keyed[0],
                    )
                    params = [ERASED_MARKER, self.config["redact_identity_to"], *keyed[1]]
                keyed_count = conn.execute(query, params).rowcount
            if mentions is not None:
                query = sql.SQL(
                    "SELECT {pk}, {text} FROM {table} WHERE {where} ORDER BY {pk} FOR UPDATE"
                ).format(pk=self._pk, text=self._text, table=self._table, where=mentions[0])
                changes = []
                for pk, text in conn.execute(query, mentions[1]):
                    redacted, replaced = redact_text(
                        text or "", emails=keys.emails, phones=keys.phones
                    )
                    if replaced:
                        changes.append((redacted, pk))
                if changes:
                    update = sql.SQL("UPDATE {table} SET {text} = %s WHERE {pk} = %s").format(
                        table=self._table, text=self._text, pk=self._pk
                    )
                    with conn.cursor() as cursor:
                        cursor.executemany(update, changes)
                mention_count = len(changes)
        return EraseResult(keyed=keyed_count, mentions=mention_count)

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
        self._reset()
        self._check_strategy(strategy, PurgeStrategy)
        if older_than.tzinfo is None:
            raise ServiceError("Give the cut-off with a UTC offset.", field="older_than")
        conditions = [sql.SQL("t.{} < %s").format(self._ts)]
        params: list = [older_than]
        for held in exclude:
            keyed = self._keyed(held)
            if keyed is not None:
                conditions.append(sql.SQL("NOT COALESCE({}, false)").format(keyed[0]))
                params += keyed[1]
            # Conservative: a LIKE hit on a held subject's identifier keeps the row even if
            # the extractor would not confirm it.
            mention = self._mention_filter(held.emails, held.phones)
            if mention is not None:
                conditions.append(sql.SQL("NOT COALESCE({}, false)").format(mention[0]))
                params += mention[1]
        if strategy == PurgeStrategy.REDACT:
            conditions.append(sql.SQL("t.{} IS DISTINCT FROM %s").format(self._text))
            params.append(ERASED_MARKER)
        elif strategy == PurgeStrategy.DETACH:
            conditions.append(sql.SQL("t.{} IS DISTINCT FROM %s").format(self._identity))
            params.append(self.config["redact_identity_to"])
            if self._conversation is not None:
                # The link is kept while the conversation has newer rows: detaching half of
                # it would leave the old rows keyed through the conversation anyway.
                conditions.append(
                    sql.SQL(
                        "NOT EXISTS (SELECT 1 FROM {table} AS n WHERE n.{conv} = t.{conv}"
                        " AND n.{ts} >= %s)"
                    ).format(table=self._table, conv=self._conversation, ts=self._ts)
                )
                params.append(older_than)
        where = sql.SQL(" AND ").join(conditions)
        select = sql.SQL(
            "SELECT t.{pk} FROM {table} AS t WHERE {where} AND (%s::text IS NULL OR t.{pk} > %s)"
            " ORDER BY t.{pk} LIMIT %s"
        ).format(pk=self._pk, table=self._table, where=where)
        if strategy == PurgeStrategy.DELETE:
            change = sql.SQL("DELETE FROM {table} WHERE {pk} IN ({ids})")
            change_params: list = []
        elif strategy == PurgeStrategy.REDACT:
            change = sql.SQL("UPDATE {table} SET {col} = %s WHERE {pk} IN ({ids})")
            change_params = [ERASED_MARKER]
        else:
            change = sql.SQL("UPDATE {table} SET {col} = %s WHERE {pk} IN ({ids})")
            change_params = [self.config["redact_identity_to"]]
        column = self._text if strategy == PurgeStrategy.REDACT else self._identity

        cursor_value = resume_after
        with self._connect() as conn:
            while True:
                with conn.transaction():
                    ids = [
                        row[0]
                        for row in conn.execute(
                            select, [*params, cursor_value, cursor_value, batch_size]
                        )
                    ]
                    if not ids:
                        return
                    cursor_value = str(ids[-1])
                    affected = len(ids)
                    if not dry_run:
                        statement = change.format(
                            table=self._table,
                            col=column,
                            pk=self._pk,
                            ids=sql.SQL(", ").join(sql.Placeholder() * len(ids)),
                        )
                        affected = conn.execute(statement, [*change_params, *ids]).rowcount
                yield PurgeBatch(affected=affected, cursor=cursor_value, dry_run=dry_run)

    def health(self) -> str | None:
        query = sql.SQL("SELECT {cols}, {identity} FROM {table} LIMIT 0").format(
            cols=self._columns(), identity=self._identity, table=self._table
        )
        try:
            with self._connect() as conn:
                conn.execute(query)
        except SourceUnavailable as exc:
            return exc.reason
        return None
