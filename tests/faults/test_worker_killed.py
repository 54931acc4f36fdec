"""SIGKILL the worker in the middle of an erasure and start a new one: the request still
completes, the counts are right, and nothing is erased twice in a harmful way."""

from __future__ import annotations

from datetime import timedelta

import pytest

from compliance.connectors import SubjectKeys
from compliance.models import LogSource
from dsar import services
from dsar.models import DataSubjectRequest, ErasureCertificate, RequestStatus, SourceTask
from tests.dsar.support import (
    ANA_EMAIL,
    BOB_EMAIL,
    bob_builtin_texts,
    explain_request,
    jsonl_conversation,
    jsonl_source_config,
    wait_until,
)

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BIG_SOURCES = 4
LINES_PER_SOURCE = 12_000


def big_jsonl_sources(estate, tmp_path) -> list[LogSource]:
    """Folders large enough that erasing them takes seconds, so the kill lands mid-way."""
    sources = []
    for n in range(BIG_SOURCES):
        folder = tmp_path / f"big-{n}"
        folder.mkdir()
        with open(folder / "log.jsonl", "w") as handle:
            for i in range(LINES_PER_SOURCE):
                if i % 100 == 0:
                    handle.write(jsonl_conversation(f"a-{n}-{i}", ANA_EMAIL, ["hi", "bye"]) + "\n")
                else:
                    handle.write(
                        jsonl_conversation(f"b-{n}-{i}", BOB_EMAIL, ["bob talks", "more"]) + "\n"
                    )
        sources.append(
            LogSource.objects.create(
                system=estate.jsonl.system,
                name=f"Big log {n}",
                connector="jsonl",
                config=jsonl_source_config(folder),
            )
        )
    return sources


def test_a_worker_killed_mid_erasure_is_replaced_and_the_request_completes(
    estate, workers, tmp_path
):
    big = big_jsonl_sources(estate, tmp_path)
    keys = SubjectKeys.for_subject(estate.ana)
    before = estate.counts(keys)
    bob_keys = SubjectKeys.for_subject(estate.bob)
    bob_before = estate.counts(bob_keys)
    expected_before = sum(k + m for k, m in before.values()) + BIG_SOURCES * (
        LINES_PER_SOURCE // 100 * 2
    )

    first = workers.start()
    dsr = services.request_create(
        type="erasure",
        identity={"email": ANA_EMAIL},
        channel="api",
        actor="t",
        pre_verified=True,
    )
    services.request_approve(request=dsr, actor="user:1")

    def mid_erasure():
        tasks = SourceTask.objects.filter(request=dsr)
        return (
            tasks.filter(status="done").exists()
            and tasks.filter(status="running", records_found__isnull=False).exists()
        )

    wait_until(mid_erasure, timeout=120, what="a source to be mid-erasure", interval=0.02)
    first.kill()
    stuck = SourceTask.objects.filter(request=dsr, status="running")
    assert stuck.count() == 1, "the killed worker left its source running"
    assert DataSubjectRequest.objects.get(pk=dsr.pk).status == RequestStatus.IN_PROGRESS

    # The periodic watchdog, run now instead of waiting for beat: the dead worker's row has
    # stopped beating, so it goes back to pending and is sent again; the new worker takes it
    # with the sources the dead one never reached.
    report = services.source_tasks_watchdog(stale_after=timedelta(seconds=0))
    assert report.reset == 1
    workers.start()

    def done():
        return DataSubjectRequest.objects.filter(
            pk=dsr.pk, status__in=[RequestStatus.COMPLETED, RequestStatus.PARTIALLY_COMPLETED]
        ).first()

    finished = wait_until(
        done,
        timeout=180,
        what="the erasure to complete",
        explain=lambda: explain_request(dsr.pk, workers),
    )
    assert finished.status == RequestStatus.COMPLETED

    assert all(counts == (0, 0) for counts in estate.counts(keys).values())
    for source in big:
        text = (tmp_path / source.config["path"].rsplit("/", 1)[1] / "log.jsonl").read_text()
        assert ANA_EMAIL not in text
        assert text.count(BOB_EMAIL) == LINES_PER_SOURCE - LINES_PER_SOURCE // 100
    assert estate.counts(bob_keys) == bob_before
    assert bob_builtin_texts()[1] == "Bob's own words"

    body = ErasureCertificate.objects.get(request=dsr).body
    assert body["totals"]["records_after"] == 0
    # "Before" is the first count of each source, even for the one whose first run died.
    assert body["totals"]["records_before"] == expected_before
    retried = SourceTask.objects.get(request=dsr, attempts__gt=1)
    assert retried.status == "done"
