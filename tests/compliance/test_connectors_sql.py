"""The external SQL table connector, against a real table in a throwaway PostgreSQL database
of its own (``ext_<test database name>``), created for this module and dropped after it."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from compliance.admin import LogSourceForm
from compliance.connectors import (
    ERASED_MARKER,
    KEYED,
    MENTION,
    ErasureStrategy,
    PurgeStrategy,
    SourceUnavailable,
    SubjectKeys,
    get_connector,
)
from compliance.connectors.sql import SqlConnector
from compliance.models import LogSource
from compliance.services import ServiceError
from tests.factories import LogSourceFactory, SystemFactory

pytestmark = pytest.mark.django_db

SERVER = "postgresql://postgres@127.0.0.1:5432"
T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
ANA = SubjectKeys(customer_ids=("C-ana",), emails=("ana@example.com",), phones=("+442079460958",))
BOB = SubjectKeys(customer_ids=("C-bob",), emails=("bob@example.com",))


@pytest.fixture(scope="module")
def external_db():
    name = "ext_" + os.environ.get("TEST_DATABASE_NAME", "test_compliance")
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def ext(external_db):
    """A fresh chat_log table in the schema "support", the way some plugin stores it."""
    with psycopg.connect(external_db, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS support CASCADE")
        conn.execute("CREATE SCHEMA support")
        conn.execute(
            "CREATE TABLE support.chat_log ("
            " msg_id bigserial PRIMARY KEY, chat_id text, customer_email text,"
            " body text, written_at timestamptz NOT NULL, author text)"
        )
        yield conn


def insert(conn, chat, email, body, at, author="customer"):
    conn.execute(
        "INSERT INTO support.chat_log (chat_id, customer_email, body, written_at, author)"
        " VALUES (%s, %s, %s, %s, %s)",
        [chat, email, body, at, author],
    )


def rows(conn) -> list[tuple]:
    return conn.execute(
        "SELECT chat_id, customer_email, body FROM support.chat_log ORDER BY msg_id"
    ).fetchall()


CONFIG = {
    "table": "support.chat_log",
    "identity_column": "customer_email",
    "identity_type": "email",
    "text_column": "body",
    "timestamp_column": "written_at",
    "primary_key_column": "msg_id",
    "conversation_column": "chat_id",
    "role_column": "author",
}


@pytest.fixture
def source(external_db):
    return LogSourceFactory(
        system=SystemFactory(slug="crm-bot"), connector="sql", config={**CONFIG, "dsn": external_db}
    )


@pytest.fixture
def logs(ext):
    insert(ext, "a1", "Ana@Example.com ", "Hello, where is my parcel?", T0)
    insert(ext, "a1", None, "On its way.", T0 + timedelta(minutes=1), "assistant")
    insert(ext, "b1", "bob@example.com", "My wife ANA@example.com needs a copy", T0)
    insert(ext, "x1", None, "ring me: +44 20 7946 0958", T0)
    insert(ext, "b2", "bob@example.com", "and cc diana@example.com please", T0)
    return ext


def test_it_finds_keyed_rows_through_the_identity_and_the_conversation(source, logs):
    records = list(get_connector(source).find(ANA))

    keyed = [r for r in records if r.match == KEYED]
    assert [(r.conversation_id, r.role, r.text) for r in keyed] == [
        ("a1", "customer", "Hello, where is my parcel?"),
        ("a1", "assistant", "On its way."),
    ]
    assert keyed[0].sent_at == T0
    assert keyed[0].source_id == source.pk


def test_it_finds_mentions_in_other_rows_and_not_lookalike_addresses(source, logs):
    mentions = [r for r in get_connector(source).find(ANA) if r.match == MENTION]
    assert sorted((r.conversation_id, tuple(r.extra["mentioned"])) for r in mentions) == [
        ("b1", ("email",)),
        ("x1", ("phone",)),
    ]


def test_count_and_export_agree_with_find(source, logs):
    connector = get_connector(source)
    counts = connector.count(ANA)
    assert (counts.keyed, counts.mentions) == (2, 2)
    assert [len(b) for b in connector.export(ANA, batch_size=3)] == [3, 1]


def test_erase_with_delete_removes_the_subjects_rows_and_redacts_mentions_only(source, logs):
    result = get_connector(source).erase(ANA, strategy=ErasureStrategy.DELETE)

    assert (result.keyed, result.mentions) == (2, 2)
    assert rows(logs) == [
        ("b1", "bob@example.com", "My wife [redacted email] needs a copy"),
        ("x1", None, "ring me: [redacted phone]"),
        ("b2", "bob@example.com", "and cc diana@example.com please"),
    ]
    assert get_connector(source).count(ANA).total == 0
    assert get_connector(source).count(BOB).keyed == 2


def test_erase_with_redact_keeps_rows_without_text_or_identity(source, logs):
    connector = get_connector(source)
    result = connector.erase(ANA, strategy=ErasureStrategy.REDACT)

    assert result.keyed == 2
    assert rows(logs)[:2] == [("a1", None, ERASED_MARKER), ("a1", None, ERASED_MARKER)]
    assert connector.count(ANA).total == 0


@pytest.mark.parametrize("strategy", ErasureStrategy.values)
def test_erasing_twice_does_no_harm(source, logs, strategy):
    connector = get_connector(source)
    connector.erase(ANA, strategy=strategy)
    state = rows(logs)

    again = connector.erase(ANA, strategy=strategy)

    assert (again.keyed, again.mentions) == (0, 0)
    assert rows(logs) == state


def test_redacting_into_a_not_null_identity_column_says_what_to_change(source, logs):
    logs.execute("UPDATE support.chat_log SET customer_email = '' WHERE customer_email IS NULL")
    logs.execute("ALTER TABLE support.chat_log ALTER customer_email SET NOT NULL")

    with pytest.raises(SourceUnavailable) as info:
        get_connector(source).erase(ANA, strategy=ErasureStrategy.REDACT)
    assert "redact_identity_to" in info.value.reason
    assert len(rows(logs)) == 5  # rolled back

    source.config = {**source.config, "redact_identity_to": "erased"}
    assert get_connector(source).erase(ANA, strategy=ErasureStrategy.REDACT).keyed == 2
    assert rows(logs)[0] == ("a1", "erased", ERASED_MARKER)


def test_phone_identities_match_whatever_way_the_column_writes_them(external_db, ext):
    insert(ext, "p1", "+44 20 7946 0958", "first", T0)
    insert(ext, "p2", "020-7946-0958", "second", T0)
    insert(ext, "p3", "+44 20 7946 0959", "someone else", T0)
    source = LogSourceFactory(
        connector="sql",
        config={
            **CONFIG,
            "dsn": external_db,
            "identity_column": "customer_email",
            "identity_type": "phone",
            "conversation_column": None,
        },
    )
    keyed = [r.text for r in get_connector(source).find(ANA) if r.match == KEYED]
    assert keyed == ["first", "second"]


def test_an_integer_customer_id_column_and_awkward_names_are_handled(external_db, ext):
    ext.execute(
        'CREATE TABLE support."Chat ""Log""" (id int PRIMARY KEY, "Customer" int,'
        ' "Text" text, at timestamptz)'
    )
    ext.execute(
        'INSERT INTO support."Chat ""Log""" VALUES (1, 1001, %s, %s), (2, 1002, %s, %s)',
        ["mine", T0, "not mine", T0],
    )
    source = LogSourceFactory(
        connector="sql",
        config={
            "dsn": external_db,
            "table": 'support.Chat "Log"',
            "identity_column": "Customer",
            "identity_type": "customer_id",
            "text_column": "Text",
            "timestamp_column": "at",
            "primary_key_column": "id",
        },
    )
    keys = SubjectKeys(customer_ids=("1001", "1' OR '1'='1"))
    with pytest.raises(SourceUnavailable) as info:
        list(get_connector(source).find(keys))
    # The value that did not fit an integer column is never quoted back.
    assert "1' OR" not in info.value.reason and "identity_type" in info.value.reason
    assert [r.text for r in get_connector(source).find(SubjectKeys(customer_ids=("1001",)))] == [
        "mine"
    ]


# --- purge ---------------------------------------------------------------------------------


@pytest.fixture
def aged(ext):
    for n in range(5):
        insert(ext, "a-old", "ana@example.com", f"ana {n}", T0 + timedelta(days=n))
    for n in range(4):
        insert(ext, "b-old", "bob@example.com", f"bob {n}", T0 + timedelta(days=n))
    insert(ext, "anon", None, "I am ana@example.com", T0 + timedelta(hours=1))
    return ext


def bodies(conn, chat) -> list[str]:
    return [r[2] for r in rows(conn) if r[0] == chat]


def test_purge_deletes_exactly_the_rows_older_than_the_cutoff(source, aged):
    cutoff = T0 + timedelta(days=2)

    batches = list(get_connector(source).purge(older_than=cutoff, strategy="delete"))

    assert sum(b.affected for b in batches) == 5
    assert bodies(aged, "a-old") == ["ana 2", "ana 3", "ana 4"]
    assert bodies(aged, "b-old") == ["bob 2", "bob 3"]
    assert bodies(aged, "anon") == []


def test_purge_skips_held_subjects_and_rows_mentioning_them(source, aged):
    batches = list(
        get_connector(source).purge(
            older_than=T0 + timedelta(days=30), strategy="delete", exclude=[ANA]
        )
    )

    assert sum(b.affected for b in batches) == 4
    assert len(bodies(aged, "a-old")) == 5
    assert bodies(aged, "anon") == ["I am ana@example.com"]
    assert bodies(aged, "b-old") == []


def test_an_interrupted_purge_resumes_from_its_cursor(source, aged):
    connector = get_connector(source)
    cutoff = T0 + timedelta(days=30)
    run = connector.purge(older_than=cutoff, strategy=PurgeStrategy.REDACT, batch_size=4)
    first = next(run)
    run.close()
    assert first.affected == 4

    rest = list(
        connector.purge(
            older_than=cutoff,
            strategy=PurgeStrategy.REDACT,
            batch_size=4,
            resume_after=first.cursor,
        )
    )

    assert [b.affected for b in rest] == [4, 2]
    assert {r[2] for r in rows(aged)} == {ERASED_MARKER}
    assert sum(b.affected for b in connector.purge(older_than=cutoff, strategy="redact")) == 0


def test_a_dry_run_counts_and_changes_nothing(source, aged):
    before = rows(aged)
    batches = list(
        get_connector(source).purge(
            older_than=T0 + timedelta(days=2), strategy="delete", dry_run=True, batch_size=2
        )
    )
    assert sum(b.affected for b in batches) == 5
    assert rows(aged) == before


def test_purge_detach_unlinks_only_conversations_entirely_past_the_cutoff(source, aged):
    cutoff = T0 + timedelta(days=3, hours=12)

    batches = list(get_connector(source).purge(older_than=cutoff, strategy="detach"))

    assert sum(b.affected for b in batches) == 4
    assert {r[1] for r in rows(aged) if r[0] == "b-old"} == {None}
    assert {r[1] for r in rows(aged) if r[0] == "a-old"} == {"ana@example.com"}
    assert bodies(aged, "b-old") == [f"bob {n}" for n in range(4)]


# --- unreachable and misconfigured -------------------------------------------------------


def test_an_unreachable_database_is_reported_without_the_password(db):
    source = LogSourceFactory(
        connector="sql",
        config={
            **CONFIG,
            "dsn": "postgresql://bot:s3cret-pw@127.0.0.1:1/logs",
            "connect_timeout": 2,
        },
    )
    connector = get_connector(source)

    with pytest.raises(SourceUnavailable) as info:
        list(connector.find(ANA))
    assert "unreachable" in info.value.reason
    assert "s3cret-pw" not in info.value.reason
    reason = connector.health()
    assert reason is not None and "s3cret-pw" not in reason
    with pytest.raises(SourceUnavailable):
        connector.erase(ANA, strategy="delete")


def test_a_connection_the_server_dropped_is_replaced_without_failing(source, logs, external_db):
    connector = get_connector(source)
    assert connector.count(ANA).keyed == 2
    with psycopg.connect(external_db, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'privacy-compliance' AND datname = current_database()"
        ).fetchone()[0]
    assert killed == 1  # the idle connection kept for the next call

    assert connector.count(ANA).keyed == 2


def test_a_missing_table_is_named_in_the_reason(source, ext):
    source.config = {**source.config, "table": "support.nope"}
    reason = get_connector(source).health()
    assert reason is not None and "does not exist" in reason


def test_a_healthy_source_reports_no_problem(source, ext):
    assert get_connector(source).health() is None


def test_the_dsn_can_come_from_the_environment(external_db, logs, monkeypatch):
    source = LogSourceFactory(connector="sql", config={**CONFIG, "dsn_env": "CHAT_LOG_DSN"})
    with pytest.raises(SourceUnavailable) as info:
        list(get_connector(source).find(ANA))
    assert "dsn_env" in info.value.reason

    monkeypatch.setenv("CHAT_LOG_DSN", external_db)
    assert get_connector(source).count(ANA).keyed == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"identity_type": "passport"}, "config.identity_type"),
        ({"text_column": ""}, "config.text_column"),
        ({"colour": "blue"}, "config.colour"),
        ({"dsn_env": "ALSO"}, "config.dsn"),
        ({"table": "a.b.c"}, "config.table"),
        ({"timestamp_column": "msg_id"}, "config.identity_column"),
        ({"connect_timeout": 0}, "config.connect_timeout"),
    ],
)
def test_bad_config_is_refused_naming_the_field(change, field):
    config = {**CONFIG, "dsn": "postgresql://u:pw@h/db", **change}
    with pytest.raises(ServiceError) as info:
        SqlConnector.validate_config(config)
    assert info.value.field == field
    assert "pw" not in info.value.message


def test_the_admin_form_refuses_a_bad_config_and_stores_a_good_one_normalized():
    system = SystemFactory(slug="crm")
    bad = LogSourceForm(
        data={
            "system": system.pk,
            "name": "crm",
            "connector": "sql",
            "config": '{"table": "t"}',
            "enabled": "on",
        }
    )
    assert not bad.is_valid()
    assert "config" in bad.errors

    good = LogSourceForm(
        data={
            "system": system.pk,
            "name": "crm",
            "connector": "sql",
            "config": json.dumps({**CONFIG, "dsn": "postgresql://h/db"}),
            "enabled": "on",
        }
    )
    assert good.is_valid(), good.errors
    saved = good.save()
    assert saved.config["identity_normalized"] is False
    assert saved.config["erasure_strategy"] == "delete"


def test_the_admin_page_shows_the_config_error(admin_client):
    system = SystemFactory(slug="crm")
    response = admin_client.post(
        "/admin/compliance/logsource/add/",
        {
            "system": system.pk,
            "name": "crm",
            "connector": "jsonl",
            "config": json.dumps(
                {"path": "relative/dir", "subject_field": "email", "identity_type": "email"}
            ),
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert "path must be an absolute folder path" in response.content.decode()
    assert not LogSource.objects.filter(name="crm").exists()


def test_someone_who_is_not_staff_cannot_reach_the_log_source_admin(client, django_user_model):
    user = django_user_model.objects.create_user(username="visitor", password="pw-visitor-1")
    client.force_login(user)
    response = client.get("/admin/compliance/logsource/add/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
