"""The mention index is filled after ingest commits: by a worker, or by whatever reads it
first. Nothing that reads it may miss a mention the worker has not indexed yet."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from compliance.connectors import get_connector
from compliance.connectors.base import ErasureStrategy, PurgeStrategy, SubjectKeys
from compliance.ingest import conversations_ingest
from compliance.mention_index import mentions_index_pending
from compliance.models import Message, MessageMention, PendingMentionScan
from tests.dsar.fixtures import workers  # noqa: F401 - fixture
from tests.dsar.support import wait_until
from tests.factories import LogSourceFactory, SystemFactory

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def push(system, conversation_id, *texts, customer="C-bob", start=T0):
    conversations_ingest(
        conversations=[
            {
                "system": system.slug,
                "conversation_id": conversation_id,
                "subject": {"customer_id": customer},
                "messages": [
                    {
                        "sequence": n,
                        "role": "customer",
                        "text": text,
                        "sent_at": start + timedelta(minutes=n),
                    }
                    for n, text in enumerate(texts)
                ],
            }
        ],
        actor="test",
    )


def ana_keys() -> SubjectKeys:
    return SubjectKeys(emails=("ana@example.com",))


@pytest.fixture
def shop(db):
    return SystemFactory(slug="shop")


def test_ingest_names_only_the_messages_that_may_hold_an_identifier(shop):
    push(shop, "c-1", "hello", "write to ana@example.com", "no digits here", "call 020 7946 0958")

    scan = PendingMentionScan.objects.get()
    conversation_id = Message.objects.values_list("conversation_id", flat=True).first()
    assert sorted(map(tuple, scan.messages)) == [(conversation_id, 1), (conversation_id, 3)]
    assert not MessageMention.objects.exists()  # the worker's part

    assert mentions_index_pending(wait=True) == 2
    assert sorted(MessageMention.objects.values_list("type", "value")) == [
        ("email", "ana@example.com"),
        ("phone", "national:2079460958"),
    ]
    assert not PendingMentionScan.objects.exists()
    assert mentions_index_pending(wait=True) == 0


def test_a_resent_conversation_names_only_its_new_messages(shop):
    push(shop, "c-1", "mail ana@example.com")
    push(shop, "c-1", "mail ana@example.com", "and bob@example.com too")

    named = [sorted(map(tuple, s.messages)) for s in PendingMentionScan.objects.order_by("pk")]
    conversation_id = Message.objects.values_list("conversation_id", flat=True).first()
    assert named == [[(conversation_id, 0)], [(conversation_id, 1)]]


@pytest.mark.parametrize("method", ["find", "count", "erase"])
def test_the_connector_indexes_what_is_pending_before_it_reads(shop, method):
    source = LogSourceFactory(system=shop, connector="builtin")
    push(shop, "bob-1", "my friend ana@example.com asked too", "ok")
    assert PendingMentionScan.objects.exists()
    connector = get_connector(source)

    if method == "find":
        found = [r.text for r in connector.find(ana_keys())]
        assert found == ["my friend ana@example.com asked too"]
    elif method == "count":
        assert connector.count(ana_keys()).mentions == 1
    else:
        assert connector.erase(ana_keys(), strategy=ErasureStrategy.DELETE).mentions == 1
        assert Message.objects.filter(text__contains="ana@example.com").count() == 0
    assert not PendingMentionScan.objects.exists()


def test_retention_respects_a_hold_on_a_mention_not_indexed_yet(shop):
    source = LogSourceFactory(system=shop, connector="builtin")
    push(shop, "old-1", "ana@example.com wrote this", start=T0 - timedelta(days=800))
    push(shop, "old-2", "nothing to see", customer="C-carl", start=T0 - timedelta(days=800))

    batches = list(
        get_connector(source).purge(
            older_than=T0 - timedelta(days=365),
            strategy=PurgeStrategy.DELETE,
            exclude=[ana_keys()],
        )
    )

    assert sum(b.affected for b in batches) == 1
    assert list(Message.objects.values_list("text", flat=True)) == ["ana@example.com wrote this"]


def test_a_scan_of_messages_deleted_since_indexes_the_rest(shop):
    push(shop, "c-1", "ana@example.com", "bob@example.com")
    Message.objects.filter(sequence=0).delete()

    assert mentions_index_pending(wait=True) == 1
    assert list(MessageMention.objects.values_list("value", flat=True)) == ["bob@example.com"]


def test_minimised_values_are_never_indexed(shop):
    shop.minimise_categories = ["payment_card"]
    shop.save()
    push(shop, "c-1", "card 4111 1111 1111 1111, mail ana@example.com")

    mentions_index_pending(wait=True)

    text = Message.objects.get().text
    assert "4111" not in text
    assert list(MessageMention.objects.values_list("value", flat=True)) == ["ana@example.com"]


@pytest.mark.django_db(transaction=True)
def test_a_worker_skips_a_scan_being_indexed_and_a_reader_waits_for_it():
    shop = SystemFactory(slug="shop")
    push(shop, "c-1", "ana@example.com")
    scan = PendingMentionScan.objects.get()
    locked, release, done = threading.Event(), threading.Event(), threading.Event()
    waited: list[int] = []

    def hold_the_scan():
        try:
            with transaction.atomic():
                PendingMentionScan.objects.select_for_update().get(pk=scan.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def reader():
        try:
            waited.append(mentions_index_pending(wait=True))
        finally:
            done.set()
            connection.close()

    holder = threading.Thread(target=hold_the_scan)
    holder.start()
    assert locked.wait(timeout=30)
    # A worker leaves a scan another transaction holds to it...
    assert mentions_index_pending(wait=False) == 0
    # ...while a reader (an erasure) waits for it rather than reading a stale index.
    waiting = threading.Thread(target=reader)
    waiting.start()
    assert not done.wait(timeout=1)
    release.set()
    holder.join(timeout=30)
    waiting.join(timeout=30)
    assert waited == [1]
    assert MessageMention.objects.filter(value="ana@example.com").count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_indexes_the_mentions_after_the_ingest_commits(workers):  # noqa: F811
    workers.start()
    shop = SystemFactory(slug="shop")

    push(shop, "c-1", "reach ana@example.com", "or +44 20 7946 0958")

    wait_until(
        lambda: not PendingMentionScan.objects.exists(),
        timeout=60,
        what="the worker to index the pending scan",
    )
    assert sorted(MessageMention.objects.values_list("value", flat=True)) == [
        "+442079460958",
        "ana@example.com",
    ]
