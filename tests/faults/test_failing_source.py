"""A source that keeps failing: the request is partially completed, the other sources are
done, and the failed one can be retried once it is fixed. On a real worker."""

from __future__ import annotations

import pytest

from compliance.models import LogSource
from dsar import services
from dsar.models import DataSubjectRequest, RequestStatus, SourceTask
from tests.dsar.support import ANA_EMAIL, explain_request, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(dsr, status, workers):
    return wait_until(
        lambda: DataSubjectRequest.objects.filter(pk=dsr.pk, status=status).first(),
        timeout=90,
        what=f"the request to become {status}",
        explain=lambda: explain_request(dsr.pk, workers),
    )


def test_a_source_that_keeps_failing_leaves_the_request_partially_completed_and_retryable(
    estate, workers, tmp_path
):
    good_config = estate.jsonl.config
    LogSource.objects.filter(pk=estate.jsonl.pk).update(
        config={**good_config, "path": str(tmp_path / "unmounted")}
    )
    workers.start()
    dsr = services.request_create(
        type="access", identity={"email": ANA_EMAIL}, channel="api", actor="t", pre_verified=True
    )
    wait_for(dsr, RequestStatus.PARTIALLY_COMPLETED, workers)

    tasks = {t.source_id: t for t in SourceTask.objects.filter(request=dsr)}
    assert tasks[estate.builtin.pk].status == "done"
    assert tasks[estate.sql.pk].status == "done"
    failed = tasks[estate.jsonl.pk]
    assert failed.status == "failed"
    assert failed.attempts == 3  # DSAR_SOURCE_TASK_MAX_ATTEMPTS in the worker
    assert "does not exist" in failed.error
    dsr.refresh_from_db()
    assert dsr.export_path  # what could be found is delivered already
    assert "File logs" in dsr.outcome_note

    LogSource.objects.filter(pk=estate.jsonl.pk).update(config=good_config)
    services.request_retry_failed(request=dsr, actor="user:1")
    wait_for(dsr, RequestStatus.COMPLETED, workers)
    failed.refresh_from_db()
    assert failed.status == "done" and failed.records_found == 4
    for source_id in (estate.builtin.pk, estate.sql.pk):
        again = SourceTask.objects.get(request=dsr, source_id=source_id)
        assert again.attempts == 1, "sources already done are not run again"
