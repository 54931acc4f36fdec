"""Idempotency-Key on the POSTs that create something."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from compliance.models import AuditChainHead, Conversation, DataSubject
from integrations.models import IdempotencyRecord
from integrations.services import idempotency_records_forget, idempotency_records_purge
from tests.factories import SystemFactory

pytestmark = pytest.mark.django_db

SUBJECTS = "/api/v1/subjects/"
CONVERSATIONS = "/api/v1/conversations/"


def subject_body(customer_id="C-7001"):
    return {"identities": {"customer_id": customer_id}, "jurisdiction": "EU"}


def post(api, url, body, key):
    return api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_retry_with_the_same_key_and_body_returns_the_first_answer_and_creates_nothing(
    make_api,
):
    api = make_api("subjects:write")
    first = post(api, SUBJECTS, subject_body(), "key-1")
    retry = post(api, SUBJECTS, subject_body(), "key-1")
    assert first.status_code == 201, first.content
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert DataSubject.objects.count() == 1


def test_without_the_key_a_second_post_is_a_new_request(make_api):
    api = make_api("subjects:write")
    assert api.post(SUBJECTS, subject_body(), format="json").status_code == 201
    second = api.post(SUBJECTS, subject_body(), format="json")
    assert second.status_code == 409  # the subject exists: nothing replayed
    assert not IdempotencyRecord.objects.exists()


def test_the_same_key_with_another_body_is_a_422_in_the_error_shape(make_api):
    api = make_api("subjects:write")
    assert post(api, SUBJECTS, subject_body("C-1"), "key-1").status_code == 201
    response = post(api, SUBJECTS, subject_body("C-2"), "key-1")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unprocessable"
    assert error["errors"] == [{"field": "Idempotency-Key", "message": error["message"]}]
    assert DataSubject.objects.count() == 1


def test_the_same_key_on_another_endpoint_is_a_422(make_api):
    api = make_api("subjects:write", "logs:write")
    assert post(api, SUBJECTS, subject_body(), "key-1").status_code == 201
    system = SystemFactory()
    conversation = {"system": system.slug, "conversation_id": "c-1", "messages": []}
    assert post(api, CONVERSATIONS, conversation, "key-1").status_code == 422
    assert not Conversation.objects.exists()


def test_key_order_and_spacing_of_the_json_body_do_not_matter(make_api):
    api = make_api("subjects:write")
    first = api.post(
        SUBJECTS,
        '{"identities": {"customer_id": "C-9"}, "jurisdiction": "EU"}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    retry = api.post(
        SUBJECTS,
        '{"jurisdiction":"EU","identities":{"customer_id":"C-9"}}',
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert first.status_code == retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"


def test_keys_belong_to_one_api_client(make_api):
    one, other = make_api("subjects:write"), make_api("subjects:write")
    assert post(one, SUBJECTS, subject_body("C-1"), "shared").status_code == 201
    # Another client's same key is its own: it runs (and creates) normally.
    assert post(other, SUBJECTS, subject_body("C-2"), "shared").status_code == 201
    assert DataSubject.objects.count() == 2


def test_an_error_answer_is_not_kept_so_the_corrected_request_can_reuse_the_key(make_api):
    api = make_api("subjects:write")
    bad = post(api, SUBJECTS, {"identities": {"email": "not-an-email"}}, "key-1")
    assert bad.status_code == 400
    assert not IdempotencyRecord.objects.exists()
    assert post(api, SUBJECTS, subject_body(), "key-1").status_code == 201


def test_a_key_refused_by_the_scope_check_is_not_recorded(make_api):
    api = make_api("subjects:read")
    assert post(api, SUBJECTS, subject_body(), "key-1").status_code == 403
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("key", ["", "has space", "ü-non-ascii", "x" * 256])
def test_a_malformed_key_is_a_400(make_api, key):
    api = make_api("subjects:write")
    response = api.post(
        SUBJECTS, subject_body(), format="json", HTTP_IDEMPOTENCY_KEY=key.encode().decode("latin-1")
    )
    assert response.status_code == 400
    assert response.json()["error"]["errors"][0]["field"] == "Idempotency-Key"
    assert not DataSubject.objects.exists()


def test_the_conversation_ingest_is_idempotent_too(make_api):
    system = SystemFactory()
    api = make_api("logs:write")
    conversation = {
        "system": system.slug,
        "conversation_id": "c-1",
        "messages": [
            {"sequence": 0, "role": "customer", "text": "hi", "sent_at": "2026-11-20T09:14:00Z"}
        ],
    }
    first = post(api, CONVERSATIONS, conversation, "ingest-1")
    retry = post(api, CONVERSATIONS, conversation, "ingest-1")
    # Without the key the re-send would answer 200 "nothing new"; with it, the first 201.
    assert first.status_code == retry.status_code == 201
    assert (
        retry.json()
        == first.json()
        == {
            "conversations_created": 1,
            "conversations_seen": 1,
            "messages_created": 1,
            "messages_skipped": 0,
        }
    )


def test_an_expired_record_no_longer_answers_and_is_purged(make_api):
    api = make_api("subjects:write")
    assert post(api, SUBJECTS, subject_body("C-1"), "key-1").status_code == 201
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    # After expiry the key is free again: another body runs normally.
    assert post(api, SUBJECTS, subject_body("C-2"), "key-1").status_code == 201
    assert DataSubject.objects.count() == 2
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert idempotency_records_purge() == 1
    assert not IdempotencyRecord.objects.exists()


def test_records_expire_after_a_day(make_api):
    api = make_api("subjects:write")
    post(api, SUBJECTS, subject_body(), "key-1")
    record = IdempotencyRecord.objects.get()
    assert (
        timedelta(hours=23, minutes=59)
        < record.expires_at - record.created_at
        <= timedelta(hours=24, seconds=1)
    )


def _waiting_on_locks(count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            # Inside a transaction PostgreSQL keeps showing the first snapshot of the
            # activity view unless it is cleared.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0] >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"expected {count} requests waiting on a lock")


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_identical_posts_create_once_and_get_the_same_answer(make_api):
    api_client = make_api("subjects:write")
    AuditChainHead.objects.get_or_create(id=1, defaults={"last_hash": "0" * 64, "length": 0})
    responses: dict[str, object] = {}

    def send(name: str) -> None:
        # One test client per thread, the same API key: two requests of one caller.
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_client.raw_key}")
        try:
            responses[name] = post(api, SUBJECTS, subject_body(), "same-key")
        finally:
            connections.close_all()

    # Hold the audit chain's lock so the first request stops inside its transaction, after
    # claiming the key; the second then has to meet it there.
    with transaction.atomic():
        AuditChainHead.objects.select_for_update().get(id=1)
        first = threading.Thread(target=send, args=("first",))
        first.start()
        _waiting_on_locks(1)
        second = threading.Thread(target=send, args=("second",))
        second.start()
        _waiting_on_locks(2)
    first.join(20)
    second.join(20)

    assert responses["first"].status_code == 201, responses["first"].content
    assert responses["second"].status_code == 201, responses["second"].content
    assert responses["second"].json() == responses["first"].json()
    assert responses["second"]["Idempotent-Replayed"] == "true"
    assert DataSubject.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


def test_erasure_can_forget_the_stored_answers_that_name_a_subject(make_api):
    api = make_api("subjects:write")
    created = post(api, SUBJECTS, subject_body("C-1"), "key-1").json()
    post(api, SUBJECTS, subject_body("C-2"), "key-2")
    assert idempotency_records_forget(subject_id=created["id"]) == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["key-2"]
