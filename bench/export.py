"""Export benchmark: an access request for a subject with 100,000 messages, measured for
time and peak memory (RSS), against a raw streaming export of the same rows in the same run.

Run it with ``.venv/bin/python bench/export.py`` (``--help`` for the options). It creates a
PostgreSQL database of its own on the server named by ``DATABASE_URL`` (only host, port,
user and password are used), migrates it, fills it, measures, and drops it again; files go
to a temporary directory that is removed at the end.

What is compared:

* **service**: what a worker does for ``POST /api/v1/requests/`` with ``type: access``:
  ``dsar.services.request_create`` (pre-verified), ``source_task_execute`` for the built-in
  store's source task (the connector streams the subject's keyed messages and the mentions
  of their email in other people's chats into a JSONL part file), then
  ``request_finalize``, which writes the ZIP: ``data.json``, one CSV per source,
  ``report.html`` and ``manifest.json`` with the SHA-256 of every file.
* **raw**: the same keyed messages read with a psycopg server-side cursor (one JOIN, 2,000
  rows per fetch) and written as JSON lines into a ZIP entry — the least any export must do.

Each phase runs in a fresh Python process, so its peak RSS (``ru_maxrss``) is its own; the
RSS the process had before the export started (Django loaded, connected) is printed too.
The aim is a peak under 150 MB for the service.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import admin as _admin  # noqa: E402
from benchdb import dsn as _dsn  # noqa: E402

DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/compliance"
SUBJECT_ID = "C-BENCH-1"
SUBJECT_EMAIL = "bench.subject@example.com"
AIM_MB = 150

WORDS = [
    "order",
    "delivery",
    "refund",
    "parcel",
    "invoice",
    "address",
    "payment",
    "card",
    "account",
    "password",
    "reset",
    "shipping",
    "return",
    "exchange",
    "size",
    "colour",
    "warranty",
    "store",
    "opening",
    "hours",
    "discount",
    "code",
    "thanks",
    "please",
    "hello",
    "when",
    "where",
    "why",
    "how",
    "could",
    "would",
    "tomorrow",
    "yesterday",
    "today",
]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def _django(database_url: str, var_dir: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "compliance.settings",
            "DATABASE_URL": database_url,
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-not-secret"),
            "ALLOWED_HOSTS": "localhost",
            "COMPLIANCE_VAR_DIR": var_dir,
            "LOG_LEVEL": "WARNING",
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
        }
    )
    os.environ.pop("CELERY_BROKER_URL", None)  # the filesystem broker in var_dir: no server
    import django

    django.setup()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))


def phase_seed(args) -> dict:
    from compliance.ingest import conversations_ingest
    from compliance.mention_index import mentions_index_pending
    from compliance.models import LogSource, System
    from compliance.services import disclosure_publish, system_save

    rng = random.Random(args.seed)
    system = system_save(
        system=System(slug="bench-plugin", name="Bench plugin", owner_contact="o@example.com"),
        actor="bench",
        created=True,
    )
    disclosure_publish(system=system, text="You are chatting with an AI assistant.", actor="bench")
    LogSource.objects.create(system=system, name="Built-in store", connector="builtin")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    per_conversation = 100
    conversations = args.messages // per_conversation
    batch = []
    for c in range(conversations):
        batch.append(
            {
                "system": "bench-plugin",
                "conversation_id": f"s-{c}",
                "subject": {"customer_id": SUBJECT_ID, "email": SUBJECT_EMAIL},
                "started_at": start + timedelta(minutes=c),
                "disclosure_version": 1,
                "disclosure_shown_at": start + timedelta(minutes=c),
                "messages": [
                    {
                        "sequence": m,
                        "role": "customer" if m % 2 else "assistant",
                        "text": _text(rng),
                        "sent_at": start + timedelta(minutes=c, seconds=m),
                    }
                    for m in range(per_conversation)
                ],
            }
        )
        if len(batch) == 50:
            conversations_ingest(conversations=batch, actor="bench")
            batch = []
    # Other customers; one message in fifty mentions the subject's email.
    for c in range(args.others // per_conversation):
        batch.append(
            {
                "system": "bench-plugin",
                "conversation_id": f"o-{c}",
                "subject": {"customer_id": f"C-OTHER-{c % 500}"},
                "started_at": start,
                "messages": [
                    {
                        "sequence": m,
                        "role": "customer",
                        "text": _text(rng)
                        + (f" cc {SUBJECT_EMAIL}" if (c * per_conversation + m) % 50 == 0 else ""),
                        "sent_at": start + timedelta(seconds=m),
                    }
                    for m in range(per_conversation)
                ],
            }
        )
        if len(batch) == 50:
            conversations_ingest(conversations=batch, actor="bench")
            batch = []
    if batch:
        conversations_ingest(conversations=batch, actor="bench")
    mentions_index_pending(wait=True)  # what the workers do after each ingest
    return {"subject_messages": conversations * per_conversation, "other_messages": args.others}


def phase_service(args) -> dict:
    from django.db import connection

    from dsar import services
    from dsar.models import SourceTask

    connection.ensure_connection()
    rss_before = _rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    dsr = services.request_create(
        type="access",
        identity={"customer_id": SUBJECT_ID},
        channel="api",
        actor="bench",
        pre_verified=True,
    )
    for task in SourceTask.objects.filter(request=dsr):
        services.source_task_execute(task_id=task.pk)
    outcome = services.request_finalize(request_id=dsr.pk)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    dsr.refresh_from_db()
    task = SourceTask.objects.get(request=dsr)
    return {
        "outcome": outcome,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "records": task.records_found,
        "mentions": task.mentions_found,
        "zip_mb": round(dsr.export_size / 1024 / 1024, 1),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
    }


def phase_raw(args) -> dict:
    import zipfile

    import psycopg

    rss_before = _rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    out = Path(args.var_dir) / "raw.zip"
    rows = 0
    with (
        psycopg.connect(
            os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
        ) as conn,
        conn.cursor(name="export") as cur,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf,
    ):
        cur.itersize = 2000
        cur.execute(
            "SELECT m.id, c.external_id, m.sent_at, m.role, m.text "
            "FROM compliance_message m JOIN compliance_conversation c "
            "ON c.id = m.conversation_id JOIN compliance_datasubject s "
            "ON s.id = c.subject_id WHERE s.external_id = %s ORDER BY m.conversation_id, "
            "m.sequence",
            [SUBJECT_ID],
        )
        with zf.open("data.jsonl", "w", force_zip64=True) as entry:
            for pk, conversation, sent_at, role, text in cur:
                entry.write(
                    json.dumps(
                        {
                            "record_id": str(pk),
                            "conversation_id": conversation,
                            "sent_at": sent_at.isoformat(),
                            "role": role,
                            "text": text,
                        }
                    ).encode()
                    + b"\n"
                )
                rows += 1
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu_started, 2),
        "records": rows,
        "zip_mb": round(out.stat().st_size / 1024 / 1024, 1),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
    }


PHASES = {"seed": phase_seed, "service": phase_service, "raw": phase_raw}


def _run_phase(name: str, args, database_url: str, var_dir: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--phase",
        name,
        "--messages",
        str(args.messages),
        "--others",
        str(args.others),
        "--seed",
        str(args.seed),
        "--var-dir",
        var_dir,
    ]
    env = {**os.environ, "DATABASE_URL": database_url}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"phase {name} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages of the subject")
    parser.add_argument("--others", type=int, default=20_000, help="other customers' messages")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database and files")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--var-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:
        _django(os.environ["DATABASE_URL"], args.var_dir)
        if args.phase == "seed":
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
        print(json.dumps(PHASES[args.phase](args)))
        return 0

    server = os.environ.get("DATABASE_URL") or DEFAULT_SERVER_URL
    name = f"bench_export_{os.getpid()}"
    database_url = _dsn(server, name)
    var_dir = tempfile.mkdtemp(prefix="bench-export-")
    with _admin(server) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        print(f"seeding {args.messages:,} messages of one subject and {args.others:,} others...")
        seeded = _run_phase("seed", args, database_url, var_dir)
        service = _run_phase("service", args, database_url, var_dir)
        raw = _run_phase("raw", args, database_url, var_dir)
    finally:
        if not args.keep:
            with _admin(server) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            shutil.rmtree(var_dir, ignore_errors=True)
    print(f"seeded: {seeded}")
    print(
        f"service: {service['seconds']} s ({service['cpu_seconds']} s CPU) for "
        f"{service['records']:,} records "
        f"({service['mentions']} mentions), ZIP {service['zip_mb']} MB, "
        f"peak RSS {service['peak_rss_mb']} MB (before the export {service['rss_before_mb']} MB)"
    )
    print(
        f"raw:     {raw['seconds']} s ({raw['cpu_seconds']} s CPU) for {raw['records']:,} "
        f"records, ZIP {raw['zip_mb']} MB, "
        f"peak RSS {raw['peak_rss_mb']} MB (before {raw['rss_before_mb']} MB)"
    )
    print(f"ratio service/raw time: {service['seconds'] / max(raw['seconds'], 0.01):.1f}x")
    verdict = "within" if service["peak_rss_mb"] < AIM_MB else "ABOVE"
    print(f"peak RSS {verdict} the aim of {AIM_MB} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
