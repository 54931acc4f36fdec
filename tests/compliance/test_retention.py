"""Retention policies and their enforcement (GDPR Art. 5(1)(e)) on every kind of log source:
precedence, cut-offs, dry runs, resuming, failures, the withdrawal rule, the command, the
schedule and the admin. Legal holds have their own file, test_legal_holds.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone
from psycopg import sql

from compliance.connectors import ERASED_MARKER
from compliance.models import (
    AuditEvent,
    Conversation,
    DataCategory,
    Message,
    RedactionCount,
    RetentionPolicy,
    RetentionRun,
    RetentionRunKind,
    RetentionRunSource,
    RetentionRunSourceStatus,
    RetentionRunStatus,
)
from compliance.retention import (
    effective_policy_for_source,
    policy_sources,
    retention_enforce,
    retention_on_consent_withdrawn,
    retention_period_for_source,
    retention_policy_create,
    retention_policy_update,
    retention_run_create,
    retention_run_execute,
    retention_runs_due,
    sources_without_policy,
)
from compliance.services import ConflictError, ServiceError
from tests.factories import (
    ConversationFactory,
    LogSourceFactory,
    MessageFactory,
    PurposeFactory,
    StaffUserFactory,
    SubjectFactory,
    SystemFactory,
)

ROOT = Path(__file__).resolve().parents[2]
DAY = timedelta(days=1)
enforcing = pytest.mark.django_db(transaction=True)  # runs commit batch by batch


# --- Data in the three kinds of source ---------------------------------------------------------


def conversation(system, *, ages: list[float], subject=None, texts=None) -> Conversation:
    """A conversation of the built-in store whose messages were sent ``ages`` days ago."""
    now = timezone.now()
    conv = ConversationFactory(
        system=system,
        subject=subject,
        external_id=f"conv-{uuid.uuid4().hex[:10]}",
        started_at=now - max(ages) * DAY,
    )
    for n, age in enumerate(ages):
        MessageFactory(
            conversation=conv,
            sequence=n,
            sent_at=now - age * DAY,
            text=(texts or {}).get(n, f"message {n} of {conv.external_id}"),
        )
    return conv


def policy(dpo, *, days: int = 90, **kwargs) -> RetentionPolicy:
    return retention_policy_create(
        name=kwargs.pop("name", f"policy {uuid.uuid4().hex[:8]}"),
        duration_days=days,
        approved_by=dpo,
        actor="test",
        **kwargs,
    )


def ages_left(**filters) -> list[int]:
    now = timezone.now()
    return sorted(
        round((now - sent_at) / DAY)
        for sent_at in Message.objects.filter(**filters).values_list("sent_at", flat=True)
    )


@pytest.fixture
def dpo(db):
    return StaffUserFactory()


@contextlib.contextmanager
def external_database():
    """A PostgreSQL database of its own playing another team's chat log database, with a
    table ``chat_log``; yields (dsn, autocommit connection) and drops it afterwards."""
    db = connection.settings_dict
    server = (
        f"postgresql://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST'] or '127.0.0.1'}"
        f":{db['PORT'] or 5432}"
    )
    name = f"{db['NAME']}_ext_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = f"{server}/{name}"
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(
        "CREATE TABLE chat_log (id bigserial PRIMARY KEY, customer_email text,"
        " body text NOT NULL, sent_at timestamptz NOT NULL, conversation text)"
    )
    try:
        yield dsn, conn
    finally:
        conn.close()
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(drop)


@pytest.fixture
def external_db():
    with external_database() as found:
        yield found


def sql_source(system, dsn: str):
    return LogSourceFactory(
        system=system,
        name="crm chat table",
        connector="sql",
        config={
            "dsn": dsn,
            "table": "chat_log",
            "identity_column": "customer_email",
            "identity_type": "email",
            "text_column": "body",
            "timestamp_column": "sent_at",
            "primary_key_column": "id",
            "conversation_column": "conversation",
        },
    )


def sql_rows(conn, email: str | None, ages: list[float], conversation_id: str = "c") -> None:
    now = timezone.now()
    for n, age in enumerate(ages):
        conn.execute(
            "INSERT INTO chat_log (customer_email, body, sent_at, conversation)"
            " VALUES (%s, %s, %s, %s)",
            [email, f"row {n} of {conversation_id}", now - age * DAY, conversation_id],
        )


def sql_ages(conn) -> list[int]:
    now = timezone.now()
    return sorted(
        round((now - sent_at) / DAY) for (sent_at,) in conn.execute("SELECT sent_at FROM chat_log")
    )


def jsonl_source(system, folder: Path):
    return LogSourceFactory(
        system=system,
        name="plugin exports",
        connector="jsonl",
        config={"path": str(folder), "subject_field": "customer", "identity_type": "customer_id"},
    )


def jsonl_conversation(folder: Path, file: str, customer: str, ages: list[float]) -> None:
    now = timezone.now()
    line = {
        "id": f"{customer}-{len(ages)}-{uuid.uuid4().hex[:6]}",
        "customer": customer,
        "messages": [
            {
                "role": "customer",
                "text": f"line message {n}",
                "sent_at": (now - a * DAY).isoformat(),
            }
            for n, a in enumerate(ages)
        ],
    }
    with (folder / file).open("a") as handle:
        handle.write(json.dumps(line) + "\n")


def jsonl_ages(folder: Path) -> list[int]:
    now = timezone.now()
    ages = []
    for path in sorted(folder.glob("*.jsonl")):
        for raw in path.read_text().splitlines():
            for message in json.loads(raw)["messages"]:
                sent_at = timezone.datetime.fromisoformat(message["sent_at"])
                ages.append(round((now - sent_at) / DAY))
    return sorted(ages)


def run_row(run: RetentionRun, source) -> RetentionRunSource:
    return RetentionRunSource.objects.get(run=run, source=source)


# --- Cut-offs in the three kinds of source -----------------------------------------------------


@enforcing
def test_a_policy_deletes_exactly_the_builtin_records_older_than_its_cutoff(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    customer = SubjectFactory()
    all_old = conversation(system, subject=customer, ages=[400, 200, 91])
    conversation(system, subject=customer, ages=[120, 90.02, 89.98, 1])
    conversation(system, ages=[95, 3])  # an anonymous chat is in scope as well
    elsewhere = conversation(SystemFactory(), ages=[400])  # another system: not covered
    rule = policy(dpo, days=90, source_id=source.pk)

    run = retention_enforce(actor="test", policy=rule)

    assert run.status == RetentionRunStatus.COMPLETED
    assert ages_left(conversation__system=system) == [1, 3, 90]
    assert ages_left(conversation=elsewhere) == [400]
    assert not Conversation.objects.filter(pk=all_old.pk).exists()  # emptied, so gone
    row = run_row(run, source)
    assert (row.status, row.in_scope, row.acted_on, row.held, row.failed) == ("done", 6, 6, 0, 0)
    assert (run.in_scope, run.acted_on) == (6, 6)


@enforcing
def test_a_policy_deletes_exactly_the_sql_records_older_than_its_cutoff(dpo, external_db):
    dsn, conn = external_db
    source = sql_source(SystemFactory(), dsn)
    sql_rows(conn, "ann@example.com", [400, 91, 89, 2], "c1")
    sql_rows(conn, None, [365, 30], "c2")
    rule = policy(dpo, days=90, source_id=source.pk)

    run = retention_enforce(actor="test", policy=rule, batch_size=1)

    assert sql_ages(conn) == [2, 30, 89]
    row = run_row(run, source)
    assert (row.status, row.in_scope, row.acted_on) == ("done", 3, 3)


@enforcing
def test_a_policy_deletes_exactly_the_jsonl_records_older_than_its_cutoff(dpo, tmp_path):
    source = jsonl_source(SystemFactory(), tmp_path)
    jsonl_conversation(tmp_path, "2025-01.jsonl", "C-1", [400, 399])
    jsonl_conversation(tmp_path, "2026-11.jsonl", "C-1", [100, 89, 1])
    jsonl_conversation(tmp_path, "2026-11.jsonl", "C-2", [92, 5])
    rule = policy(dpo, days=90, source_id=source.pk)

    run = retention_enforce(actor="test", policy=rule)

    assert jsonl_ages(tmp_path) == [1, 5, 89]
    row = run_row(run, source)
    assert (row.status, row.in_scope, row.acted_on, row.failed) == ("done", 4, 4, 0)


@enforcing
def test_redact_in_place_keeps_the_records_without_their_text(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    conv = conversation(system, subject=SubjectFactory(), ages=[200, 100, 10])
    rule = policy(dpo, days=30, source_id=source.pk, action="redact")

    retention_enforce(actor="test", policy=rule)

    texts = list(conv.messages.order_by("sequence").values_list("text", flat=True))
    assert texts[:2] == [ERASED_MARKER, ERASED_MARKER]
    assert texts[2] == f"message 2 of {conv.external_id}"


@enforcing
def test_detach_keeps_the_text_but_unlinks_conversations_past_the_cutoff(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    customer = SubjectFactory()
    old = conversation(system, subject=customer, ages=[200, 199])
    ongoing = conversation(system, subject=customer, ages=[200, 5])
    rule = policy(dpo, days=30, system_id=system.pk, action="detach")

    run = retention_enforce(actor="test", policy=rule)

    old.refresh_from_db()
    ongoing.refresh_from_db()
    assert old.subject_id is None
    assert old.messages.count() == 2 and not old.messages.filter(text=ERASED_MARKER).exists()
    assert ongoing.subject_id == customer.pk  # it has a message inside the period
    assert run_row(run, source).acted_on == 2


# --- Dry run -----------------------------------------------------------------------------------


@enforcing
def test_a_dry_run_counts_per_source_and_changes_nothing(dpo, external_db, tmp_path):
    dsn, conn = external_db
    system = SystemFactory()
    builtin = LogSourceFactory(system=system)
    external = sql_source(system, dsn)
    files = jsonl_source(system, tmp_path)
    conversation(system, subject=SubjectFactory(), ages=[400, 200, 10])
    sql_rows(conn, "ann@example.com", [400, 100, 1])
    jsonl_conversation(tmp_path, "a.jsonl", "C-1", [300, 2])
    rule = policy(dpo, days=90, system_id=system.pk)
    before = (
        list(Message.objects.order_by("pk").values_list("pk", "text", "conversation__subject")),
        sql_ages(conn),
        (tmp_path / "a.jsonl").read_bytes(),
    )

    dry = retention_enforce(actor="test", policy=rule, dry_run=True)

    after = (
        list(Message.objects.order_by("pk").values_list("pk", "text", "conversation__subject")),
        sql_ages(conn),
        (tmp_path / "a.jsonl").read_bytes(),
    )
    assert after == before
    assert dry.dry_run and dry.status == RetentionRunStatus.COMPLETED
    would = {row.source_id: row.acted_on for row in dry.sources.all()}
    assert would == {builtin.pk: 2, external.pk: 2, files.pk: 1}

    real = retention_enforce(actor="test", policy=rule)
    assert {row.source_id: row.acted_on for row in real.sources.all()} == would


# --- Resuming ----------------------------------------------------------------------------------


@enforcing
def test_an_interrupted_run_resumes_from_its_cursor_without_double_counting(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    conversation(system, subject=SubjectFactory(), ages=[300, 250, 200, 150, 120, 10])
    rule = policy(dpo, days=90, source_id=source.pk)
    run = retention_run_create(actor="test", policy=rule)

    # A time-boxed pass stops after one batch: the run stays open with its cursor saved.
    partial = retention_run_execute(run_id=run.pk, batch_size=2, max_batches=1)
    row = run_row(run, source)
    assert partial.status == RetentionRunStatus.RUNNING
    assert (row.status, row.acted_on) == (RetentionRunSourceStatus.PENDING, 2)
    assert row.cursor
    assert ages_left() == [10, 120, 150, 200]

    done = retention_run_execute(run_id=run.pk, batch_size=2)
    row.refresh_from_db()
    assert done.status == RetentionRunStatus.COMPLETED
    assert (row.acted_on, row.in_scope, row.attempts) == (5, 5, 2)
    assert ages_left() == [10]

    # Delivered once more (acks_late after a lost ack): nothing is redone or recounted.
    again = retention_run_execute(run_id=run.pk)
    row.refresh_from_db()
    assert (again.acted_on, row.acted_on) == (5, 5)
    assert (
        AuditEvent.objects.filter(action="retention.run_finished", target_id=str(run.pk)).count()
        == 1
    )


@enforcing
def test_a_batch_that_fails_is_rolled_back_with_its_count(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    conv = conversation(system, subject=SubjectFactory(), ages=[300, 250, 200, 150, 120, 10])
    blocked = conv.messages.get(sequence=2)  # in the second batch of two
    rule = policy(dpo, days=90, source_id=source.pk)
    with connection.cursor() as cursor:
        # Another team's table that keeps one of our messages as evidence, with a foreign
        # key checked at once: deleting that message fails mid-batch.
        cursor.execute(
            "CREATE TABLE retention_test_evidence"
            " (message_id bigint NOT NULL REFERENCES compliance_message (id))"
        )
        cursor.execute("INSERT INTO retention_test_evidence VALUES (%s)", [blocked.pk])
    try:
        failed = retention_enforce(actor="test", policy=rule, batch_size=2)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE retention_test_evidence")

    row = run_row(failed, source)
    assert failed.status == RetentionRunStatus.COMPLETED_WITH_FAILURES
    assert (row.status, row.acted_on) == (RetentionRunSourceStatus.FAILED, 2)
    assert "ForeignKeyViolation" in row.error
    # The first batch and its count committed; the second left nothing behind.
    assert ages_left() == [10, 120, 150, 200]

    again = retention_enforce(actor="test", policy=rule, batch_size=2)
    assert (again.status, run_row(again, source).acted_on) == (RetentionRunStatus.COMPLETED, 3)
    assert ages_left() == [10]


def _subprocess_env() -> dict[str, str]:
    db = connection.settings_dict
    url = (
        f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST'] or '127.0.0.1'}"
        f":{db['PORT'] or 5432}/{db['NAME']}"
    )
    env = {k: v for k, v in os.environ.items() if k != "TEST_DATABASE_NAME"}
    env.update(DATABASE_URL=url, SECRET_KEY="test-only-not-secret", ALLOWED_HOSTS="localhost")
    return env


@pytest.mark.slow
@enforcing
def test_a_run_killed_mid_batch_resumes_and_counts_every_record_exactly_once(dpo, settings):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    now = timezone.now()
    conv = ConversationFactory(system=system, subject=None, started_at=now - 400 * DAY)
    Message.objects.bulk_create(
        Message(
            conversation=conv, sequence=n, role="customer", text=f"m{n}", sent_at=now - 200 * DAY
        )
        for n in range(600)
    )
    MessageFactory(conversation=conv, sequence=600, sent_at=now - DAY)
    policy(dpo, days=90, source_id=source.pk)

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "retention_enforce", "--batch-size", "1"],
        cwd=ROOT,
        env=_subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = RetentionRunSource.objects.filter(source=source).first()
            if row is not None and row.acted_on >= 20:
                break
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)  # no chance to clean up, like a lost machine
    finally:
        worker.wait(timeout=30)

    row = RetentionRunSource.objects.get(source=source)
    deleted_so_far = 600 - Message.objects.filter(sent_at__lt=now - 90 * DAY).count()
    assert row.status == RetentionRunSourceStatus.RUNNING
    assert 20 <= row.acted_on < 600
    assert row.acted_on == deleted_so_far  # each batch and its count committed together

    settings.RETENTION_LEASE_SECONDS = 0  # the killed worker's lease has run out
    run = retention_run_execute(run_id=row.run_id)
    row.refresh_from_db()
    assert run.status == RetentionRunStatus.COMPLETED
    assert (row.acted_on, row.in_scope) == (600, 600)
    assert ages_left() == [1]


# --- Failures ----------------------------------------------------------------------------------


@enforcing
def test_a_failed_source_is_reported_and_does_not_stop_the_others(dpo, tmp_path):
    system = SystemFactory()
    builtin = LogSourceFactory(system=system)
    broken = sql_source(
        system, "postgresql://postgres:s3cret-pw@127.0.0.1:5432/no_such_database_here"
    )
    missing = jsonl_source(system, tmp_path / "not-there")
    conversation(system, ages=[200, 1])
    rule = policy(dpo, days=90, system_id=system.pk)

    run = retention_enforce(actor="test", policy=rule)

    assert run.status == RetentionRunStatus.COMPLETED_WITH_FAILURES
    assert run_row(run, builtin).status == "done" and ages_left() == [1]
    for source in (broken, missing):
        row = run_row(run, source)
        assert row.status == RetentionRunSourceStatus.FAILED
        assert row.error
        assert "s3cret-pw" not in row.error  # never the connection string's password
    event = AuditEvent.objects.get(action="retention.run_finished", target_id=str(run.pk))
    assert sorted(event.detail["failed_sources"]) == sorted([broken.pk, missing.pk])


# --- The withdrawal rule -----------------------------------------------------------------------


@enforcing
def test_the_withdrawal_rule_removes_a_customers_logs_after_they_withdraw(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    leaving, staying = SubjectFactory(), SubjectFactory()
    conversation(system, subject=leaving, ages=[5, 1])
    conversation(system, subject=leaving, ages=[0.5])
    kept = conversation(system, subject=staying, ages=[5, 1])
    policy(dpo, days=365, system_id=system.pk, on_logging_withdrawal=True)

    run = retention_on_consent_withdrawn(subject=leaving, purpose_slug="conversation-logging")
    assert run is not None and run.kind == RetentionRunKind.WITHDRAWAL
    retention_run_execute(run_id=run.pk)  # what the worker does once the consent commits

    assert not Message.objects.filter(conversation__subject=leaving).exists()
    assert kept.messages.count() == 2
    row = run_row(run, source)
    assert (row.status, row.acted_on) == ("done", 3)


@enforcing
def test_withdrawing_consent_to_logging_in_the_consent_app_plans_the_withdrawal_run(
    dpo, django_capture_on_commit_callbacks
):
    from consent.services import consent_withdraw

    system = SystemFactory()
    source = LogSourceFactory(system=system)
    leaving = SubjectFactory()
    conversation(system, subject=leaving, ages=[2, 1])
    policy(dpo, days=365, system_id=system.pk, on_logging_withdrawal=True)
    logging_purpose = PurposeFactory(slug="conversation-logging")

    with django_capture_on_commit_callbacks():
        consent_withdraw(subject=leaving, purpose=logging_purpose, source="api", actor="test")
    run = RetentionRun.objects.get(subject=leaving, kind=RetentionRunKind.WITHDRAWAL)
    retention_run_execute(run_id=run.pk)  # what the worker does once the consent commits

    assert not Message.objects.filter(conversation__subject=leaving).exists()
    assert run_row(run, source).acted_on == 2


@pytest.mark.django_db
def test_the_withdrawal_rule_ignores_other_purposes_and_sources_without_the_rule(dpo):
    system = SystemFactory()
    LogSourceFactory(system=system)
    subject = SubjectFactory()
    policy(dpo, days=365, system_id=system.pk, on_logging_withdrawal=False)
    assert (
        retention_on_consent_withdrawn(subject=subject, purpose_slug="conversation-logging") is None
    )
    policy(dpo, days=400, system_id=system.pk, on_logging_withdrawal=True)
    assert retention_on_consent_withdrawn(subject=subject, purpose_slug="marketing") is None
    assert retention_on_consent_withdrawn(subject=subject, purpose_slug="conversation-logging")


@pytest.mark.worker
@enforcing
def test_a_real_worker_carries_out_the_withdrawal_after_the_consent_commits(dpo):
    system = SystemFactory()
    LogSourceFactory(system=system)
    leaving = SubjectFactory()
    conversation(system, subject=leaving, ages=[3, 2, 1])
    policy(dpo, days=365, system_id=system.pk, on_logging_withdrawal=True)

    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "compliance",
            "worker",
            "-Q",
            settings.CELERY_TASK_DEFAULT_QUEUE,
            "-P",
            "solo",
            "-c",
            "1",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        env=_subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with transaction.atomic():  # as inside the consent app's withdrawal
            run = retention_on_consent_withdrawn(
                subject=leaving, purpose_slug="conversation-logging"
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.status == RetentionRunStatus.COMPLETED:
                break
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert run.status == RetentionRunStatus.COMPLETED
    assert not Message.objects.filter(conversation__subject=leaving).exists()


# --- Precedence ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_shortest_applicable_policy_wins_whatever_its_scope(dpo):
    chats = DataCategory.objects.create(slug="chat-content", name="Chat content")
    system = SystemFactory()
    system.data_categories.add(chats)
    source = LogSourceFactory(system=system)
    other = LogSourceFactory(system=SystemFactory())  # no such category
    by_system = policy(dpo, days=90, system_id=system.pk)
    by_category = policy(dpo, days=60, data_category_id=chats.pk)
    by_source = policy(dpo, days=30, source_id=source.pk)

    assert effective_policy_for_source(source) == by_source
    assert effective_policy_for_source(other) is None

    by_source = retention_policy_update(
        policy=by_source,
        approved_by=dpo,
        actor="test",
        name=by_source.name,
        duration_days=30,
        source_id=source.pk,
        enabled=False,
    )
    assert effective_policy_for_source(source) == by_category

    governed = {g.source.pk: g for g in policy_sources(by_system)}
    assert governed[source.pk].overridden and governed[source.pk].effective == by_category
    assert retention_period_for_source(source) == {
        "policy_id": by_category.pk,
        "policy": by_category.name,
        "days": 60,
        "action": "delete",
        "criteria": "",
    }


@pytest.mark.django_db
def test_on_equal_durations_the_narrower_scope_wins(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    policy(dpo, days=60, system_id=system.pk)
    narrow = policy(dpo, days=60, source_id=source.pk)
    assert effective_policy_for_source(source) == narrow


@pytest.mark.django_db
def test_sources_no_policy_covers_are_listed(dpo):
    covered = LogSourceFactory()
    bare = LogSourceFactory()
    LogSourceFactory(enabled=False)
    policy(dpo, days=30, source_id=covered.pk)
    assert sources_without_policy() == [bare]


@enforcing
def test_running_one_policy_touches_only_the_sources_it_governs(dpo):
    first, second = SystemFactory(), SystemFactory()
    a, b = LogSourceFactory(system=first), LogSourceFactory(system=second)
    conversation(first, ages=[100])
    conversation(second, ages=[100])
    rule = policy(dpo, days=30, system_id=first.pk)
    policy(dpo, days=30, system_id=second.pk)

    run = retention_enforce(actor="test", policy=rule)

    assert [r.source_id for r in run.sources.all()] == [a.pk]
    assert ages_left(conversation__system=second) == [100]
    assert LogSourceFactory._meta.model.objects.get(pk=b.pk)  # untouched, still there


# --- Bad input ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "days, message",
    [
        (-30, "at least 1 day"),
        (0, "at least 1 day"),
        (3651, "at most 3650 days"),
        (100_000, "at most 3650 days"),
        ("90", "whole number of days"),
        (1.5, "whole number of days"),
        (True, "whole number of days"),
    ],
)
def test_negative_or_absurd_durations_are_refused_clearly(dpo, days, message):
    source = LogSourceFactory()
    with pytest.raises(ServiceError) as info:
        policy(dpo, days=days, source_id=source.pk)
    assert info.value.field == "duration_days"
    assert message in info.value.message
    assert not RetentionPolicy.objects.exists()


@pytest.mark.django_db
def test_a_policy_for_a_source_that_does_not_exist_is_refused(dpo):
    with pytest.raises(ServiceError) as info:
        policy(dpo, days=30, source_id=987654)
    assert (info.value.field, info.value.message) == (
        "source",
        "No log source with id 987654 exists.",
    )
    with pytest.raises(ServiceError) as info:
        policy(dpo, days=30, data_category_id=987654)
    assert info.value.field == "data_category"


@pytest.mark.django_db
def test_a_policy_needs_exactly_one_scope_a_known_action_and_a_unique_name(dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system)
    with pytest.raises(ServiceError) as info:
        policy(dpo, days=30)
    assert info.value.field == "scope"
    with pytest.raises(ServiceError) as info:
        policy(dpo, days=30, source_id=source.pk, system_id=system.pk)
    assert info.value.field == "scope"
    with pytest.raises(ServiceError) as info:
        policy(dpo, days=30, source_id=source.pk, action="shred")
    assert info.value.field == "action"
    policy(dpo, days=30, source_id=source.pk, name="Chats")
    with pytest.raises(ConflictError):
        policy(dpo, days=60, system_id=system.pk, name="Chats")


@pytest.mark.django_db
def test_the_model_and_the_database_refuse_out_of_range_durations_too(dpo):
    source = LogSourceFactory()
    draft = RetentionPolicy(
        name="x", source=source, duration_days=4000, approved_by=dpo, approved_at=timezone.now()
    )
    with pytest.raises(ValidationError) as info:
        draft.full_clean()
    assert "duration_days" in info.value.message_dict
    draft.duration_days = 0
    with pytest.raises(IntegrityError), transaction.atomic():
        draft.save()
    draft.duration_days, draft.system = 30, source.system
    with pytest.raises(IntegrityError), transaction.atomic():
        draft.save()  # two scopes


@pytest.mark.django_db
def test_a_disabled_policy_cannot_be_run(dpo):
    rule = policy(dpo, days=30, source_id=LogSourceFactory().pk, enabled=False)
    with pytest.raises(ServiceError):
        retention_run_create(actor="test", policy=rule)


@pytest.mark.django_db
def test_creating_a_policy_is_audited_with_its_approver(dpo):
    rule = policy(dpo, days=30, source_id=LogSourceFactory().pk)
    event = AuditEvent.objects.get(action="retention_policy.created", target_id=str(rule.pk))
    assert event.detail["approved_by"] == dpo.pk
    assert event.detail["duration_days"] == 30
    assert (rule.approved_by, rule.approved_at is not None) == (dpo, True)


# --- The command, the schedule ------------------------------------------------------------------


@enforcing
def test_the_command_runs_a_dry_run_and_then_the_policy(dpo, capsys):
    system = SystemFactory()
    LogSourceFactory(system=system, name="store")
    conversation(system, ages=[100, 1])
    rule = policy(dpo, days=30, system_id=system.pk)

    call_command("retention_enforce", "--policy", str(rule.pk), "--dry-run")
    out = capsys.readouterr().out
    assert "(dry run)" in out and "would act on" in out
    assert ages_left() == [1, 100]

    call_command("retention_enforce")
    assert "acted on" in capsys.readouterr().out
    assert ages_left() == [1]


@pytest.mark.django_db
def test_the_command_refuses_unknown_policies_and_runs_clearly():
    with pytest.raises(CommandError, match="No retention policy with id 424242"):
        call_command("retention_enforce", "--policy", "424242")
    with pytest.raises(CommandError, match="No retention run with id 424242"):
        call_command("retention_enforce", "--resume", "424242")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("retention_enforce", "--batch-size", "0")


def test_the_daily_run_is_in_the_beat_schedule_and_its_task_exists():
    from compliance.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["retention-enforce-daily"]
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
    assert entry["schedule"].hour == {2} and entry["schedule"].minute == {30}


def test_a_bad_retention_schedule_stops_start_up_with_a_clear_message():
    from compliance.settings import _retention_crontab

    with pytest.raises(ImproperlyConfigured, match="RETENTION_SCHEDULE"):
        _retention_crontab("99 2 * * *")
    with pytest.raises(ImproperlyConfigured, match="five crontab fields"):
        _retention_crontab("daily")


@pytest.mark.django_db
def test_the_daily_schedule_resumes_an_unfinished_run_instead_of_starting_a_second(dpo):
    LogSourceFactory()
    first = retention_runs_due(actor="beat")
    assert len(first) == 1
    assert retention_runs_due(actor="beat") == first  # still unfinished: resumed, not doubled
    RetentionRun.objects.filter(pk=first[0]).update(status=RetentionRunStatus.COMPLETED)
    second = retention_runs_due(actor="beat")
    assert len(second) == 1 and second != first


# --- Admin ---------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, dpo):
    client.force_login(dpo)
    return client


@pytest.mark.django_db
def test_the_admin_shows_which_policy_applies_and_which_is_overridden(admin_client, dpo):
    system = SystemFactory()
    source = LogSourceFactory(system=system, name="store")
    long = policy(dpo, days=365, system_id=system.pk, name="Keep a year")
    short = policy(dpo, days=30, source_id=source.pk, name="Keep a month")

    page = admin_client.get(reverse("admin:compliance_retentionpolicy_change", args=[long.pk]))
    assert page.status_code == 200
    assert "overridden by" in page.content.decode()
    assert short.name in page.content.decode()

    listing = admin_client.get(reverse("admin:compliance_logsource_changelist"))
    assert "Keep a month" in listing.content.decode()


@pytest.mark.django_db
def test_the_admin_warns_about_sources_no_policy_covers(admin_client):
    LogSourceFactory(name="forgotten export")
    listing = admin_client.get(reverse("admin:compliance_logsource_changelist"))
    text = listing.content.decode()
    assert "have no retention policy" in text and "forgotten export" in text
    assert "kept without limit" in text


@pytest.mark.django_db
def test_a_dpo_adds_a_policy_in_the_admin_and_approves_it_by_saving(admin_client, dpo):
    source = LogSourceFactory()
    url = reverse("admin:compliance_retentionpolicy_add")
    form = {"name": "Chats", "source": source.pk, "duration_days": 90, "action": "delete"}
    bad = admin_client.post(url, {**form, "duration_days": 5000})
    assert bad.status_code == 200 and "from 1 to 3650" in bad.content.decode()
    two = admin_client.post(url, {**form, "system": source.system_id})
    assert two.status_code == 200 and "exactly one of" in two.content.decode()
    assert not RetentionPolicy.objects.exists()

    assert admin_client.post(url, {**form, "enabled": "on"}).status_code == 302
    saved = RetentionPolicy.objects.get()
    assert (saved.approved_by, saved.duration_days) == (dpo, 90)
    assert AuditEvent.objects.filter(action="retention_policy.created").count() == 1


@pytest.mark.django_db
def test_the_dry_run_action_plans_a_dry_run_of_the_policy(admin_client, dpo):
    source = LogSourceFactory()
    rule = policy(dpo, days=30, source_id=source.pk)
    response = admin_client.post(
        reverse("admin:compliance_retentionpolicy_changelist"),
        {"action": "dry_run_policies", "_selected_action": [rule.pk]},
        follow=True,
    )
    assert response.status_code == 200
    run = RetentionRun.objects.get()
    assert run.dry_run and run.policy == rule
    assert list(run.sources.values_list("source_id", flat=True)) == [source.pk]
    assert f"dry run {run.pk}" in response.content.decode()


@enforcing
def test_runs_are_read_only_in_the_admin(client, dpo):
    client.force_login(dpo)
    system = SystemFactory()
    LogSourceFactory(system=system)
    run = retention_enforce(actor="test", policy=policy(dpo, days=30, system_id=system.pk))
    url = reverse("admin:compliance_retentionrun_change", args=[run.pk])
    assert client.get(url).status_code == 200
    assert client.post(url, {"status": "pending"}).status_code == 403
    assert client.get(reverse("admin:compliance_retentionrun_add")).status_code == 403
    assert client.get(reverse("admin:compliance_retentionrun_changelist")).status_code == 200


@pytest.mark.django_db
def test_the_retention_pages_refuse_non_staff_users(client):
    client.force_login(StaffUserFactory(is_staff=False, is_superuser=False))
    for name in ("retentionpolicy", "legalhold", "retentionrun"):
        response = client.get(reverse(f"admin:compliance_{name}_changelist"))
        assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_run_policies(client, dpo):
    from django.contrib.auth.models import Permission

    viewer = StaffUserFactory(is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_retentionpolicy"))
    client.force_login(viewer)
    rule = policy(dpo, days=30, source_id=LogSourceFactory().pk)
    client.post(
        reverse("admin:compliance_retentionpolicy_changelist"),
        {"action": "run_policies_now", "_selected_action": [rule.pk]},
    )
    assert not RetentionRun.objects.exists()


@pytest.mark.django_db
def test_the_system_page_shows_its_redaction_counts(admin_client):
    system = SystemFactory()
    RedactionCount.objects.create(system=system, category="payment_card", count=7)
    page = admin_client.get(reverse("admin:compliance_system_change", args=[system.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Payment card numbers" in text and ">7<" in text
    listing = admin_client.get(reverse("admin:compliance_system_changelist"))
    assert ">7<" in listing.content.decode()
