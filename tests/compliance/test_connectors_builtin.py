"""The built-in store's connector: find, export, erase, count and purge through the one
interface the DSAR and retention engines use; mentions indexed at ingest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import ProtectedError
from django.db.models.signals import pre_delete

from compliance import models
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
from compliance.connectors.builtin import (
    BuiltinConnector,
    _delete_cascading,
    _delete_messages_orm,
    _delete_messages_sql,
    _id_batches_orm,
    _id_batches_sql,
)
from compliance.ingest import conversations_ingest
from compliance.mention_index import mentions_index_pending
from compliance.mentions import phone_lookup_values
from compliance.models import (
    AnswerFlag,
    AuditEvent,
    Conversation,
    Message,
    MessageMention,
    PendingMentionScan,
    System,
)
from compliance.services import ServiceError
from tests.factories import AnswerFlagFactory, LogSourceFactory, SubjectFactory, SystemFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
ANA = {"customer_id": "C-ana", "email": "ana@example.com", "phone": "+442079460958"}
BOB = {"customer_id": "C-bob", "email": "bob@example.com"}


def push(system, conversation_id, subject, *texts, start=T0, step=timedelta(minutes=1)):
    conversations_ingest(
        conversations=[
            {
                "system": system.slug,
                "conversation_id": conversation_id,
                "subject": subject,
                "messages": [
                    {
                        "sequence": n,
                        "role": "customer" if n % 2 == 0 else "assistant",
                        "text": text,
                        "sent_at": start + n * step,
                    }
                    for n, text in enumerate(texts)
                ],
            }
        ],
        actor="test",
    )
    return Conversation.objects.get(system=system, external_id=conversation_id)


@pytest.fixture
def shop(db):
    return SystemFactory(slug="shop")


@pytest.fixture
def source(shop):
    return LogSourceFactory(system=shop, connector="builtin")


@pytest.fixture
def logs(shop):
    """Ana's own chat, Bob's chat where Ana's email is quoted, an anonymous chat with her
    phone number in another spelling, and a chat that does not concern her."""
    push(shop, "ana-1", ANA, "Where is my order?", "It ships tomorrow.")
    push(
        shop,
        "bob-1",
        BOB,
        "My wife ANA@Example.COM ordered it, cc her please",
        "Sure, done.",
    )
    push(shop, "anon-1", None, "call me back on +44 (0)20 7946-0958 today", "We will.")
    push(shop, "bob-2", BOB, "Another question, reach me at bob@example.com")
    return shop


def keys_of(identities: dict) -> SubjectKeys:
    conversation = Conversation.objects.filter(
        subject__identities__value=identities["customer_id"]
    ).first()
    return SubjectKeys.for_subject(conversation.subject)


def texts(external_id: str) -> list[str]:
    return list(
        Message.objects.filter(conversation__external_id=external_id)
        .order_by("sequence")
        .values_list("text", flat=True)
    )


def test_it_finds_the_subjects_messages_and_the_mentions_of_them_elsewhere(source, logs):
    records = list(get_connector(source).find(keys_of(ANA)))

    keyed = [r for r in records if r.match == KEYED]
    mentions = [r for r in records if r.match == MENTION]
    assert [r.text for r in keyed] == ["Where is my order?", "It ships tomorrow."]
    assert {r.conversation_id for r in keyed} == {"ana-1"}
    assert sorted(r.conversation_id for r in mentions) == ["anon-1", "bob-1"]
    assert {tuple(r.extra["mentioned"]) for r in mentions} == {("email",), ("phone",)}
    first = keyed[0]
    assert first.source_id == source.pk
    assert first.sent_at == T0
    assert first.role == "customer"
    assert first.extra["system"] == "shop"
    assert first.record_id == str(
        Message.objects.get(conversation__external_id="ana-1", sequence=0).pk
    )


def test_it_finds_nothing_of_another_subject(source, logs):
    records = list(get_connector(source).find(keys_of(BOB)))
    assert {(r.conversation_id, r.match) for r in records} == {
        ("bob-1", KEYED),
        ("bob-2", KEYED),
    }


def test_it_covers_only_its_own_systems_conversations(source, logs):
    travel = SystemFactory(slug="travel")
    push(travel, "ana-travel", ANA, "Book me a train, ana@example.com")
    push(travel, "bob-travel", BOB, "ana@example.com is my colleague")

    conversations = {r.conversation_id for r in get_connector(source).find(keys_of(ANA))}
    assert conversations == {"ana-1", "bob-1", "anon-1"}
    travel_source = LogSourceFactory(system=travel, connector="builtin")
    travel_conversations = {
        r.conversation_id for r in get_connector(travel_source).find(keys_of(ANA))
    }
    assert travel_conversations == {"ana-travel", "bob-travel"}


def test_export_yields_batches_of_at_most_the_batch_size(source, shop):
    push(shop, "long", ANA, *[f"message {n}" for n in range(7)])

    batches = list(get_connector(source).export(keys_of(ANA), batch_size=3))

    assert [len(b) for b in batches] == [3, 3, 1]
    assert [r.text for b in batches for r in b] == [f"message {n}" for n in range(7)]


@pytest.mark.parametrize("keys", ["all", "email only", "phone only"])
def test_the_sql_and_orm_mention_searches_agree(source, logs, keys):
    full = keys_of(ANA)
    chosen = {
        "all": full,
        "email only": SubjectKeys(emails=full.emails),
        "phone only": SubjectKeys(phones=full.phones),
    }[keys]
    connector = get_connector(source)
    phones = sorted({v for p in chosen.phones for v in phone_lookup_values(p)})
    mentions_index_pending(wait=True)  # what the public methods do first

    by_sql = list(connector._mention_rows(chosen))
    by_orm = list(connector._mention_rows_orm(chosen, sorted(chosen.emails), phones))

    assert by_sql == by_orm
    assert by_sql and len(by_sql) == connector.count(chosen).mentions


def test_count_agrees_with_find(source, logs):
    counts = get_connector(source).count(keys_of(ANA))
    assert (counts.keyed, counts.mentions, counts.total) == (2, 2, 4)


def test_keys_hold_every_normalized_identity_and_never_show_them(logs):
    keys = keys_of(ANA)
    assert keys.customer_ids == ("C-ana",)
    assert keys.emails == ("ana@example.com",)
    assert keys.phones == ("+442079460958",)
    assert "ana@" not in repr(keys) and "C-ana" not in repr(keys)


def test_erase_with_delete_removes_the_subjects_conversations_and_redacts_mentions_only(
    source, logs
):
    keys = keys_of(ANA)
    bob_before = texts("bob-2")

    result = get_connector(source).erase(keys, strategy=ErasureStrategy.DELETE)

    assert (result.keyed, result.mentions) == (2, 2)
    assert not Conversation.objects.filter(external_id="ana-1").exists()
    assert texts("bob-1") == ["My wife [redacted email] ordered it, cc her please", "Sure, done."]
    assert texts("anon-1") == ["call me back on [redacted phone] today", "We will."]
    assert texts("bob-2") == bob_before
    assert get_connector(source).count(keys).total == 0
    assert not MessageMention.objects.filter(value__in=["ana@example.com", "+442079460958"])
    # Bob's own email stays indexed: his data is not touched.
    assert MessageMention.objects.filter(value="bob@example.com").count() == 1
    assert get_connector(source).count(keys_of(BOB)).keyed == 3


def test_erase_with_delete_takes_rows_other_apps_hang_off_messages_along(source, logs):
    answer_flag = getattr(models, "AnswerFlag", None)
    if answer_flag is None:
        pytest.skip("no model hangs rows off messages yet")
    message = Message.objects.get(conversation__external_id="ana-1", sequence=1)
    answer_flag.objects.create(
        message=message, subject=message.conversation.subject, category="wrong"
    )

    get_connector(source).erase(keys_of(ANA), strategy=ErasureStrategy.DELETE)

    assert not answer_flag.objects.filter(message_id=message.pk).exists()
    with connection.cursor() as cursor:
        # Foreign keys are checked at commit; make PostgreSQL check now that none dangles.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_a_protected_relation_falls_back_to_djangos_collector_and_refuses(shop, logs):
    with pytest.raises(ProtectedError):
        _delete_cascading(System.objects.filter(pk=shop.pk), Conversation)
    assert Conversation.objects.filter(system=shop).count() == 4


def test_erase_with_redact_keeps_the_conversation_without_text_or_subject(source, logs):
    keys = keys_of(ANA)

    result = get_connector(source).erase(keys, strategy=ErasureStrategy.REDACT)

    assert (result.keyed, result.mentions) == (2, 2)
    conversation = Conversation.objects.get(external_id="ana-1")
    assert conversation.subject_id is None
    assert texts("ana-1") == [ERASED_MARKER, ERASED_MARKER]
    assert texts("bob-1")[0] == "My wife [redacted email] ordered it, cc her please"
    assert get_connector(source).count(keys).total == 0


def test_redacting_a_mention_keeps_the_other_identifiers_in_the_message_indexed(source, shop):
    push(shop, "ana-0", ANA, "hello")
    push(shop, "bob-9", BOB, "ana@example.com and carol@example.com both asked")

    get_connector(source).erase(keys_of(ANA), strategy=ErasureStrategy.DELETE)

    assert texts("bob-9") == ["[redacted email] and carol@example.com both asked"]
    assert sorted(
        MessageMention.objects.filter(message__conversation__external_id="bob-9").values_list(
            "value", flat=True
        )
    ) == ["carol@example.com"]


@pytest.mark.parametrize("strategy", ErasureStrategy.values)
def test_erasing_twice_does_no_harm(source, logs, strategy):
    keys = keys_of(ANA)
    connector = get_connector(source)
    connector.erase(keys, strategy=strategy)
    state = sorted(Message.objects.values_list("pk", "text"))

    again = connector.erase(keys, strategy=strategy)

    assert (again.keyed, again.mentions) == (0, 0)
    assert sorted(Message.objects.values_list("pk", "text")) == state


def test_an_unknown_strategy_is_refused(source, logs):
    with pytest.raises(ServiceError) as info:
        get_connector(source).erase(keys_of(ANA), strategy="shred")
    assert info.value.field == "strategy"
    assert Message.objects.filter(conversation__external_id="ana-1").count() == 2


def test_keys_without_identities_find_and_erase_nothing(source, logs):
    connector = get_connector(source)
    assert list(connector.find(SubjectKeys())) == []
    assert connector.erase(SubjectKeys(), strategy=ErasureStrategy.DELETE).keyed == 0
    assert Message.objects.count() == 7


def test_ingest_indexes_mentions_once_even_when_a_conversation_is_sent_again(shop):
    push(shop, "c-1", BOB, "I am ana@example.com, or call 020 7946 0958")
    push(shop, "c-1", BOB, "I am ana@example.com, or call 020 7946 0958", "a new one")
    mentions_index_pending(wait=True)

    values = sorted(MessageMention.objects.values_list("type", "value"))
    assert values == [("email", "ana@example.com"), ("phone", "national:2079460958")]


def test_the_mention_lookup_uses_the_index_and_never_scans_messages(source, logs):
    # Enough rows, analysed, for the planner to choose as it would in production.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO compliance_conversation (system_id, external_id, started_at, created_at)"
            " SELECT %s, 'filler-' || n, %s, %s FROM generate_series(1, 500) AS n",
            [logs.pk, T0, T0],
        )
        cursor.execute(
            "INSERT INTO compliance_message (conversation_id, sequence, role, text, sent_at)"
            " SELECT c.id, n, 'customer', 'filler text ' || n, %s"
            " FROM compliance_conversation c, generate_series(1, 40) AS n"
            " WHERE c.external_id LIKE 'filler-%%'",
            [T0],
        )
        cursor.execute(
            "INSERT INTO compliance_messagemention (message_id, type, value)"
            " SELECT id, 'email', 'someone' || id || '@example.com' FROM compliance_message"
            " WHERE text LIKE 'filler%%'"
        )
        cursor.execute("ANALYZE compliance_conversation, compliance_message")
        cursor.execute("ANALYZE compliance_messagemention")
        queryset = get_connector(source)._mention_messages(keys_of(ANA))
        sql, params = queryset.order_by("pk").query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "mention_type_value_idx" in plan, plan
    assert "Seq Scan on compliance_message " not in plan, plan
    assert get_connector(source).count(keys_of(ANA)).mentions == 2


def test_backfill_indexes_messages_stored_before_the_index(source, logs):
    mentions_index_pending(wait=True)
    MessageMention.objects.all().delete()
    assert get_connector(source).count(keys_of(ANA)).mentions == 0

    call_command("backfill_mentions", batch_size=2, stdout=_Null())

    assert get_connector(source).count(keys_of(ANA)).mentions == 2
    event = AuditEvent.objects.filter(action="mentions.backfilled").get()
    assert event.detail["messages"] == 7
    assert "ana@example.com" not in str(event.detail)


class _Null:
    def write(self, *_args, **_kwargs):
        pass

    def flush(self):
        pass


def test_a_misconfigured_source_is_reported_as_unavailable(shop):
    source = LogSourceFactory(system=shop, connector="builtin", config={"table": "x"})
    with pytest.raises(SourceUnavailable) as info:
        get_connector(source)
    assert "table" in info.value.reason


def test_an_unknown_connector_is_reported_as_unavailable(shop):
    source = LogSourceFactory(system=shop, connector="ftp")
    with pytest.raises(SourceUnavailable):
        get_connector(source)


def test_the_erasure_strategy_setting_is_accepted_and_checked():
    assert BuiltinConnector.validate_config({"erasure_strategy": "redact"}) == {
        "erasure_strategy": "redact"
    }
    with pytest.raises(ServiceError) as info:
        BuiltinConnector.validate_config({"erasure_strategy": "burn"})
    assert info.value.field == "config.erasure_strategy"


# --- purge (retention) ---------------------------------------------------------------------


@pytest.fixture
def aged(shop):
    """Five messages a day apart for Ana, four for Bob, one for an anonymous chat."""
    push(shop, "ana-old", ANA, *[f"ana {n}" for n in range(5)], step=timedelta(days=1))
    push(shop, "bob-old", BOB, *[f"bob {n}" for n in range(4)], step=timedelta(days=1))
    push(shop, "anon", None, "I am ana@example.com", start=T0 + timedelta(hours=1))
    return shop


def test_purge_deletes_exactly_the_messages_older_than_the_cutoff(source, aged):
    cutoff = T0 + timedelta(days=2)  # ana 0-1 and bob 0-1 and anon are older; ana 2 is not

    batches = list(get_connector(source).purge(older_than=cutoff, strategy=PurgeStrategy.DELETE))

    assert sum(b.affected for b in batches) == 5
    assert texts("ana-old") == ["ana 2", "ana 3", "ana 4"]
    assert texts("bob-old") == ["bob 2", "bob 3"]
    assert not Conversation.objects.filter(external_id="anon").exists()
    assert Message.objects.filter(sent_at=cutoff).count() == 2


def test_purge_leaves_other_systems_alone(source, aged):
    travel = SystemFactory(slug="travel")
    push(travel, "travel-old", ANA, "old but not ours")

    list(get_connector(source).purge(older_than=T0 + timedelta(days=30), strategy="delete"))

    assert texts("travel-old") == ["old but not ours"]


def test_purge_skips_subjects_under_legal_hold_and_the_mentions_of_them(source, aged):
    held = keys_of(ANA)

    list(
        get_connector(source).purge(
            older_than=T0 + timedelta(days=30), strategy=PurgeStrategy.DELETE, exclude=[held]
        )
    )

    assert len(texts("ana-old")) == 5
    assert texts("anon") == ["I am ana@example.com"]
    assert texts("bob-old") == []


def test_an_interrupted_purge_resumes_from_its_cursor_without_redoing_or_missing(source, aged):
    connector = get_connector(source)
    cutoff = T0 + timedelta(days=30)
    run = connector.purge(older_than=cutoff, strategy=PurgeStrategy.REDACT, batch_size=3)
    first = next(run)
    run.close()  # the worker died after the first batch committed
    assert first.affected == 3
    assert Message.objects.filter(text=ERASED_MARKER).count() == 3

    rest = list(
        connector.purge(
            older_than=cutoff,
            strategy=PurgeStrategy.REDACT,
            batch_size=3,
            resume_after=first.cursor,
        )
    )

    assert sum(b.affected for b in rest) == 7
    assert Message.objects.exclude(text=ERASED_MARKER).count() == 0
    again = list(connector.purge(older_than=cutoff, strategy=PurgeStrategy.REDACT))
    assert sum(b.affected for b in again) == 0
    assert not MessageMention.objects.exists()


def test_a_dry_run_counts_and_changes_nothing(source, aged):
    before = sorted(Message.objects.values_list("pk", "text"))

    batches = list(
        get_connector(source).purge(
            older_than=T0 + timedelta(days=2), strategy="delete", dry_run=True, batch_size=2
        )
    )

    assert sum(b.affected for b in batches) == 5
    assert all(b.dry_run for b in batches)
    assert sorted(Message.objects.values_list("pk", "text")) == before


def test_purge_detach_unlinks_only_conversations_entirely_past_the_cutoff(source, aged):
    cutoff = T0 + timedelta(days=3, hours=12)  # bob's chat is all older; ana's is not

    batches = list(get_connector(source).purge(older_than=cutoff, strategy="detach"))

    assert sum(b.affected for b in batches) == 4
    assert Conversation.objects.get(external_id="bob-old").subject_id is None
    assert Conversation.objects.get(external_id="ana-old").subject_id is not None
    assert texts("bob-old") == [f"bob {n}" for n in range(4)]


def test_purge_refuses_a_naive_cutoff_and_a_foreign_cursor(source, aged):
    connector = get_connector(source)
    with pytest.raises(ServiceError):
        list(connector.purge(older_than=datetime(2026, 1, 1), strategy="delete"))
    with pytest.raises(ServiceError):
        list(connector.purge(older_than=T0, strategy="delete", resume_after="file.jsonl"))
    assert Message.objects.count() == 10


@pytest.mark.parametrize("held", [False, True], ids=["no hold", "ana held"])
@pytest.mark.parametrize("strategy", [PurgeStrategy.DELETE, PurgeStrategy.REDACT])
def test_the_sql_and_orm_purges_pick_the_same_batches(source, aged, held, strategy):
    mentions_index_pending(wait=True)  # what purge does first
    Message.objects.filter(conversation__external_id="bob-old", sequence=0).update(
        text=ERASED_MARKER  # redacted by an earlier run: no more work for a redact purge
    )
    connector = get_connector(source)
    candidates = connector._purge_candidates(
        older_than=T0 + timedelta(days=3),
        strategy=strategy,
        exclude=[keys_of(ANA)] if held else [],
    )

    by_sql = list(_id_batches_sql(candidates, after=0, batch_size=2))
    by_orm = list(_id_batches_orm(candidates, after=0, batch_size=2))

    assert by_sql == by_orm
    picked = Message.objects.filter(pk__in=[pk for batch in by_sql for pk in batch])
    expected = {("bob-old", 1), ("bob-old", 2)}
    if strategy == PurgeStrategy.DELETE:
        expected.add(("bob-old", 0))
    if not held:  # Ana's own messages, and the anonymous one that quotes her email
        expected |= {("ana-old", 0), ("ana-old", 1), ("ana-old", 2), ("anon", 0)}
    assert set(picked.values_list("conversation__external_id", "sequence")) == expected
    resumed = by_sql[0][-1]  # a run interrupted after its first batch goes on from here
    assert list(_id_batches_sql(candidates, after=resumed, batch_size=2)) == by_sql[1:]
    assert list(_id_batches_orm(candidates, after=resumed, batch_size=2)) == by_sql[1:]


def test_the_sql_and_orm_deletes_leave_exactly_the_same_rows(source, aged):
    # Carol's chat quotes her email in the old message and goes on after the cut-off.
    push(aged, "carol-old", None, "mail carol@example.com", "done", step=timedelta(days=5))
    mentions_index_pending(wait=True)
    cutoff = T0 + timedelta(days=3)
    ana = {m.sequence: m for m in Message.objects.filter(conversation__external_id="ana-old")}
    AnswerFlagFactory(message=ana[1])  # on a message past the cut-off: it goes with it
    kept_flag = AnswerFlagFactory(message=ana[4])
    ids = sorted(Message.objects.filter(sent_at__lt=cutoff).values_list("pk", flat=True))

    def rows_left_by(delete) -> tuple:
        with transaction.atomic():
            deleted = delete(ids)
            with connection.cursor() as cursor:
                # Foreign keys are checked at commit; make PostgreSQL check now that none
                # dangles, then put the session back as it was.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            left = (
                deleted,
                sorted(Message.objects.values_list("conversation__external_id", "sequence")),
                sorted(MessageMention.objects.values_list("message_id", "value")),
                sorted(AnswerFlag.objects.values_list("pk", flat=True)),
                sorted(Conversation.objects.values_list("external_id", flat=True)),
            )
            transaction.set_rollback(True)
        return left

    by_sql = rows_left_by(_delete_messages_sql)
    by_orm = rows_left_by(_delete_messages_orm)

    assert by_sql == by_orm
    deleted, messages, mentions, flags, conversations = by_sql
    assert deleted == len(ids) == 8
    assert messages == [
        ("ana-old", 3),
        ("ana-old", 4),
        ("bob-old", 3),
        ("carol-old", 1),
    ]
    assert mentions == []  # both quoted emails were in purged messages
    assert flags == [kept_flag.pk]
    assert conversations == ["ana-old", "bob-old", "carol-old"]  # the anonymous one emptied


def test_purge_indexes_pending_mentions_before_its_first_batch(source, aged):
    assert PendingMentionScan.objects.exists()  # ingest left the index to a worker

    batches = get_connector(source).purge(
        older_than=T0 + timedelta(days=30), strategy=PurgeStrategy.DELETE, exclude=[keys_of(ANA)]
    )

    # Done on the call, not inside the first batch's transaction, which must stay short.
    assert not PendingMentionScan.objects.exists()
    assert sum(b.affected for b in batches) == 4  # Bob's; the chat quoting Ana's email stays
    assert texts("anon") == ["I am ana@example.com"]


def test_a_delete_receiver_on_messages_sends_the_purge_through_djangos_collector(source, aged):
    deleted_one_by_one = []

    def receiver(sender, instance, **kwargs):
        deleted_one_by_one.append(instance.pk)

    pre_delete.connect(receiver, sender=Message, weak=False, dispatch_uid="test-purge-receiver")
    try:
        batches = list(
            get_connector(source).purge(
                older_than=T0 + timedelta(days=2), strategy=PurgeStrategy.DELETE, batch_size=2
            )
        )
    finally:
        pre_delete.disconnect(sender=Message, dispatch_uid="test-purge-receiver")

    assert sum(b.affected for b in batches) == len(deleted_one_by_one) == 5
    assert texts("ana-old") == ["ana 2", "ana 3", "ana 4"]
    assert not Conversation.objects.filter(external_id="anon").exists()


def test_subject_keys_include_the_external_id():
    subject = SubjectFactory(external_id="C-9", identities={"email": "x@example.com"})
    keys = SubjectKeys.for_subject(subject)
    assert keys.customer_ids == ("C-9",)
    assert keys.subject_id == subject.pk
