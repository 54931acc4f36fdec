"""End to end on a real Celery worker process and the Redis broker (not eager): a subject
with data in all three kinds of source, and mentioned by email in other customers' chats, is
exported completely, then erased, then counted at zero; nobody else's data changes."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from compliance.connectors import SubjectKeys
from dsar import services
from dsar.models import DataSubjectRequest, RequestStatus
from tests.dsar.support import ANA_EMAIL, bob_builtin_texts, external_rows, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

URL = "/api/v1/requests/"


def wait_for_status(request_id, *statuses, timeout=90):
    def reached():
        return DataSubjectRequest.objects.filter(pk=request_id, status__in=statuses).first()

    return wait_until(reached, timeout=timeout, what=f"request to become {statuses}")


def test_export_then_erasure_across_all_sources_on_a_real_worker(estate, workers, make_api, client):
    workers.start()
    api = make_api("dsar:write", "dsar:read", "dsar:verified")
    keys = SubjectKeys.for_subject(estate.ana)
    bob_keys = SubjectKeys.for_subject(estate.bob)
    bob_counts = estate.counts(bob_keys)
    bob_external = [row for row in external_rows(estate.dsn) if row[1] != ANA_EMAIL]

    # Access: every record, keyed and mentioned, from every source.
    created = api.post(URL, {"type": "access", "identity": {"email": ANA_EMAIL}}, format="json")
    assert created.status_code == 202
    access_id = created.json()["id"]
    wait_for_status(access_id, RequestStatus.COMPLETED)
    detail = api.get(f"{URL}{access_id}/").json()
    assert detail["progress"] == {
        "sources_total": 3,
        "sources_done": 3,
        "sources_failed": 0,
        "records_found": 12,
    }
    response = client.get(detail["download"]["url"])
    assert response.status_code == 200
    package = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    data = json.loads(package.read("data.json"))
    per_source = {
        s["source"]["name"]: sorted(r["match"] for r in s["records"]) for s in data["sources"]
    }
    assert per_source == {
        name: ["keyed", "keyed", "keyed", "mention"]
        for name in ("Shop store", "CRM table", "File logs")
    }

    # Erasure: approved by the DPO, carried out by the worker, counted again.
    created = api.post(URL, {"type": "erasure", "identity": {"email": ANA_EMAIL}}, format="json")
    erasure = DataSubjectRequest.objects.get(pk=created.json()["id"])
    assert erasure.status == RequestStatus.AWAITING_APPROVAL
    services.request_approve(request=erasure, actor="user:1")
    wait_for_status(erasure.pk, RequestStatus.COMPLETED)

    assert estate.counts(keys) == {"Shop store": (0, 0), "CRM table": (0, 0), "File logs": (0, 0)}
    certificate = client.get(api.get(f"{URL}{erasure.pk}/").json()["certificate_url"]).json()
    assert certificate["totals"] == {"records_before": 12, "records_after": 0}

    # Nobody else's data changed, except Ana's address inside Bob's messages.
    assert estate.counts(bob_keys) == bob_counts
    assert bob_builtin_texts()[1] == "Bob's own words"
    assert ANA_EMAIL not in bob_builtin_texts()[0].lower()
    after = external_rows(estate.dsn)
    assert [r[0] for r in after] == [r[0] for r in bob_external]
    assert after[1][2] == bob_external[1][2]
    assert "Carol here" in (estate.folder / "chats.jsonl").read_text()
