"""Erasure benchmark: the connectors against hand-written SQL, in the same run.

Run it with ``make test``'s environment (``DATABASE_URL`` naming the PostgreSQL server), e.g.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/compliance .venv/bin/python bench/erasure.py

It creates two databases of its own on that server (only host, port, user and password are
used): ``bench_erasure_<pid>`` for the service (migrated, filled through
``conversations_ingest`` so mentions are indexed as in production) and
``bench_erasure_ext_<pid>`` holding an external ``chat_log`` table with the same messages,
indexed as docs/connectors.md recommends (btree on the identity and conversation columns,
pg_trgm GIN on the text). Both are dropped at the end unless ``--keep``.

Data: 1,000,000 messages in 100,000 conversations of 10,000 subjects (customer id, email,
phone each). About one message in eight carries some stranger's email or phone (Faker), and
each *target* subject is quoted by email (in changing case) in ``--mentions`` messages of
other subjects' conversations.

Measured, each as the median of ``--repeat`` runs on different target subjects:

* **erase**: ``connector.erase(keys, strategy="delete")`` (the subject's conversations go,
  their email is redacted where others quoted it) against the same work written by hand in
  SQL (same statements a DBA would write, one transaction);
* **search**: ``connector.find`` for one email over the million messages (the free-text
  mention search) against the same query by hand with its index (the mention index in the
  built-in store, the trigram index in the external table).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import create_database as _create_database  # noqa: E402
from benchdb import drop_database as _drop_database  # noqa: E402
from benchdb import dsn as _dsn  # noqa: E402

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/compliance"
SYSTEM_SLUG = "bench-erasure"
ACTOR = "bench"
AIM_RATIO = 1.5
AIM_SEARCH_S = 1.0
EMAIL_MARKER = "[redacted email]"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--per-conversation", type=int, default=10)
    parser.add_argument("--mentions", type=int, default=20, help="quotes of each target")
    parser.add_argument("--repeat", type=int, default=9, help="measured runs per figure")
    parser.add_argument("--batch", type=int, default=1_000, help="conversations per ingest")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    return parser.parse_args(argv)


# --- Databases -------------------------------------------------------------------------------


# --- Data ------------------------------------------------------------------------------------


class Data:
    """Deterministic data, generated batch by batch so memory stays flat."""

    def __init__(self, args: argparse.Namespace):
        from faker import Faker

        self.args = args
        self.rng = random.Random(args.seed)
        fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR"])
        fake.seed_instance(args.seed)
        self.texts = []
        for _ in range(3_000):
            text = fake.paragraph(nb_sentences=self.rng.randint(1, 4))
            roll = self.rng.random()
            if roll < 0.08:
                text += f" You can reach me at {fake.email()}."
            elif roll < 0.12:
                text += f" Call me on {fake.phone_number()} please."
            self.texts.append(text)
        self.conversations = args.messages // args.per_conversation
        # Targets: subjects quoted in other people's chats, erased or searched for below.
        targets = 2 * (args.repeat + 1) + args.repeat
        self.targets = self.rng.sample(range(args.subjects), targets)
        self.quotes: dict[int, int] = {}
        for target in self.targets:
            placed = 0
            while placed < args.mentions:
                index = self.rng.randrange(args.messages)
                conversation = index // args.per_conversation
                if index in self.quotes or conversation % args.subjects == target:
                    continue
                self.quotes[index] = target
                placed += 1
        self.start = datetime(2025, 1, 1, tzinfo=UTC)

    @staticmethod
    def customer_id(n: int) -> str:
        return f"cust-{n:06d}"

    @staticmethod
    def email(n: int) -> str:
        return f"customer.{n:06d}@example.org"

    @staticmethod
    def phone(n: int) -> str:
        return f"+4420794{n:05d}"

    def _quote(self, target: int) -> str:
        address = self.email(target)
        spelled = "".join(c.upper() if self.rng.random() < 0.3 else c for c in address)
        return f" My colleague {spelled} asked the same thing."

    def batches(self) -> Iterator[list[dict]]:
        args = self.args
        roles = ["customer", "assistant"]
        for first in range(0, self.conversations, args.batch):
            items = []
            for n in range(first, min(first + args.batch, self.conversations)):
                subject = n % args.subjects
                started = self.start + timedelta(minutes=3 * n)
                messages = []
                for i in range(args.per_conversation):
                    index = n * args.per_conversation + i
                    text = self.texts[self.rng.randrange(len(self.texts))]
                    if index in self.quotes:
                        text += self._quote(self.quotes[index])
                    messages.append(
                        {
                            "sequence": i,
                            "role": roles[i % 2],
                            "text": text,
                            "sent_at": started + timedelta(seconds=20 * i),
                        }
                    )
                items.append(
                    {
                        "system": SYSTEM_SLUG,
                        "conversation_id": f"chat-{n:07d}",
                        "subject": {
                            "customer_id": self.customer_id(subject),
                            "email": self.email(subject),
                            "phone": self.phone(subject),
                        },
                        "started_at": started,
                        "messages": messages,
                    }
                )
            yield items


# --- Loading ---------------------------------------------------------------------------------


def _create_external_table(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE chat_log (msg_id bigserial PRIMARY KEY, chat_id text NOT NULL,"
        " customer_id text, body text NOT NULL, written_at timestamptz NOT NULL,"
        " author text NOT NULL)"
    )


def _index_external_table(conn: psycopg.Connection) -> bool:
    conn.execute("CREATE INDEX chat_log_customer ON chat_log (customer_id)")
    conn.execute("CREATE INDEX chat_log_chat ON chat_log (chat_id)")
    conn.execute("CREATE INDEX chat_log_written ON chat_log (written_at)")
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except psycopg.Error:
        print("pg_trgm is not available: the external mention search will scan the table.")
        return False
    conn.execute("CREATE INDEX chat_log_body_trgm ON chat_log USING gin (body gin_trgm_ops)")
    return True


def _create_subjects(data: Data) -> None:
    """All subjects up front, in bulk: ingest then finds every subject known, as it does in
    steady operation (creating 10,000 subjects one by one with their audit events would
    dominate the load time and is not what is measured here)."""
    from compliance.models import DataSubject, SubjectIdentity

    subjects = DataSubject.objects.bulk_create(
        [DataSubject(external_id=data.customer_id(n)) for n in range(data.args.subjects)],
        batch_size=2_000,
    )
    SubjectIdentity.objects.bulk_create(
        [
            SubjectIdentity(subject=subject, type=identity_type, value=value)
            for n, subject in enumerate(subjects)
            for identity_type, value in (
                ("customer_id", data.customer_id(n)),
                ("email", data.email(n)),
                ("phone", data.phone(n)),
            )
        ],
        batch_size=5_000,
    )


def _load(data: Data, ext: psycopg.Connection) -> tuple[float, float]:
    from compliance.ingest import conversations_ingest
    from compliance.models import System
    from compliance.services import system_save

    system_save(
        system=System(slug=SYSTEM_SLUG, name="Erasure bench", owner_contact="owner@example.com"),
        actor=ACTOR,
        created=True,
    )
    _create_subjects(data)
    service_s = copy_s = 0.0
    loaded = 0
    for items in data.batches():
        t = time.perf_counter()
        conversations_ingest(conversations=items, actor=ACTOR)
        service_s += time.perf_counter() - t
        t = time.perf_counter()
        with (
            ext.transaction(),
            ext.cursor() as cursor,
            cursor.copy(
                "COPY chat_log (chat_id, customer_id, body, written_at, author) FROM STDIN"
            ) as copy,
        ):
            for item in items:
                for m in item["messages"]:
                    copy.write_row(
                        (
                            item["conversation_id"],
                            item["subject"]["customer_id"],
                            m["text"],
                            m["sent_at"],
                            m["role"],
                        )
                    )
        copy_s += time.perf_counter() - t
        loaded += sum(len(item["messages"]) for item in items)
        if loaded % 100_000 < data.args.batch * data.args.per_conversation:
            print(f"  {loaded:>9,} messages loaded", flush=True)
    # What the workers do after each ingest: index the mentions, so the first measured
    # erasure does not index the whole load first.
    from compliance.mention_index import mentions_index_pending

    t = time.perf_counter()
    mentions_index_pending(wait=True)
    service_s += time.perf_counter() - t
    return service_s, copy_s


# --- Hand-written SQL ------------------------------------------------------------------------


def _pg_regex(email: str) -> str:
    # PostgreSQL's ARE has no look-behind; a DBA would write the address with word bounds.
    return r"\m" + re.sub(r"([.+*?()\[\]{}|^$\\])", r"\\\1", email) + r"\M"


def referencing(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    """Other tables with a foreign key to ``table`` (answer flags hang off messages, ...): a
    DBA deleting by hand deletes their rows too, as the connector does."""
    return conn.execute(
        "SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
        " WHERE c.contype = 'f' AND c.confrelid = %s::regclass"
        " AND c.conrelid <> 'compliance_messagemention'::regclass",
        [table],
    ).fetchall()


def hand_erase_builtin(
    conn: psycopg.Connection, *, subject_id, system_id, email: str, dependents: dict
) -> int:
    with conn.transaction():
        hits = [
            row[0]
            for row in conn.execute(
                "SELECT m.id FROM compliance_messagemention mm"
                " JOIN compliance_message m ON m.id = mm.message_id"
                " JOIN compliance_conversation c ON c.id = m.conversation_id"
                " WHERE mm.type = 'email' AND mm.value = %s AND c.system_id = %s"
                " AND c.subject_id IS DISTINCT FROM %s FOR UPDATE OF m",
                [email, system_id, subject_id],
            )
        ]
        conn.execute(
            "UPDATE compliance_message SET text = regexp_replace(text, %s, %s, 'gi')"
            " WHERE id = ANY(%s)",
            [_pg_regex(email), EMAIL_MARKER, hits],
        )
        conn.execute(
            "DELETE FROM compliance_messagemention WHERE message_id = ANY(%s)"
            " AND type = 'email' AND value = %s",
            [hits, email],
        )
        conversations = (
            "SELECT id FROM compliance_conversation WHERE subject_id = %s AND system_id = %s"
        )
        messages = f"SELECT id FROM compliance_message WHERE conversation_id IN ({conversations})"
        conn.execute(
            f"DELETE FROM compliance_messagemention WHERE message_id IN ({messages})",
            [subject_id, system_id],
        )
        for table, column in dependents["compliance_message"]:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} IN ({})").format(
                    sql.Identifier(table), sql.Identifier(column), sql.SQL(messages)
                ),
                [subject_id, system_id],
            )
        for table, column in dependents["compliance_conversation"]:
            if table == "compliance_message":
                continue
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} IN ({})").format(
                    sql.Identifier(table), sql.Identifier(column), sql.SQL(conversations)
                ),
                [subject_id, system_id],
            )
        deleted = conn.execute(
            f"DELETE FROM compliance_message WHERE conversation_id IN ({conversations})",
            [subject_id, system_id],
        ).rowcount
        conn.execute(
            "DELETE FROM compliance_conversation WHERE subject_id = %s AND system_id = %s",
            [subject_id, system_id],
        )
    return deleted


def hand_erase_external(conn: psycopg.Connection, *, customer_id: str, email: str) -> int:
    keyed = "customer_id = %s OR chat_id IN (SELECT chat_id FROM chat_log WHERE customer_id = %s)"
    with conn.transaction():
        deleted = conn.execute(
            f"DELETE FROM chat_log WHERE {keyed}", [customer_id, customer_id]
        ).rowcount
        conn.execute(
            "UPDATE chat_log SET body = regexp_replace(body, %s, %s, 'gi')"
            " WHERE body ILIKE %s AND body ~* %s",
            [_pg_regex(email), EMAIL_MARKER, f"%{email}%", _pg_regex(email)],
        )
    return deleted


def hand_search_builtin(conn: psycopg.Connection, *, system_id, email: str) -> int:
    return len(
        conn.execute(
            # The same rows and columns the connector returns for an export record.
            "SELECT m.id, c.external_id, m.sequence, m.role, m.text, m.sent_at, c.started_at,"
            " d.version, c.disclosure_shown_at"
            " FROM compliance_messagemention mm"
            " JOIN compliance_message m ON m.id = mm.message_id"
            " JOIN compliance_conversation c ON c.id = m.conversation_id"
            " LEFT JOIN compliance_aidisclosure d ON d.id = c.disclosure_id"
            " WHERE mm.type = 'email' AND mm.value = %s AND c.system_id = %s",
            [email, system_id],
        ).fetchall()
    )


def hand_search_external(conn: psycopg.Connection, *, email: str) -> int:
    return len(
        conn.execute(
            "SELECT msg_id, chat_id, written_at, author, body FROM chat_log WHERE body ILIKE %s",
            [f"%{email}%"],
        ).fetchall()
    )


# --- Measuring -------------------------------------------------------------------------------


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    server = os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL
    dbname = f"bench_erasure_{os.getpid()}"
    extname = f"bench_erasure_ext_{os.getpid()}"
    os.environ["DATABASE_URL"] = urlparse(server)._replace(path=f"/{dbname}").geturl()
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    os.environ.setdefault("ALLOWED_HOSTS", "localhost")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "compliance.settings")

    data = Data(args)
    _create_database(server, dbname)
    _create_database(server, extname)
    try:
        import django
        from django.core.management import call_command
        from django.db import connection

        django.setup()
        from compliance.connectors import ErasureStrategy, SubjectKeys, get_connector
        from compliance.models import DataSubject, LogSource, Message, System

        print(f"Migrating {dbname} ...", flush=True)
        call_command("migrate", verbosity=0, interactive=False)
        ext = psycopg.connect(_dsn(server, extname), autocommit=True)
        _create_external_table(ext)
        print(f"Loading {args.messages:,} messages into both stores ...", flush=True)
        ingest_s, copy_s = _load(data, ext)
        print("Indexing the external table ...", flush=True)
        trigram = _index_external_table(ext)
        ext.execute("VACUUM ANALYZE chat_log")
        connection.cursor().execute("VACUUM ANALYZE")

        system = System.objects.get(slug=SYSTEM_SLUG)
        builtin = get_connector(
            LogSource.objects.create(system=system, name="built-in", connector="builtin")
        )
        external = get_connector(
            LogSource.objects.create(
                system=system,
                name="external",
                connector="sql",
                config={
                    "dsn": _dsn(server, extname),
                    "table": "chat_log",
                    "identity_column": "customer_id",
                    "identity_type": "customer_id",
                    "text_column": "body",
                    "timestamp_column": "written_at",
                    "primary_key_column": "msg_id",
                    "conversation_column": "chat_id",
                    "role_column": "author",
                },
            )
        )
        total = Message.objects.count()
        assert total == args.messages, total
        own = psycopg.connect(_dsn(server, dbname), autocommit=True)
        dependents = {
            t: referencing(own, t) for t in ("compliance_message", "compliance_conversation")
        }

        def subject_keys(n: int) -> SubjectKeys:
            subject = DataSubject.objects.get(external_id=data.customer_id(n))
            return SubjectKeys.for_subject(subject)

        erase_targets = iter(data.targets[: 2 * (args.repeat + 1)])
        search_targets = data.targets[2 * (args.repeat + 1) :]
        figures: dict[str, list[float]] = {
            k: []
            for k in (
                "builtin connector",
                "builtin sql",
                "external connector",
                "external sql",
            )
        }
        counts: dict[str, list] = {k: [] for k in figures}
        for run in range(args.repeat + 1):  # the first pair warms the caches, not measured
            a, b = next(erase_targets), next(erase_targets)
            if run % 2:
                a, b = b, a  # alternate which target each side gets
            keys_a, keys_b = subject_keys(a), subject_keys(b)
            steps = [
                (
                    "builtin connector",
                    lambda k=keys_a: builtin.erase(k, strategy=ErasureStrategy.DELETE),
                ),
                (
                    "builtin sql",
                    lambda k=keys_b: hand_erase_builtin(
                        own,
                        subject_id=k.subject_id,
                        system_id=system.pk,
                        email=k.emails[0],
                        dependents=dependents,
                    ),
                ),
                (
                    "external connector",
                    lambda k=keys_a: external.erase(k, strategy=ErasureStrategy.DELETE),
                ),
                (
                    "external sql",
                    lambda k=keys_b: hand_erase_external(
                        ext, customer_id=k.customer_ids[0], email=k.emails[0]
                    ),
                ),
            ]
            if run % 2:
                # Alternate who goes first within a store: neither side always finds the
                # other's freshly dirtied pages.
                steps = [steps[1], steps[0], steps[3], steps[2]]
            for name, fn in steps:
                elapsed, result = _timed(fn)
                if run:
                    figures[name].append(elapsed)
                    counts[name].append(result)
            remaining = builtin.count(keys_a).total + external.count(keys_a).total
            if remaining:
                sys.exit(f"The connectors left {remaining} records of an erased subject.")

        search: dict[str, list[float]] = {
            k: []
            for k in ("builtin connector", "builtin sql", "external connector", "external sql")
        }
        found: dict[str, int] = {}
        for run in range(args.repeat + 1):
            email = data.email(search_targets[run % len(search_targets)])
            keys = SubjectKeys(emails=(email,))
            steps = [
                ("builtin connector", lambda k=keys: len(list(builtin.find(k)))),
                (
                    "builtin sql",
                    lambda e=email: hand_search_builtin(own, system_id=system.pk, email=e),
                ),
                ("external connector", lambda k=keys: len(list(external.find(k)))),
                ("external sql", lambda e=email: hand_search_external(ext, email=e)),
            ]
            if run % 2:
                steps = [steps[1], steps[0], steps[3], steps[2]]
            for name, fn in steps:
                elapsed, n = _timed(fn)
                if run:
                    search[name].append(elapsed)
                    found[name] = n
        own.close()
        ext.close()
        connection.close()
    finally:
        if args.keep:
            print(f"Kept the databases {dbname} and {extname}.")
        else:
            _drop_database(server, dbname)
            _drop_database(server, extname)

    print()
    print(
        f"Loaded {args.messages:,} messages: conversations_ingest {ingest_s:.1f} s "
        f"(with the workers' mention indexing), external COPY {copy_s:.1f} s."
    )
    print(
        f"\nErase one subject (~{args.messages // args.subjects} own messages, "
        f"{args.mentions} quotes elsewhere), median of {args.repeat} runs, delete strategy:"
    )
    print(f"{'store':<12}{'connector ms':>14}{'hand SQL ms':>14}{'ratio':>8}")
    ok = True
    for store in ("builtin", "external"):
        c = _median(figures[f"{store} connector"]) * 1000
        s = _median(figures[f"{store} sql"]) * 1000
        ratio = c / s
        ok &= ratio <= AIM_RATIO
        print(f"{store:<12}{c:>14.1f}{s:>14.1f}{ratio:>8.2f}")
    sample = counts["builtin connector"][0]
    print(
        f"(builtin connector erased {sample.keyed} messages and redacted {sample.mentions} "
        "quotes per subject)"
    )
    print(f"\nSearch one email over {args.messages:,} messages, median of {args.repeat} runs:")
    print(f"{'store':<12}{'connector ms':>14}{'hand SQL ms':>14}{'ratio':>8}{'found':>8}")
    for store in ("builtin", "external"):
        c = _median(search[f"{store} connector"]) * 1000
        s = _median(search[f"{store} sql"]) * 1000
        ratio = c / s
        ok &= ratio <= AIM_RATIO and c / 1000 < AIM_SEARCH_S
        print(f"{store:<12}{c:>14.1f}{s:>14.1f}{ratio:>8.2f}{found[f'{store} connector']:>8}")
    if not trigram:
        print("(no pg_trgm: the external search scanned the table)")
    verdict = "meets" if ok else "misses"
    print(f"\nThe run {verdict} the aims (ratio <= {AIM_RATIO}, search < {AIM_SEARCH_S:.0f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
