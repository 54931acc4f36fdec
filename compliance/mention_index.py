"""The mention index (``MessageMention``) is filled just after ingest, not inside it.

Extracting the email addresses and phone numbers written in a message (libphonenumber,
email validation) costs more than storing the message, so ingest does not do it in the
plugin's request. In the ingest transaction it writes one ``PendingMentionScan`` naming the
messages that may hold an identifier (minimisation's shared pre-check lets most chat messages
out), and after commit a worker indexes them (``mentions_index_task``, with a sweep every
minute in case a task was lost with the broker).

Whatever reads the index first indexes what is still pending, waiting for a worker that is
indexing it right now (``mentions_index_pending(wait=True)``; the built-in connector calls it
before every find, count, erasure and purge): an access or erasure request (GDPR Art. 15,
17) or a legal hold never misses a mention because the worker had not got to it yet. A
message is always either indexed or named by a pending scan, because both are written or
deleted in one transaction with it.
"""

from __future__ import annotations

from django.db import connection, transaction

from compliance.dispatch import task_publish_on_commit
from compliance.mentions import extract_mentions
from compliance.models import Message, MessageMention, PendingMentionScan
from compliance.pg import server_binding_cursor

# Scans indexed per transaction: each names the up to ~1,000 candidate messages of one ingest
# call, so a transaction stays short and a reader waits little for a worker's.
SCANS_PER_TRANSACTION = 4


def mention_scan_queue(pairs: list[tuple[int, int]]) -> None:
    """Name ``(conversation id, sequence)`` messages for indexing, in the caller's
    transaction; a worker indexes them once it commits."""
    if not pairs:
        return
    from compliance.tasks import mentions_index_task  # the tasks module imports services

    scan = PendingMentionScan.objects.create(messages=[list(pair) for pair in pairs])
    task_publish_on_commit(mentions_index_task, [scan.pk])


def mentions_index_pending(*, scan_ids: list[int] | None = None, wait: bool) -> int:
    """Index pending scans (these, or all of them), oldest first, a few per transaction;
    return how many messages were scanned. With ``wait`` a scan another transaction is
    indexing is waited for (it is gone once that commits); without, it is skipped (a worker
    leaves it to the one already on it)."""
    scanned = 0
    after = 0
    while True:
        with transaction.atomic():
            pending = PendingMentionScan.objects.filter(pk__gt=after).order_by("pk")
            if scan_ids is not None:
                pending = pending.filter(pk__in=scan_ids)
            scans = list(pending.select_for_update(skip_locked=not wait)[:SCANS_PER_TRANSACTION])
            if not scans:
                return scanned
            after = scans[-1].pk
            pairs = {(c, s) for scan in scans for c, s in scan.messages}
            scanned += _index(pairs)
            PendingMentionScan.objects.filter(pk__in=[scan.pk for scan in scans]).delete()


def _index(pairs: set[tuple[int, int]]) -> int:
    """Extract and store the mentions of these messages (those still stored: retention or an
    erasure may have deleted some since). A message indexed before keeps its rows."""
    rows = []
    messages = _messages(sorted(pairs))
    for message_id, text in messages:
        rows.extend((message_id, kind, value) for kind, value in extract_mentions(text))
    if not rows:
        return len(messages)
    if connection.vendor == "postgresql":
        # %b: the three arrays travel in binary, a fraction of the cost of a VALUES list.
        with server_binding_cursor() as cursor:
            cursor.execute(
                "INSERT INTO compliance_messagemention (message_id, type, value)"
                " SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[])"
                " ON CONFLICT DO NOTHING",
                [list(column) for column in zip(*rows, strict=True)],
            )
    else:
        MessageMention.objects.bulk_create(
            [MessageMention(message_id=m, type=t, value=v) for m, t, v in rows],
            batch_size=500,
            ignore_conflicts=True,
        )
    return len(messages)


def _messages(pairs: list[tuple[int, int]]) -> list[tuple[int, str]]:
    if not pairs:
        return []
    if connection.vendor == "postgresql":
        with server_binding_cursor() as cursor:
            cursor.execute(
                "SELECT m.id, m.text FROM compliance_message m"
                " JOIN unnest(%b::bigint[], %b::integer[]) AS p (conversation_id, seq)"
                " ON m.conversation_id = p.conversation_id AND m.sequence = p.seq",
                [[c for c, _ in pairs], [s for _, s in pairs]],
            )
            return cursor.fetchall()
    found = []
    by_conversation: dict[int, set[int]] = {}
    for conversation_id, sequence in pairs:
        by_conversation.setdefault(conversation_id, set()).add(sequence)
    ids = list(by_conversation)
    for start in range(0, len(ids), 500):
        for pk, conversation_id, sequence, text in Message.objects.filter(
            conversation_id__in=ids[start : start + 500]
        ).values_list("pk", "conversation_id", "sequence", "text"):
            if sequence in by_conversation[conversation_id]:
                found.append((pk, text))
    return found
