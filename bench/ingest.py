"""Ingest benchmark: the service the API uses against a raw psycopg COPY, in the same run.

Run it with ``make bench`` (or ``python bench/ingest.py --help``). It creates a database of
its own on the server named by ``DATABASE_URL`` (only host, port, user and password are
used), migrates it, measures, and drops it again, so it never touches a real database.

What is compared, rows being messages:

* **service**: ``compliance.ingest.conversations_ingest``, the function behind
  ``POST /api/v1/conversations/``, in batches of up to 1,000 conversations. Its time covers
  everything the API does after validation: resolving (and on first sight creating) data
  subjects, the ingest guards, creating conversations, minimisation, mention extraction,
  storing messages and writing the audit events.
* **COPY**: the same message rows (same conversation ids, texts and times) streamed with
  psycopg's ``COPY ... FROM STDIN`` into ``bench_message_copy``, a fresh table created
  ``LIKE compliance_message INCLUDING ALL`` plus the same deferred foreign key to
  ``compliance_conversation``: same columns, unique constraint, indexes and FK check. One
  transaction per batch, as the service has.

The two are interleaved batch by batch (service batch 1, COPY of its rows, service batch 2,
...), so a machine whose load changes during the run slows both alike; both start after a
``CHECKPOINT`` on empty tables. ``--rounds`` repeats the whole workload with new ids and
reports each round's ratio and their median. The API's input validation (DRF serializers)
is measured apart on a sample, for information: it is not part of the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import create_database as _create_database  # noqa: E402
from benchdb import drop_database as _drop_database  # noqa: E402
from benchdb import dsn as _dsn  # noqa: E402

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/compliance"
SYSTEM_SLUG = "bench-plugin"
ACTOR = "bench"
AIM = 0.5


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=10, help="messages per conversation")
    parser.add_argument("--subjects", type=int, default=2_000, help="distinct customer ids")
    parser.add_argument("--batch", type=int, default=1_000, help="conversations per call")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the workload with new ids; report the median ratio (for busy machines)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="run the service phase under cProfile, save the stats to FILE and print the top "
        "functions (the profiler slows the service: do not quote that run's ratio)",
    )
    parser.add_argument(
        "--fail-under",
        type=float,
        default=None,
        metavar="RATIO",
        help="exit 1 if service/COPY is below RATIO (default: report only)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    return parser.parse_args(argv)


# --- The benchmark's own database ------------------------------------------------------------


def _server_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL


def _checkpoint(conn: psycopg.Connection) -> None:
    # Flush the previous phase's dirty pages so the next phase does not pay for them.
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        conn.execute("CHECKPOINT")


# --- Data ------------------------------------------------------------------------------------


def _texts(rng: random.Random, count: int = 3_000) -> list[str]:
    """Chat-like texts of realistic length; about one customer message in eight carries an
    email or phone, as real chats do (mention extraction and redaction will scan them)."""
    from faker import Faker

    fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR"])
    fake.seed_instance(rng.randrange(1 << 30))
    texts = []
    for _ in range(count):
        text = fake.paragraph(nb_sentences=rng.randint(1, 4))
        roll = rng.random()
        if roll < 0.08:
            text += f" You can reach me at {fake.email()}."
        elif roll < 0.12:
            text += f" Call me on {fake.phone_number()} please."
        texts.append(text)
    return texts


def _conversations(args: argparse.Namespace, round_no: int = 0) -> list[dict]:
    rng = random.Random(args.seed)
    texts = _texts(rng)
    roles = ["customer", "assistant"]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    items = []
    for n in range(args.conversations):
        started = start + timedelta(minutes=7 * n)
        items.append(
            {
                "system": SYSTEM_SLUG,
                "conversation_id": f"bench-{round_no}-{n:07d}",
                "subject": {"customer_id": f"cust-{round_no}-{n % args.subjects:06d}"},
                "started_at": started,
                "disclosure_version": 1,
                "disclosure_shown_at": started,
                "messages": [
                    {
                        "sequence": i,
                        "role": roles[i % 2],
                        "text": texts[rng.randrange(len(texts))],
                        "sent_at": started + timedelta(seconds=15 * i),
                    }
                    for i in range(args.messages)
                ],
            }
        )
    return items


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _as_json_input(item: dict) -> dict:
    """What the API's serializers receive: times as ISO strings, as JSON carries them."""
    out = {**item}
    for key in ("started_at", "disclosure_shown_at"):
        out[key] = item[key].isoformat()
    out["messages"] = [{**m, "sent_at": m["sent_at"].isoformat()} for m in item["messages"]]
    return out


# --- Phases ----------------------------------------------------------------------------------


def _setup_system() -> None:
    from compliance.models import System
    from compliance.services import disclosure_publish, system_save

    system = system_save(
        system=System(slug=SYSTEM_SLUG, name="Benchmark plugin", owner_contact="owner@example.com"),
        actor=ACTOR,
        created=True,
    )
    disclosure_publish(system=system, text="You are chatting with an AI assistant.", actor=ACTOR)


def _prepare_copy_table(conn: psycopg.Connection) -> None:
    for table in ("bench_message_copy", "bench_message_copy_binary"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (LIKE compliance_message INCLUDING ALL)")
        # Same foreign key as Django's (deferred), so COPY pays for the same checks.
        conn.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {table}_conversation_fk"
            " FOREIGN KEY (conversation_id) REFERENCES compliance_conversation (id)"
            " DEFERRABLE INITIALLY DEFERRED"
        )
    conn.commit()


def _copy_rows(conn: psycopg.Connection, batch: list[dict]) -> list[tuple]:
    ids = dict(
        conn.execute(
            "SELECT external_id, id FROM compliance_conversation WHERE system_id ="
            " (SELECT id FROM compliance_system WHERE slug = %s) AND external_id = ANY(%s)",
            [SYSTEM_SLUG, [item["conversation_id"] for item in batch]],
        ).fetchall()
    )
    conn.commit()
    return [
        (ids[item["conversation_id"]], m["sequence"], m["role"], m["text"], m["sent_at"])
        for item in batch
        for m in item["messages"]
    ]


COPY_STATEMENT = (
    "COPY bench_message_copy (conversation_id, sequence, role, text, sent_at) FROM STDIN"
)
BINARY_COPY_STATEMENT = (
    "COPY bench_message_copy_binary (conversation_id, sequence, role, text, sent_at)"
    " FROM STDIN (FORMAT BINARY)"
)
BINARY_TYPES = ["int8", "int4", "varchar", "text", "timestamptz"]


@dataclass
class RoundTimes:
    service: list[float] = field(default_factory=list)
    copy: list[float] = field(default_factory=list)
    binary_copy: list[float] = field(default_factory=list)
    indexing: float = 0.0
    indexed: int = 0


def _run_round(
    conn: psycopg.Connection, batches: list[list[dict]], profiler: cProfile.Profile | None
) -> RoundTimes:
    """Service, COPY and binary COPY for each batch in turn, then the mention indexing the
    workers do after the service's calls; return their times."""
    from compliance.ingest import conversations_ingest
    from compliance.mention_index import mentions_index_pending

    times = RoundTimes()
    service_times, copy_times = times.service, times.copy
    for batch in batches:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        result = conversations_ingest(conversations=batch, actor=ACTOR)
        if profiler:
            profiler.disable()
        service_times.append(time.perf_counter() - started)
        expected = sum(len(item["messages"]) for item in batch)
        if result.messages_created != expected:
            sys.exit(f"The service stored {result.messages_created} messages, not {expected}.")

        rows = _copy_rows(conn, batch)
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY_STATEMENT) as copy:
            for row in rows:
                copy.write_row(row)
        copy_times.append(time.perf_counter() - started)

        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cursor,
            cursor.copy(BINARY_COPY_STATEMENT) as copy,
        ):
            copy.set_types(BINARY_TYPES)
            for row in rows:
                copy.write_row(row)
        times.binary_copy.append(time.perf_counter() - started)
    started = time.perf_counter()
    times.indexed = mentions_index_pending(wait=True)
    times.indexing = time.perf_counter() - started
    return times


def _run_validation(sample: list[list[dict]]) -> float:
    from compliance.api.serializers import IngestBatchSerializer

    payloads = [{"conversations": [_as_json_input(item) for item in batch]} for batch in sample]
    started = time.perf_counter()
    for payload in payloads:
        serializer = IngestBatchSerializer(data=payload)
        if not serializer.is_valid():
            sys.exit(f"The API serializer refused the benchmark data: {serializer.errors!r:.300}")
    return time.perf_counter() - started


# --- Main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    server = _server_url()
    dbname = f"bench_ingest_{os.getpid()}"
    bench_url = urlparse(server)._replace(path=f"/{dbname}").geturl()

    # Production mode against the benchmark's own database; `make bench` sets the rest.
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    os.environ.setdefault("ALLOWED_HOSTS", "localhost")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "compliance.settings")
    # Each call publishes one mention-indexing task; the benchmark indexes in-process instead
    # (timed apart), so the tasks go to an in-memory broker rather than a real queue.
    os.environ["CELERY_BROKER_URL"] = "memory://localhost/"

    print(f"Generating {args.conversations * args.messages:,} messages ...", flush=True)
    first_items = _conversations(args)
    batches = list(_batches(first_items, args.batch))
    total = sum(len(item["messages"]) for item in first_items)

    _create_database(server, dbname)
    try:
        import django
        from django.core.management import call_command
        from django.db import connections

        django.setup()
        print(f"Migrating the benchmark database {dbname} ...", flush=True)
        call_command("migrate", verbosity=0, interactive=False)
        _setup_system()

        profiler = cProfile.Profile() if args.profile else None
        rounds: list[RoundTimes] = []
        with psycopg.connect(_dsn(server, dbname)) as conn:
            _prepare_copy_table(conn)
            with psycopg.connect(_dsn(server, dbname), autocommit=True) as admin:
                _checkpoint(admin)
            for round_no in range(args.rounds):
                items = _conversations(args, round_no) if round_no else first_items
                print(
                    f"round {round_no + 1}/{args.rounds}: {len(batches)} batches of "
                    f"{args.batch:,} conversations through conversations_ingest, each followed "
                    "by a COPY of its rows ...",
                    flush=True,
                )
                rounds.append(_run_round(conn, list(_batches(items, args.batch)), profiler))
            for table in ("bench_message_copy", "bench_message_copy_binary"):
                copied = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                if copied != total * args.rounds:
                    sys.exit(f"{table} holds {copied} rows, expected {total * args.rounds}.")

        sample = batches[:2]
        validation_s = _run_validation(sample)
        validation_rows = sum(len(item["messages"]) for batch in sample for item in batch)
        connections.close_all()
    finally:
        if args.keep:
            print(f"Kept the database {dbname}.")
        else:
            _drop_database(server, dbname)

    if profiler:
        profiler.dump_stats(args.profile)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())

    # The first calls of a round create every subject; later ones find them all known.
    known_from = min(len(batches), -(-args.subjects // args.batch))
    known_n = sum(len(item["messages"]) for batch in batches[known_from:] for item in batch)
    header = f"{'path':<44}{'rows':>10}{'seconds':>10}{'rows/s':>12}"
    ratios = []
    for round_no, times in enumerate(rounds, start=1):
        service_s, copy_s = sum(times.service), sum(times.copy)
        binary_s = sum(times.binary_copy)
        known_s = sum(times.service[known_from:])
        ratio = copy_s / service_s
        ratios.append(ratio)
        print(f"\nround {round_no}\n{header}")
        _line("service conversations_ingest", total, service_s)
        if known_s:
            _line("  of which calls with known subjects", known_n, known_s)
        _line("raw psycopg COPY", total, copy_s)
        print(f"ratio service/COPY: {ratio:.2f}")
        print("for information, not the ratio above:")
        _line("  raw psycopg binary COPY", total, binary_s)
        print(f"  ratio service/binary COPY: {binary_s / service_s:.2f}")
        _line(f"  workers' mention indexing ({times.indexed:,} msgs)", total, times.indexing)
        print(
            "  ratio (service + mention indexing)/COPY: "
            f"{copy_s / (service_s + times.indexing):.2f}"
        )
    print()
    _line("API input validation (info, not in ratio)", validation_rows, validation_s)
    ratio = statistics.median(ratios)
    verdict = "meets" if ratio >= AIM else "is below"
    label = "median ratio" if len(ratios) > 1 else "ratio"
    print(f"\n{label} service/COPY: {ratio:.2f} ({verdict} the aim of {AIM:.2f})")
    if args.profile:
        print("(profiled run: the service figures include cProfile's overhead)")
    if args.fail_under is not None and ratio < args.fail_under:
        return 1
    return 0


def _line(label: str, rows: int, seconds: float) -> None:
    print(f"{label:<44}{rows:>10,}{seconds:>10.2f}{rows / seconds:>12,.0f}")


if __name__ == "__main__":
    sys.exit(main())
