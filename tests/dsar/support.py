"""Helpers for the DSAR tests: a real Celery worker process, a throwaway external PostgreSQL
database, JSONL folders, and a data set spread over all three kinds of log source."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import connection
from django.test import TestCase

from compliance.connectors import SubjectKeys, get_connector
from compliance.ingest import conversations_ingest
from compliance.models import LogSource, Message

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def committed():
    """Run the on_commit callbacks (notices, task dispatch) of the block as if the test's
    transaction had committed; the test's data is still rolled back afterwards."""
    with TestCase.captureOnCommitCallbacks(execute=True) as callbacks:
        yield callbacks


def wait_until(condition, *, timeout: float, what: str, interval: float = 0.2, explain=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    detail = f"\n{explain()}" if explain else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def explain_request(request_id, pool=None) -> str:
    """Where a request is stuck: its rows, and the end of each worker's log."""
    from dsar.models import DataSubjectRequest, SourceTask

    lines = [f"request: {DataSubjectRequest.objects.filter(pk=request_id).values().first()}"]
    for row in SourceTask.objects.filter(request_id=request_id).values(
        "pk", "source_id", "status", "attempts", "error", "heartbeat_at", "dispatched_at"
    ):
        lines.append(f"task: {row}")
    for worker in pool.workers if pool else []:
        lines.append(f"--- {worker.name} ---\n{worker.log()[-4000:]}")
    return "\n".join(lines)


# --- the worker ------------------------------------------------------------------------------


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Worker:
    process: subprocess.Popen
    log_path: Path
    name: str

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no ack, no cleanup — a crashed machine."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


class WorkerPool:
    """Starts workers on this run's queue and test database; stops them all at the end."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.workers: list[Worker] = []

    def start(self, *, broker_url: str | None = None, env: dict | None = None) -> Worker:
        name = f"dsar-test-{uuid.uuid4().hex[:8]}"
        log_path = self.tmp_path / f"{name}.log"
        environment = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker_url or settings.CELERY_BROKER_URL,
            "CELERY_TEST_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
            "COMPLIANCE_TESTING": "1",
            "DSAR_RETRY_BASE_SECONDS": "1",
            "DSAR_RETRY_MAX_SECONDS": "2",
            "DSAR_SOURCE_TASK_MAX_ATTEMPTS": "3",
            **(env or {}),
        }
        environment.pop("TEST_DATABASE_NAME", None)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "compliance",
                    "worker",
                    "-Q",
                    settings.CELERY_TASK_DEFAULT_QUEUE,
                    "--pool",
                    "solo",
                    "-n",
                    f"{name}@%h",
                    "--loglevel",
                    "INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes it all
            )
        worker = Worker(process=process, log_path=log_path, name=name)
        self.workers.append(worker)

        def ready():
            if process.poll() is not None:
                raise AssertionError(f"the worker exited early:\n{worker.log()[-3000:]}")
            return " ready." in worker.log()

        wait_until(ready, timeout=60, what="the Celery worker to start")
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


def purge_queue(broker_url: str | None = None) -> None:
    """Leave no message of ours behind in a shared Redis."""
    from compliance.celery import app

    try:
        with app.connection_for_write(broker_url or settings.CELERY_BROKER_URL) as conn:
            conn.default_channel.queue_purge(settings.CELERY_TASK_DEFAULT_QUEUE)
    except Exception:  # noqa: S110 - best effort cleanup; the queue name is unique to this run
        pass


# --- an external PostgreSQL database ---------------------------------------------------------

EXTERNAL_TABLE = "chat_log"


def admin_dsn() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgresql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"


def external_dsn(name: str) -> str:
    return admin_dsn().rsplit("/", 1)[0] + f"/{name}"


def create_external_db(name: str) -> str:
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = external_dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {EXTERNAL_TABLE} (id bigserial PRIMARY KEY, customer_email text, "
            "body text NOT NULL, sent_at timestamptz NOT NULL, conversation text, role text)"
        )
    return dsn


def drop_external_db(name: str) -> None:
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def external_rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"SELECT id, customer_email, body FROM {EXTERNAL_TABLE} ORDER BY id"
        ).fetchall()


def external_insert(dsn: str, rows: list[tuple[str | None, str, str]]) -> None:
    """Rows of (customer email, text, conversation id)."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {EXTERNAL_TABLE} (customer_email, body, sent_at, conversation, role)"
            " VALUES (%s, %s, %s, %s, 'customer')",
            [
                (email, body, datetime(2026, 3, 1, 10, tzinfo=UTC) + timedelta(minutes=i), conv)
                for i, (email, body, conv) in enumerate(rows)
            ],
        )


def sql_source_config(dsn: str) -> dict:
    return {
        "dsn": dsn,
        "table": EXTERNAL_TABLE,
        "identity_column": "customer_email",
        "identity_type": "email",
        "text_column": "body",
        "timestamp_column": "sent_at",
        "primary_key_column": "id",
        "conversation_column": "conversation",
        "role_column": "role",
        "connect_timeout": 2,
    }


# --- JSONL -----------------------------------------------------------------------------------


def jsonl_conversation(conversation_id: str, email: str | None, texts: list[str]) -> str:
    return json.dumps(
        {
            "id": conversation_id,
            "customer": {"email": email},
            "messages": [
                {"role": "customer", "text": text, "sent_at": f"2026-04-0{1 + i % 8}T10:00:00Z"}
                for i, text in enumerate(texts)
            ],
        }
    )


def jsonl_source_config(folder: Path) -> dict:
    return {"path": str(folder), "subject_field": "customer.email", "identity_type": "email"}


# --- a data set over all three sources --------------------------------------------------------

ANA_EMAIL = "ana@example.com"
ANA_PHONE = "+14155550123"
BOB_EMAIL = "bob@example.com"


@dataclass
class Estate:
    """Ana has data in every source and is mentioned by email in Bob's chats; Bob and Carol
    have data of their own that must survive Ana's erasure untouched."""

    ana: object
    bob: object
    builtin: LogSource
    sql: LogSource
    jsonl: LogSource
    dsn: str
    folder: Path

    def sources(self) -> list[LogSource]:
        return [self.builtin, self.sql, self.jsonl]

    def counts(self, keys: SubjectKeys) -> dict[str, tuple[int, int]]:
        result = {}
        for source in self.sources():
            counts = get_connector(source).count(keys)
            result[source.name] = (counts.keyed, counts.mentions)
        return result


def build_estate(*, folder: Path, dsn: str, keyed_per_source: int = 3) -> Estate:
    from tests.factories import DisclosureFactory, SubjectFactory, SystemFactory

    ana = SubjectFactory(identities={"email": ANA_EMAIL, "phone": ANA_PHONE})
    bob = SubjectFactory(identities={"email": BOB_EMAIL})
    shop = SystemFactory(slug="shop-assistant", name="Shop assistant")
    DisclosureFactory(system=shop, version=1, text="You are chatting with an AI assistant.")
    crm = SystemFactory(slug="crm-bot", name="CRM bot")
    files = SystemFactory(slug="file-bot", name="File bot")
    builtin = LogSource.objects.create(system=shop, name="Shop store", connector="builtin")
    sql_source = LogSource.objects.create(
        system=crm, name="CRM table", connector="sql", config=sql_source_config(dsn)
    )
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = LogSource.objects.create(
        system=files, name="File logs", connector="jsonl", config=jsonl_source_config(folder)
    )

    start = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)

    def messages(texts):
        return [
            {
                "sequence": i,
                "role": "customer",
                "text": text,
                "sent_at": start + timedelta(minutes=i),
            }
            for i, text in enumerate(texts)
        ]

    conversations_ingest(
        conversations=[
            {
                "system": "shop-assistant",
                "conversation_id": "ana-1",
                "subject": {"customer_id": ana.external_id},
                "started_at": start,
                "disclosure_version": 1,
                "disclosure_shown_at": start,
                "messages": messages([f"Ana message {i}" for i in range(keyed_per_source)]),
            },
            {
                "system": "shop-assistant",
                "conversation_id": "bob-1",
                "subject": {"customer_id": bob.external_id},
                "started_at": start,
                "messages": messages(
                    [f"My friend {ANA_EMAIL.upper()} told me about you", "Bob's own words"]
                ),
            },
        ],
        actor="test",
    )
    external_insert(
        dsn,
        [(ANA_EMAIL, f"Ana row {i}", "c-ana") for i in range(keyed_per_source)]
        + [
            (BOB_EMAIL, f"Please copy {ANA_EMAIL} on this", "c-bob"),
            (BOB_EMAIL, "Bob row without mentions", "c-bob"),
        ],
    )
    (folder / "chats.jsonl").write_text(
        "\n".join(
            [
                jsonl_conversation(
                    "j-ana", ANA_EMAIL, [f"Ana line {i}" for i in range(keyed_per_source)]
                ),
                jsonl_conversation("j-bob", BOB_EMAIL, [f"write to {ANA_EMAIL} please", "ok"]),
                jsonl_conversation("j-carol", "carol@example.com", ["Carol here"]),
            ]
        )
        + "\n"
    )
    return Estate(
        ana=ana, bob=bob, builtin=builtin, sql=sql_source, jsonl=jsonl, dsn=dsn, folder=folder
    )


def bob_builtin_texts() -> list[str]:
    return list(
        Message.objects.filter(conversation__external_id="bob-1")
        .order_by("sequence")
        .values_list("text", flat=True)
    )


def run_all(dsr) -> str:
    """In process, what the workers do: every pending source, then the finalizer."""
    from dsar import services
    from dsar.models import SourceTask

    for task in SourceTask.objects.filter(request=dsr, status="pending"):
        services.source_task_execute(task_id=task.pk)
    return services.request_finalize(request_id=dsr.pk)
