"""Retention benchmark: the retention service against hand-written batched DELETEs, in the
same run, on the same rows.

Run it with ``make bench``'s environment, e.g.::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/compliance .venv/bin/python bench/retention.py

It creates a database of its own on the server named by ``DATABASE_URL`` (only host, port,
user and password are used), migrates it, measures, and drops it again.

The data: ``--messages`` messages (2,000,000 by default) of one system's built-in store, ten
per conversation, sent evenly over two years, so half are older than the policy's one-year
cut-off; one message in twelve has an email mention (the ``MessageMention`` index the
connector must clean up with its message).

What is compared, both with one transaction per batch of ``--batch`` rows:

* **service**: ``compliance.retention.retention_enforce`` for a 365-day delete policy: the
  run and its per-source row, the built-in connector's ``purge`` (select a batch of ids,
  delete their mentions and the messages, delete conversations left empty) and the
  progress the run saves after every batch;
* **hand-written**: the same three DELETEs written directly in SQL with psycopg: select the
  next ids past the cut-off, delete their mentions, delete them, delete emptied
  conversations.

Before each phase the same rows are in place (restored from a snapshot after the service
phase), the tables are vacuumed and analyzed, and a CHECKPOINT flushes dirty pages. The
longest transaction is measured twice: exactly around each batch in Python, and from the
database's side by sampling ``pg_stat_activity.xact_start`` every few milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
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
SYSTEM_SLUG = "bench-retention"
ACTOR = "bench"
RATIO_AIM = 1.5
BATCH_AIM_S = 1.0
PER_CONVERSATION = 10
KEEP_DAYS = 365
SPAN_DAYS = 2 * KEEP_DAYS


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=2000, help="rows per transaction")
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--sample-ms", type=float, default=5.0, help="pg_stat_activity poll")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument(
        "--fail-over",
        type=float,
        default=None,
        metavar="RATIO",
        help="exit 1 if service/hand-written time is above RATIO (default: report only)",
    )
    return parser.parse_args(argv)


# --- The benchmark's own database -------------------------------------------------------------


def _settle(dsn: str) -> None:
    """Vacuum and analyze the store's tables, then flush dirty pages, so that neither phase
    pays for the other's dead rows or writes."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = ("compliance_messagemention", "compliance_message", "compliance_conversation")
        for table in tables:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


# --- Data -------------------------------------------------------------------------------------


def _load(dsn: str, args: argparse.Namespace, now: datetime) -> tuple[int, int]:
    """Create the system, its source, subjects, conversations and messages; return
    (system id, source id)."""
    from django.contrib.auth.models import User

    from compliance.models import Conversation, DataSubject, LogSource, System
    from compliance.services import system_save

    system = system_save(
        system=System(slug=SYSTEM_SLUG, name="Retention bench", owner_contact="dpo@example.com"),
        actor=ACTOR,
        created=True,
    )
    source = LogSource.objects.create(system=system, name="built-in store", connector="builtin")
    User.objects.create_user("bench-dpo", is_staff=True)
    DataSubject.objects.bulk_create(
        (DataSubject(external_id=f"cust-{n:07d}") for n in range(args.subjects)), batch_size=5000
    )
    subject_ids = list(DataSubject.objects.order_by("external_id").values_list("pk", flat=True))

    conversations = args.messages // PER_CONVERSATION
    start = now - timedelta(days=SPAN_DAYS)
    step = timedelta(days=SPAN_DAYS) / conversations
    # Chronological, as ingest writes them: the oldest rows have the lowest ids.
    Conversation.objects.bulk_create(
        (
            Conversation(
                system=system,
                subject_id=subject_ids[n % len(subject_ids)],
                external_id=f"bench-{n:08d}",
                started_at=start + n * step,
            )
            for n in range(conversations)
        ),
        batch_size=5000,
    )
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, started_at FROM compliance_conversation WHERE system_id = %s ORDER BY id",
            [system.pk],
        ).fetchall()
        with (
            conn.cursor() as cursor,
            cursor.copy(
                "COPY compliance_message (conversation_id, sequence, role, text, sent_at)"
                " FROM STDIN"
            ) as copy,
        ):
            for conversation_id, started_at in rows:
                for i in range(PER_CONVERSATION):
                    copy.write_row(
                        (
                            conversation_id,
                            i,
                            "customer" if i % 2 == 0 else "assistant",
                            f"Message {i} about order {conversation_id}: where is my parcel?",
                            started_at + timedelta(seconds=20 * i),
                        )
                    )
        conn.execute(
            "INSERT INTO compliance_messagemention (message_id, type, value)"
            " SELECT id, 'email', 'someone' || id || '@example.com'"
            " FROM compliance_message WHERE id % 12 = 0"
        )
        conn.commit()
    return system.pk, source.pk


_SNAPSHOT = {
    "compliance_conversation": "bench_snap_conversation",
    "compliance_message": "bench_snap_message",
    "compliance_messagemention": "bench_snap_mention",
}


def _snapshot(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, snap in _SNAPSHOT.items():
            conn.execute(
                sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(
                    sql.Identifier(snap), sql.Identifier(table)
                )
            )


def _restore(dsn: str) -> None:
    """Put back exactly the rows the previous phase removed (same ids)."""
    with psycopg.connect(dsn) as conn:
        for table, snap in _SNAPSHOT.items():
            conn.execute(
                sql.SQL(
                    "INSERT INTO {table} SELECT s.* FROM {snap} AS s"
                    " WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.id = s.id)"
                ).format(table=sql.Identifier(table), snap=sql.Identifier(snap))
            )
        conn.commit()


def _counts(dsn: str, cutoff: datetime) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM compliance_message WHERE sent_at < %s),"
            " (SELECT count(*) FROM compliance_message),"
            " (SELECT count(*) FROM compliance_conversation)",
            [cutoff],
        ).fetchone()


# --- Measuring transactions from the database's side -------------------------------------------


class TransactionSampler:
    """Polls ``pg_stat_activity`` for the age of the open transactions of the benchmark's
    database (other than its own) and keeps the largest seen."""

    def __init__(self, dsn: str, dbname: str, interval_s: float):
        self.dsn, self.dbname, self.interval = dsn, dbname, interval_s
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            query = (
                "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)"
                " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                " AND xact_start IS NOT NULL AND query NOT ILIKE 'VACUUM%%'"
            )
            while not self._stop.is_set():
                (age,) = conn.execute(query, [self.dbname]).fetchone()
                self.longest = max(self.longest, float(age))
                time.sleep(self.interval)

    def __enter__(self) -> TransactionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --- Phases -----------------------------------------------------------------------------------


def _run_service(policy_id: int, batch: int) -> tuple[float, list[float], int]:
    """retention_enforce; the exact time of every batch is taken around the connector's
    step, which runs inside the run's per-batch transaction."""
    from django.db import connections

    from compliance.connectors import builtin
    from compliance.models import RetentionPolicy
    from compliance.retention import retention_enforce

    steps: list[float] = []
    original = builtin.BuiltinConnector.purge

    def timed_purge(self, **kwargs):
        batches = original(self, **kwargs)
        while True:
            started = time.perf_counter()
            try:
                item = next(batches)
            except StopIteration:
                return
            steps.append(time.perf_counter() - started)
            yield item

    builtin.BuiltinConnector.purge = timed_purge
    try:
        policy = RetentionPolicy.objects.get(pk=policy_id)
        started = time.perf_counter()
        run = retention_enforce(actor=ACTOR, policy=policy, batch_size=batch)
        elapsed = time.perf_counter() - started
    finally:
        builtin.BuiltinConnector.purge = original
        connections.close_all()
    if run.status != "completed":
        sys.exit(f"The retention run ended {run.status}.")
    return elapsed, steps, run.acted_on


def _run_hand_written(dsn: str, system_id: int, cutoff: datetime, batch: int):
    select = (
        "SELECT m.id FROM compliance_message AS m"
        " JOIN compliance_conversation AS c ON c.id = m.conversation_id"
        " WHERE c.system_id = %s AND m.sent_at < %s AND m.id > %s ORDER BY m.id LIMIT %s"
    )
    per_batch: list[float] = []
    deleted = 0
    last = 0
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        while True:
            t = time.perf_counter()
            with conn.transaction():
                ids = [row[0] for row in conn.execute(select, [system_id, cutoff, last, batch])]
                if not ids:
                    break
                last = ids[-1]
                conn.execute(
                    "DELETE FROM compliance_messagemention WHERE message_id = ANY(%s)", [ids]
                )
                touched = {
                    row[0]
                    for row in conn.execute(
                        "DELETE FROM compliance_message WHERE id = ANY(%s)"
                        " RETURNING conversation_id",
                        [ids],
                    )
                }
                deleted += len(ids)
                conn.execute(
                    "DELETE FROM compliance_conversation AS c WHERE c.id = ANY(%s) AND NOT EXISTS"
                    " (SELECT 1 FROM compliance_message AS m WHERE m.conversation_id = c.id)",
                    [list(touched)],
                )
            per_batch.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
    return elapsed, per_batch, deleted


# --- Main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    server = os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL
    dbname = f"bench_retention_{os.getpid()}"
    dsn = _dsn(server, dbname)

    os.environ["DATABASE_URL"] = urlparse(server)._replace(path=f"/{dbname}").geturl()
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    os.environ.setdefault("ALLOWED_HOSTS", "localhost")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "compliance.settings")
    os.environ["RETENTION_BATCH_SIZE"] = str(args.batch)

    _create_database(server, dbname)
    try:
        import django
        from django.core.management import call_command
        from django.db import connections

        django.setup()
        print(f"Migrating the benchmark database {dbname} ...", flush=True)
        call_command("migrate", verbosity=0, interactive=False)

        from django.contrib.auth.models import User

        from compliance.retention import retention_policy_create

        now = datetime.now(UTC)
        print(f"Loading {args.messages:,} messages over {SPAN_DAYS} days ...", flush=True)
        system_id, source_id = _load(dsn, args, now)
        policy = retention_policy_create(
            name="Conversation logs: one year",
            source_id=source_id,
            duration_days=KEEP_DAYS,
            approved_by=User.objects.get(username="bench-dpo"),
            actor=ACTOR,
        )
        connections.close_all()
        _snapshot(dsn)
        # The run fixes its cut-off when it starts; the hand-written phase uses the same one.
        cutoff = datetime.now(UTC) - timedelta(days=KEEP_DAYS)
        old, total, conversations = _counts(dsn, cutoff)
        print(f"{total:,} messages, {old:,} past the cut-off, {conversations:,} conversations")

        _settle(dsn)
        print(f"service: retention_enforce, batches of {args.batch:,} ...", flush=True)
        with TransactionSampler(dsn, dbname, args.sample_ms / 1000) as service_sampler:
            service_s, service_batches, service_n = _run_service(policy.pk, args.batch)
        from compliance.models import RetentionRunSource

        run_cutoff = RetentionRunSource.objects.get(source_id=source_id).cutoff
        connections.close_all()
        service_left = _counts(dsn, run_cutoff)

        print("restoring the same rows ...", flush=True)
        _restore(dsn)
        _settle(dsn)
        print(f"hand-written: batched DELETEs, batches of {args.batch:,} ...", flush=True)
        with TransactionSampler(dsn, dbname, args.sample_ms / 1000) as hand_sampler:
            hand_s, hand_batches, hand_n = _run_hand_written(dsn, system_id, run_cutoff, args.batch)
        hand_left = _counts(dsn, run_cutoff)
    finally:
        if args.keep:
            print(f"Kept the database {dbname}.")
        else:
            _drop_database(server, dbname)

    if service_n != hand_n or service_left != hand_left:
        sys.exit(
            f"The phases disagree: service removed {service_n:,} leaving {service_left}, "
            f"hand-written {hand_n:,} leaving {hand_left}."
        )
    ratio = service_s / hand_s
    print()
    print(
        f"{'path':<34}{'rows':>11}{'seconds':>10}{'rows/s':>11}{'batches':>9}"
        f"{'longest batch':>15}{'longest xact (pg)':>19}"
    )
    for name, seconds, n, batches, sampler in (
        ("service retention_enforce", service_s, service_n, service_batches, service_sampler),
        ("hand-written batched DELETEs", hand_s, hand_n, hand_batches, hand_sampler),
    ):
        print(
            f"{name:<34}{n:>11,}{seconds:>10.2f}{n / seconds:>11,.0f}{len(batches):>9,}"
            f"{max(batches):>14.3f}s{sampler.longest:>18.3f}s"
        )
    in_connector = sum(service_batches)
    print(
        f"\nof the service's {service_s:.2f}s, {in_connector:.2f}s were spent inside the built-in"
        f" connector's purge steps and {service_s - in_connector:.2f}s outside them: the COMMIT"
        " of every batch (with its deferred foreign-key checks), which the run's transaction"
        " makes together with its progress row, and planning, claiming and finishing the run"
    )
    print(f"ratio service/hand-written time: {ratio:.2f} (aim: at most {RATIO_AIM:.2f})")
    longest = max(max(service_batches), service_sampler.longest)
    verdict = "meets" if longest < BATCH_AIM_S else "misses"
    print(f"longest service batch transaction: {longest:.3f}s ({verdict} the aim of < 1 s)")
    print("(the built-in store is not partitioned, so there is no partition-drop path to show)")
    if args.fail_over is not None and ratio > args.fail_over:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
