"""Carrying out access and erasure across the three kinds of log source, in process: the
source tasks and the finalizer are called as the Celery tasks call them (the worker tests
run the same through a real worker)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from compliance.connectors import SubjectKeys
from compliance.models import DataSubject, LogSource
from compliance.retention.selectors import held_sources_for_subject
from dsar import services
from dsar.models import (
    DataSubjectRequest,
    ErasureCertificate,
    RequestRecord,
    RequestStatus,
    SourceTask,
    SourceTaskStatus,
)
from dsar.services.execution import _finish
from tests.dsar.support import (
    ANA_EMAIL,
    BOB_EMAIL,
    bob_builtin_texts,
    committed,
    external_rows,
    run_all,
)
from tests.factories import LegalHoldFactory, RetentionPolicyFactory

pytestmark = pytest.mark.django_db

S = RequestStatus
T = SourceTaskStatus


def file(type="access", email=ANA_EMAIL):
    with committed():
        dsr = services.request_create(
            type=type, identity={"email": email}, channel="api", actor="t", pre_verified=True
        )
        if dsr.status == S.AWAITING_APPROVAL:
            services.request_approve(request=dsr, actor="user:1")
    return dsr


def read_package(dsr: DataSubjectRequest) -> dict[str, bytes]:
    dsr.refresh_from_db()
    with zipfile.ZipFile(dsr.export_path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_an_access_request_exports_every_record_from_every_source(estate):
    dsr = file()
    assert run_all(dsr) == S.COMPLETED
    files = read_package(dsr)
    assert set(files) >= {"data.json", "report.html", "manifest.json"}
    csvs = sorted(name for name in files if name.startswith("sources/"))
    assert len(csvs) == 3

    data = json.loads(files["data.json"])
    by_source = {s["source"]["name"]: s["records"] for s in data["sources"]}
    for name in ("Shop store", "CRM table", "File logs"):
        records = by_source[name]
        assert sum(r["match"] == "keyed" for r in records) == 3, name
        assert sum(r["match"] == "mention" for r in records) == 1, name
    texts = [r["text"] for records in by_source.values() for r in records]
    assert "Bob's own words" not in texts
    assert "Carol here" not in texts
    assert {"type": "email", "value": ANA_EMAIL, "verified": False} in data["subject"]["identities"]


def test_the_manifest_holds_the_sha256_of_every_file(estate):
    dsr = file()
    run_all(dsr)
    files = read_package(dsr)
    manifest = json.loads(files["manifest.json"])
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json"}
    for name, entry in listed.items():
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"]
        assert len(files[name]) == entry["size"]
    dsr.refresh_from_db()
    assert hashlib.sha256(Path(dsr.export_path).read_bytes()).hexdigest() == dsr.export_sha256


def test_the_report_tells_a_person_what_is_held_and_their_rights(estate):
    dsr = file()
    run_all(dsr)
    report = read_package(dsr)["report.html"].decode()
    assert "Shop assistant" in report and "CRM table" in report and "File logs" in report
    assert "You are chatting with an AI assistant." in report  # EU AI Act Art. 50
    assert "supervisory authority" in report  # GDPR Art. 15(1)(f)
    assert "How long we keep it" in report
    assert "Recipients" in report


def test_the_report_states_the_retention_period_of_each_source(estate):
    # GDPR Art. 15(1)(d); the file logs' system has no policy, so no period is claimed.
    RetentionPolicyFactory(system=None, source=estate.builtin, duration_days=180, action="redact")
    dsr = file()
    run_all(dsr)
    files = read_package(dsr)
    report = files["report.html"].decode()
    assert "180 days after the message" in report
    assert "your personal data is removed from the text" in report
    sources = {s["source"]["name"]: s["source"] for s in json.loads(files["data.json"])["sources"]}
    assert sources["Shop store"]["retention"] == {
        "days": 180,
        "action": "redact",
        "policy": sources["Shop store"]["retention"]["policy"],
    }
    assert sources["File logs"]["retention"] is None


def test_each_csv_has_a_header_and_one_row_per_record(estate):
    dsr = file()
    run_all(dsr)
    files = read_package(dsr)
    for name, content in files.items():
        if name.startswith("sources/"):
            lines = content.decode().strip().splitlines()
            assert lines[0] == "record_id,conversation_id,sent_at,role,match,text,extra"
            assert len(lines) == 1 + 4, name


def test_an_erasure_removes_the_subject_everywhere_and_leaves_others_untouched(estate):
    keys = SubjectKeys.for_subject(estate.ana)
    bob_keys = SubjectKeys.for_subject(estate.bob)
    bob_before = estate.counts(bob_keys)
    assert all(keyed + mentions == 4 for keyed, mentions in estate.counts(keys).values())

    dsr = file(type="erasure")
    assert run_all(dsr) == S.COMPLETED

    assert estate.counts(keys) == {name: (0, 0) for name in estate.counts(keys)}
    assert estate.counts(bob_keys) == bob_before
    mention, own = bob_builtin_texts()
    assert ANA_EMAIL not in mention.lower() and "[redacted" in mention
    assert own == "Bob's own words"
    rows = external_rows(estate.dsn)
    assert [r[1] for r in rows] == [BOB_EMAIL, BOB_EMAIL]
    assert ANA_EMAIL not in rows[0][2] and rows[1][2] == "Bob row without mentions"
    jsonl = (estate.folder / "chats.jsonl").read_text()
    assert ANA_EMAIL not in jsonl and "j-bob" in jsonl and "Carol here" in jsonl


def test_an_erasure_is_certified_with_counts_before_and_after(estate):
    dsr = file(type="erasure")
    run_all(dsr)
    body = ErasureCertificate.objects.get(request=dsr).body
    assert body["complete"] is True
    assert body["totals"] == {"records_before": 12, "records_after": 0}
    assert {s["source"]: (s["records_before"], s["records_after"]) for s in body["sources"]} == {
        "Shop store": (4, 0),
        "CRM table": (4, 0),
        "File logs": (4, 0),
    }
    assert ANA_EMAIL not in json.dumps(body)


def test_after_an_erasure_only_a_pseudonymized_record_of_the_request_is_kept(estate):
    ana_id = estate.ana.pk
    dsr = file(type="erasure")
    run_all(dsr)
    dsr.refresh_from_db()
    assert not DataSubject.objects.filter(pk=ana_id).exists()
    assert dsr.identity_value == "" and dsr.contact_email == ""
    record = RequestRecord.objects.get(request_id=dsr.pk)
    assert record.outcome == S.COMPLETED
    assert record.subject_hash == dsr.subject_ref
    assert record.keep_until - record.responded_at == timedelta(days=730)
    assert ANA_EMAIL not in json.dumps(
        {f.name: str(getattr(record, f.name)) for f in RequestRecord._meta.fields}
    )


def test_an_erasure_deletes_earlier_export_packages_of_the_subject(estate):
    access = file()
    run_all(access)
    access.refresh_from_db()
    package = Path(access.export_path)
    assert package.exists()
    run_all(file(type="erasure"))
    assert not package.exists()
    access.refresh_from_db()
    assert access.export_deleted_at is not None


def test_a_source_under_a_legal_hold_is_not_erased_and_the_subject_is_told(estate, mailoutbox):
    LegalHoldFactory(source=estate.builtin, reason="legal_claims")
    reason = held_sources_for_subject(subject=estate.ana)[estate.builtin.pk]
    assert "17(3)(e)" in reason
    keys = SubjectKeys.for_subject(estate.ana)
    dsr = file(type="erasure")
    held = SourceTask.objects.get(request=dsr, source=estate.builtin)
    assert held.status == T.HELD
    with committed():
        assert run_all(dsr) == S.COMPLETED
    counts = estate.counts(keys)
    assert counts["Shop store"] == (3, 1)
    assert counts["CRM table"] == (0, 0) and counts["File logs"] == (0, 0)
    assert DataSubject.objects.filter(pk=estate.ana.pk).exists()
    body = ErasureCertificate.objects.get(request=dsr).body
    assert [s["held_reason"] for s in body["sources"] if s["status"] == "held"] == [reason]
    assert reason in mailoutbox[-1].body


def test_running_a_finished_source_again_changes_nothing(estate):
    dsr = file()
    task = SourceTask.objects.filter(request=dsr).first()
    assert services.source_task_execute(task_id=task.pk).ran
    task.refresh_from_db()
    snapshot = (task.status, task.attempts, task.records_found, task.finished_at)
    outcome = services.source_task_execute(task_id=task.pk)
    assert not outcome.ran
    task.refresh_from_db()
    assert (task.status, task.attempts, task.records_found, task.finished_at) == snapshot


def test_a_run_the_watchdog_gave_up_on_cannot_overwrite_the_newer_run(estate):
    dsr = file(type="erasure")
    task = SourceTask.objects.filter(request=dsr).first()
    # A worker claimed it (attempt 1) and went silent.
    SourceTask.objects.filter(pk=task.pk).update(
        status=T.RUNNING, attempts=1, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    report = services.source_tasks_watchdog(stale_after=timedelta(minutes=1))
    assert report.reset == 1
    assert services.source_task_execute(task_id=task.pk).status == T.DONE
    task.refresh_from_db()
    assert task.attempts == 2
    # The silent worker wakes up and tries to report its result for attempt 1.
    assert not _finish(task, 1, {"records_remaining": 99}).ran
    task.refresh_from_db()
    assert task.records_remaining == 0


def test_the_watchdog_gives_up_on_a_source_that_keeps_killing_its_worker(estate, settings):
    dsr = file()
    task = SourceTask.objects.filter(request=dsr).first()
    SourceTask.objects.filter(pk=task.pk).update(
        status=T.RUNNING,
        attempts=settings.DSAR_SOURCE_TASK_MAX_ATTEMPTS,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    report = services.source_tasks_watchdog(stale_after=timedelta(minutes=1))
    assert report.gave_up == 1
    task.refresh_from_db()
    assert task.status == T.FAILED
    assert "stopped responding" in task.error


def test_the_watchdog_resends_pending_work_the_broker_lost(estate):
    dsr = file()
    old = timezone.now() - timedelta(hours=1)
    SourceTask.objects.filter(request=dsr).update(dispatched_at=old)
    report = services.source_tasks_watchdog(resend_after=timedelta(minutes=5))
    assert report.resent == 3
    assert not SourceTask.objects.filter(request=dsr, dispatched_at=old).exists()
    # Sent just now: not sent again on the next sweep.
    assert services.source_tasks_watchdog(resend_after=timedelta(minutes=5)).resent == 0


def test_the_watchdog_finalizes_a_request_whose_finalize_message_was_lost(estate):
    dsr = file()
    for task in SourceTask.objects.filter(request=dsr):
        services.source_task_execute(task_id=task.pk)
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    report = services.source_tasks_watchdog(resend_after=timedelta(minutes=5))
    assert report.finalize_resent == 1


def test_a_failing_source_backs_off_then_fails_without_stopping_the_others(estate, settings):
    settings.DSAR_SOURCE_TASK_MAX_ATTEMPTS = 2
    missing = estate.folder.parent / "moved-away"
    LogSource.objects.filter(pk=estate.jsonl.pk).update(
        config={"path": str(missing), "subject_field": "customer.email", "identity_type": "email"}
    )
    dsr = file()
    broken = SourceTask.objects.get(request=dsr, source=estate.jsonl)
    first = services.source_task_execute(task_id=broken.pk)
    assert first.status == T.PENDING and first.retry_in and first.retry_in > 0
    broken.refresh_from_db()
    assert broken.not_before > timezone.now()
    assert services.source_task_execute(task_id=broken.pk).status == "backing_off"
    SourceTask.objects.filter(pk=broken.pk).update(not_before=timezone.now())
    assert services.source_task_execute(task_id=broken.pk).status == T.FAILED
    broken.refresh_from_db()
    assert "does not exist" in broken.error

    assert run_all(dsr) == S.PARTIALLY_COMPLETED
    statuses = dict(SourceTask.objects.filter(request=dsr).values_list("source_id", "status"))
    assert statuses == {estate.builtin.pk: T.DONE, estate.sql.pk: T.DONE, estate.jsonl.pk: T.FAILED}
    data = json.loads(read_package(dsr)["data.json"])
    assert [s["source"]["status"] for s in data["sources"]].count("failed") == 1

    # The DPO fixes the source and retries: only the failed one runs again.
    LogSource.objects.filter(pk=estate.jsonl.pk).update(config=estate.jsonl.config)
    dsr.refresh_from_db()
    services.request_retry_failed(request=dsr, actor="user:1")
    assert run_all(dsr) == S.COMPLETED
    broken.refresh_from_db()
    assert broken.status == T.DONE and broken.attempts == 3


def test_an_unreachable_external_database_fails_its_source_with_the_reason(estate, settings):
    settings.DSAR_SOURCE_TASK_MAX_ATTEMPTS = 1
    config = {**estate.sql.config, "dsn": "postgresql://nobody:secret@127.0.0.1:1/none"}
    LogSource.objects.filter(pk=estate.sql.pk).update(config=config)
    dsr = file()
    assert run_all(dsr) == S.PARTIALLY_COMPLETED
    task = SourceTask.objects.get(request=dsr, source=estate.sql)
    assert task.status == T.FAILED
    assert task.error
    assert "secret" not in task.error and "nobody" not in task.error


def test_broken_jsonl_lines_are_skipped_and_reported_and_the_request_completes(estate):
    with open(estate.folder / "chats.jsonl", "a") as handle:
        handle.write('{"id": "half a line", "customer": \n')
        handle.write("not json at all\n")
    dsr = file()
    assert run_all(dsr) == S.COMPLETED
    task = SourceTask.objects.get(request=dsr, source=estate.jsonl)
    assert task.summary["skipped"] == 2
    assert task.records_found == 4
    assert "2 unreadable entries" in read_package(dsr)["report.html"].decode()


def test_a_request_matching_nobody_still_finds_their_email_in_other_people_s_chats(estate):
    dsr = file(email="stranger@example.com")
    assert dsr.subject is None
    run_all(dsr)
    data = json.loads(read_package(dsr)["data.json"])
    assert sum(len(s["records"]) for s in data["sources"]) == 0

    from tests.dsar.support import external_insert

    external_insert(estate.dsn, [(BOB_EMAIL, "cc stranger@example.com", "c-9")])
    again = file(type="portability", email="stranger@example.com")
    run_all(again)
    data = json.loads(read_package(again)["data.json"])
    assert [r["match"] for s in data["sources"] for r in s["records"]] == ["mention"]


def test_expired_export_packages_are_deleted(estate):
    dsr = file()
    run_all(dsr)
    dsr.refresh_from_db()
    path = Path(dsr.export_path)
    assert services.exports_purge_expired() == 0
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(
        export_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.exports_purge_expired() == 1
    assert not path.exists()
    dsr.refresh_from_db()
    assert dsr.export_deleted_at is not None


def test_request_records_are_dropped_after_24_months(estate):
    dsr = file()
    run_all(dsr)
    assert services.request_records_purge() == 0
    RequestRecord.objects.filter(request_id=dsr.pk).update(
        keep_until=timezone.now() - timedelta(days=1)
    )
    assert services.request_records_purge() == 1
