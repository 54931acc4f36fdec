"""conversations_ingest, the service behind the ingest API, the demo seed and the bench."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compliance import ingest
from compliance.ingest import IngestError, conversations_ingest
from compliance.models import Conversation, DataSubject, Message, SubjectIdentity
from compliance.services import ConflictError, ForbiddenError, ServiceError
from tests.compliance.conftest import count_rows
from tests.factories import DisclosureFactory, SubjectFactory, SystemFactory

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def item(
    conversation_id: str = "c-1",
    *,
    system: str = "shop-assistant",
    subject: dict | None = None,
    sequences=(0, 1),
    **extra,
) -> dict:
    return {
        "system": system,
        "conversation_id": conversation_id,
        "subject": subject,
        "messages": [
            {
                "sequence": n,
                "role": "customer",
                "text": f"text {n}",
                "sent_at": START + timedelta(seconds=n),
            }
            for n in sequences
        ],
        **extra,
    }


@pytest.mark.django_db
def test_a_conflict_late_in_the_batch_undoes_the_subjects_created_before_it(system):
    SubjectFactory(external_id="C-a")
    SubjectFactory(external_id="C-b", identities={"email": "b@example.com"})
    batch = [item(f"c-{n}", subject={"customer_id": f"C-new-{n}"}) for n in range(3)]
    batch.append(item("c-3", subject={"customer_id": "C-a", "email": "b@example.com"}))
    before = count_rows()
    with pytest.raises(ConflictError) as info:
        conversations_ingest(conversations=batch, actor="test")
    assert info.value.field == "conversations[3].subject"
    assert count_rows() == before
    assert not DataSubject.objects.filter(external_id__startswith="C-new").exists()


@pytest.mark.django_db
def test_a_guard_refusing_one_item_refuses_the_batch_and_writes_nothing(system):
    def refuse_the_third(conversations, subjects, systems):
        return {2: "This customer withdrew consent to conversation logging."}

    batch = [item(f"c-{n}", subject={"customer_id": f"C-{n}"}) for n in range(4)]
    before = count_rows()
    ingest.register_ingest_guard(refuse_the_third)
    try:
        with pytest.raises(ConflictError) as info:
            conversations_ingest(conversations=batch, actor="test")
    finally:
        ingest.INGEST_GUARDS.remove(refuse_the_third)
    assert info.value.field == "conversations[2].subject"
    assert count_rows() == before


@pytest.mark.django_db
def test_a_bound_client_is_refused_for_another_system(system, other_system):
    before = count_rows()
    with pytest.raises(ForbiddenError):
        conversations_ingest(
            conversations=[item(system="shop-assistant")], actor="test", allowed_system=other_system
        )
    assert count_rows() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda i: i["messages"][0].update(sent_at=datetime(2026, 1, 1)), "messages[0].sent_at"),
        (lambda i: i["messages"][1].update(text="a\x00b"), "messages[1].text"),
        (lambda i: i["messages"][1].update(sequence=0), "messages[1].sequence"),
        (lambda i: i["messages"][0].update(role="robot"), "messages[0].role"),
        (lambda i: i["messages"][0].update(text="x" * 20_001), "messages[0].text"),
        (lambda i: i.update(subject={"phone": "12"}), "subject.phone"),
        (lambda i: i.update(disclosure_version=7), "disclosure_version"),
        (lambda i: i.update(system="ghost"), "system"),
        (lambda i: i["messages"][1].update(text="a\ud800b"), "messages[1].text"),
        (lambda i: i["messages"][1].update(sequence=2**31), "messages[1].sequence"),
        (lambda i: i["messages"][1].update(sequence=-1), "messages[1].sequence"),
        (lambda i: i["messages"][1].update(sequence="1"), "messages[1].sequence"),
        (lambda i: i.update(conversation_id="c" * 201), "conversation_id"),
        (lambda i: i.update(conversation_id="c-\udfff"), "conversation_id"),
        (lambda i: i.update(conversation_id="c-\x00"), "conversation_id"),
        (lambda i: i.update(conversation_id=""), "conversation_id"),
        (lambda i: i.update(started_at=datetime(2026, 1, 1)), "started_at"),
        (lambda i: i.update(disclosure_shown_at=datetime(2026, 1, 1)), "disclosure_shown_at"),
    ],
)
def test_the_service_itself_refuses_bad_items_naming_them(system, change, field):
    """The service is called by the seed, the bench and other apps, not only by the API:
    it must not rely on the serializer having checked everything."""
    batch = [item("c-0", subject={"customer_id": "C-0"}), item("c-1")]
    change(batch[1])
    before = count_rows()
    with pytest.raises(ServiceError) as info:
        conversations_ingest(conversations=batch, actor="test")
    assert info.value.field == f"conversations[1].{field}"
    assert count_rows() == before


@pytest.mark.django_db
def test_an_empty_or_oversized_batch_is_refused(system, settings):
    with pytest.raises(IngestError):
        conversations_ingest(conversations=[], actor="test")
    settings.INGEST_MAX_BATCH = 2
    with pytest.raises(IngestError):
        conversations_ingest(conversations=[item(f"c-{n}") for n in range(3)], actor="test")
    assert Conversation.objects.count() == 0


@pytest.mark.django_db
def test_a_later_upload_names_the_customer_and_disclosure_the_first_one_lacked(system):
    conversations_ingest(conversations=[item()], actor="test")
    conversation = Conversation.objects.get()
    assert conversation.subject is None and conversation.disclosure is None
    conversations_ingest(
        conversations=[
            item(subject={"customer_id": "C-9"}, disclosure_version=1, disclosure_shown_at=START)
        ],
        actor="test",
    )
    conversation.refresh_from_db()
    assert conversation.subject.external_id == "C-9"
    assert conversation.disclosure.version == 1
    assert conversation.disclosure_shown_at == START


@pytest.mark.django_db
def test_a_later_upload_never_moves_a_conversation_to_another_subject(system):
    conversations_ingest(conversations=[item(subject={"customer_id": "C-1"})], actor="test")
    conversations_ingest(conversations=[item(subject={"customer_id": "C-2"})], actor="test")
    assert Conversation.objects.get().subject.external_id == "C-1"


@pytest.mark.django_db
def test_one_batch_naming_a_new_subject_twice_creates_it_once(system):
    conversations_ingest(
        conversations=[
            item("c-1", subject={"email": "new@example.com"}),
            item("c-2", subject={"email": "NEW@example.com", "customer_id": "C-5"}),
            item("c-3", subject={"customer_id": "C-5"}),
        ],
        actor="test",
    )
    assert DataSubject.objects.count() == 1
    assert set(Conversation.objects.values_list("subject", flat=True)) == {
        DataSubject.objects.get().pk
    }
    assert SubjectIdentity.objects.count() == 2


# --- idempotence, as a property -------------------------------------------------------------


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    deliveries=st.lists(
        st.lists(st.integers(0, 12), max_size=8, unique=True), min_size=1, max_size=5
    )
)
def test_any_sequence_of_overlapping_deliveries_stores_each_message_once(system, deliveries):
    conversation_id = f"prop-{next(_ids)}"
    stored: set[int] = set()
    for sequences in deliveries:
        result = conversations_ingest(
            conversations=[item(conversation_id, sequences=sequences)], actor="test"
        )
        new = set(sequences) - stored
        assert result.messages_created == len(new)
        assert result.messages_skipped == len(sequences) - len(new)
        stored |= new
    rows = Message.objects.filter(conversation__external_id=conversation_id)
    assert sorted(rows.values_list("sequence", flat=True)) == sorted(stored)


_ids = iter(range(1_000_000))


# --- concurrency ---------------------------------------------------------------------------


def _run_concurrently(batches: list[list[dict]]) -> list[BaseException]:
    barrier = threading.Barrier(len(batches))
    errors: list[BaseException] = []

    def send(batch):
        try:
            barrier.wait()
            conversations_ingest(conversations=batch, actor="test")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


@pytest.fixture
def shared_system(transactional_db):
    system = SystemFactory(slug="shop-assistant")
    DisclosureFactory(system=system, version=1)
    return system


def test_concurrent_ingests_of_one_conversation_store_each_message_once(shared_system):
    for round_ in range(5):
        conversation_id = f"race-{round_}"
        batches = [
            [item(conversation_id, subject={"customer_id": f"C-race-{round_}"}, sequences=seqs)]
            for seqs in (range(0, 40), range(20, 60), range(0, 60), range(10, 50))
        ]
        errors = _run_concurrently(batches)
        assert not errors, errors
        conversation = Conversation.objects.get(external_id=conversation_id)
        sequences = list(conversation.messages.values_list("sequence", flat=True))
        assert sorted(sequences) == list(range(60))
        assert DataSubject.objects.filter(external_id=f"C-race-{round_}").count() == 1


def test_concurrent_batches_naming_one_new_customer_create_one_subject(shared_system):
    batches = [[item(f"c-{n}", subject={"email": "shared@example.com"})] for n in range(4)]
    errors = _run_concurrently(batches)
    assert not errors, errors
    assert DataSubject.objects.count() == 1
    assert Conversation.objects.filter(subject=DataSubject.objects.get()).count() == 4
    from compliance.audit import audit_verify

    assert audit_verify().intact


def test_the_bulk_conversation_insert_names_every_column_of_the_model():
    # _upsert_conversations writes rows by position: a column added to the model and not to
    # CONVERSATION_COLUMNS would silently be left to its database default.
    model_columns = {f.column for f in Conversation._meta.concrete_fields if not f.primary_key}
    assert {name for name, _ in ingest.CONVERSATION_COLUMNS} == model_columns
