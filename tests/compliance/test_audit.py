"""The hash-chained audit trail: every edit or deletion shows, appends never fork."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
import threading

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from compliance.audit import GENESIS, audit_record, audit_verify
from compliance.models import AppendOnlyError, AuditChainHead, AuditEvent
from compliance.services import (
    api_client_create,
    api_key_issue,
    disclosure_publish,
    subject_create,
    subject_update,
)
from tests.factories import SystemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(db) -> list[AuditEvent]:
    """A chain written by several real services, oldest first."""
    system = SystemFactory(slug="shop-assistant")
    disclosure_publish(system=system, text="You are chatting with an AI.", actor="user:1")
    subject = subject_create(
        identities={"customer_id": "C-1", "email": "ana@example.com"}, actor="api:crm"
    )
    subject_update(subject=subject, display_name="Ana", actor="user:1")
    client = api_client_create(name="crm", scopes=["subjects:read"], actor="cli")
    api_key_issue(client=client, actor="cli")
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == 5
    return events


def run_sql(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def verify_command() -> str:
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def test_the_chain_of_several_services_verifies_intact(trail):
    report = audit_verify()
    assert report.intact
    assert report.checked == 5
    assert trail[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(trail))
    assert "intact: 5 events" in verify_command()


def test_an_empty_chain_is_intact(db):
    assert audit_verify().intact
    assert "intact: 0 events" in verify_command()


def test_services_write_no_personal_data_into_the_trail(trail):
    for event in trail:
        text = str(event.detail) + event.target_id + event.actor
        assert "ana@example.com" not in text
        assert "Ana" not in text


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("detail", '{"identity_types": ["customer_id", "email", "phone"]}'),
        ("actor", "user:2"),
        ("action", "subject.deleted"),
        ("target_id", "00000000-0000-0000-0000-000000000000"),
        ("occurred_at", "2020-01-01T00:00:00Z"),
    ],
)
def test_an_edited_event_is_reported_by_its_id(trail, column, value):
    edited = trail[2]
    run_sql(f"UPDATE compliance_auditevent SET {column} = %s WHERE id = %s", [value, edited.id])
    report = audit_verify()
    assert not report.intact
    assert report.broken_at == edited.id
    assert report.checked == 2
    with pytest.raises(CommandError) as info:
        verify_command()
    assert f"event {edited.id}" in str(info.value)
    assert info.value.returncode != 0


def test_an_edit_that_recomputes_the_events_own_hash_still_breaks_the_next_link(trail):
    from compliance.audit import event_hash

    edited = trail[2]
    edited.actor = "user:2"
    new_hash = event_hash(edited)
    run_sql(
        "UPDATE compliance_auditevent SET actor = %s, hash = %s WHERE id = %s",
        ["user:2", new_hash, edited.id],
    )
    report = audit_verify()
    assert not report.intact
    assert report.broken_at == trail[3].id


def test_a_deleted_middle_event_is_reported_at_the_event_after_it(trail):
    run_sql("DELETE FROM compliance_auditevent WHERE id = %s", [trail[2].id])
    report = audit_verify()
    assert not report.intact
    assert report.broken_at == trail[3].id
    with pytest.raises(CommandError) as info:
        verify_command()
    assert f"event {trail[3].id}" in str(info.value)


def test_a_deleted_first_event_is_reported(trail):
    run_sql("DELETE FROM compliance_auditevent WHERE id = %s", [trail[0].id])
    assert audit_verify().broken_at == trail[1].id


def test_a_deleted_last_event_is_reported(trail):
    run_sql("DELETE FROM compliance_auditevent WHERE id = %s", [trail[-1].id])
    report = audit_verify()
    assert not report.intact
    assert "newest" in report.reason
    with pytest.raises(CommandError) as info:
        verify_command()
    assert "end of the chain" in str(info.value)


def test_a_deleted_tail_with_a_rewound_head_is_still_reported(trail):
    """Deleting the newest events and moving the head back must not pass either: the head
    keeps the chain's length."""
    run_sql("DELETE FROM compliance_auditevent WHERE id = %s", [trail[-1].id])
    run_sql("UPDATE compliance_auditchainhead SET last_hash = %s", [trail[-2].hash])
    assert not audit_verify().intact


def test_a_deleted_chain_head_is_reported(trail):
    run_sql("DELETE FROM compliance_auditchainhead", [])
    assert not audit_verify().intact


def test_a_wiped_trail_is_reported(trail):
    run_sql("DELETE FROM compliance_auditevent", [])
    assert not audit_verify().intact


def test_verification_walks_past_batch_boundaries(trail):
    assert audit_verify(batch_size=2).intact
    run_sql("UPDATE compliance_auditevent SET actor = 'x' WHERE id = %s", [trail[4].id])
    assert audit_verify(batch_size=2).broken_at == trail[4].id


def test_the_model_refuses_to_change_a_stored_event(trail):
    event = trail[1]
    event.actor = "someone-else"
    with pytest.raises(AppendOnlyError):
        event.save()
    assert AuditEvent.objects.get(pk=event.pk).actor != "someone-else"


def test_the_model_refuses_to_delete_an_event(trail):
    with pytest.raises(AppendOnlyError):
        trail[1].delete()
    assert AuditEvent.objects.filter(pk=trail[1].pk).exists()


def test_an_event_rolled_back_with_its_change_leaves_the_chain_intact(trail):
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(actor="test", action="doomed")
        raise RuntimeError
    assert not AuditEvent.objects.filter(action="doomed").exists()
    assert audit_verify().intact
    audit_record(actor="test", action="after")
    assert audit_verify().intact


def test_the_verify_command_exits_non_zero_on_a_broken_chain(transactional_db):
    """The real command line, as a cron job or an auditor would run it."""
    for n in range(3):
        audit_record(actor="test", action=f"step.{n}")
    middle = AuditEvent.objects.order_by("id")[1]
    run_sql("UPDATE compliance_auditevent SET detail = '{\"x\": 1}' WHERE id = %s", [middle.id])
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "audit_verify"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"event {middle.id}" in result.stderr
    assert "Traceback" not in result.stderr


def test_concurrent_appends_never_fork_the_chain(transactional_db):
    threads_count, per_thread = 6, 15
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def append(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with transaction.atomic():
                    audit_record(actor=f"thread:{n}", action="concurrent.append", detail={"i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=append, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    report = audit_verify()
    assert report.intact, report
    assert report.checked == threads_count * per_thread
    hashes = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(hashes) == len(set(hashes)), "two events share a predecessor: the chain forked"
    assert AuditChainHead.objects.get().length == threads_count * per_thread
