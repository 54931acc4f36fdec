"""The hash-chained audit trail.

Each event's hash covers its own fields and the previous event's hash. Appends lock the
single ``AuditChainHead`` row, so concurrent transactions append one after another and the
chain never forks; the lock is held until the surrounding transaction commits.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from datetime import datetime

from django.db import models, transaction
from django.utils import timezone

from compliance.models import AuditChainHead, AuditEvent

GENESIS = "0" * 64


def _canonical(
    *,
    occurred_at: datetime,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    detail: dict,
    prev_hash: str,
) -> bytes:
    payload = {
        "occurred_at": occurred_at.isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(
        _canonical(
            occurred_at=event.occurred_at,
            actor=event.actor,
            action=event.action,
            target_type=event.target_type,
            target_id=event.target_id,
            detail=event.detail,
            prev_hash=event.prev_hash,
        )
    ).hexdigest()


def _target_parts(target: models.Model | None, target_type: str, target_id: str):
    if target is not None:
        return target._meta.label_lower, str(target.pk)
    return target_type, target_id


def audit_record(
    *,
    actor: str,
    action: str,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    detail: dict | None = None,
) -> AuditEvent:
    """Append one event. Call it inside the transaction that makes the change it records,
    so the change and its evidence commit or roll back together."""
    target_type, target_id = _target_parts(target, target_type, target_id)
    # Round-trip through JSON so the hash is computed over exactly what is stored.
    detail = json.loads(json.dumps(detail or {}, default=str))
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(
            id=1, defaults={"last_hash": GENESIS, "length": 0}
        )
        event = AuditEvent(
            occurred_at=timezone.now(),
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            detail=detail,
            prev_hash=head.last_hash,
        )
        event.hash = event_hash(event)
        event.save()
        AuditChainHead.objects.filter(id=1).update(
            last_hash=event.hash, length=models.F("length") + 1
        )
    return event


def audit_record_many(
    *, actor: str, action: str, entries: list[tuple[str, str, dict]]
) -> list[AuditEvent]:
    """Append one event per (target type, target id, detail), chained in list order, with
    one lock of the chain head, one INSERT and one UPDATE: for bulk actions (ingest creating
    a thousand subjects) where one ``audit_record`` per row would cost four round trips each.
    Call it inside the transaction that makes the changes it records."""
    if not entries:
        return []
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(
            id=1, defaults={"last_hash": GENESIS, "length": 0}
        )
        now = timezone.now()
        prev = head.last_hash
        events = []
        for target_type, target_id, detail in entries:
            event = AuditEvent(
                occurred_at=now,
                actor=actor,
                action=action,
                target_type=target_type,
                target_id=target_id,
                # Round-trip through JSON so the hash is computed over exactly what is stored.
                detail=json.loads(json.dumps(detail or {}, default=str)),
                prev_hash=prev,
            )
            event.hash = prev = event_hash(event)
            events.append(event)
        # One multi-row INSERT takes its ids from the sequence in list order, which is the
        # order audit_verify walks (ids are only handed out under the head lock held here).
        AuditEvent.objects.bulk_create(events)
        if any(a.pk >= b.pk for a, b in itertools.pairwise(events)):
            raise RuntimeError("Audit events were numbered out of order; the chain would break.")
        AuditChainHead.objects.filter(id=1).update(
            last_hash=prev, length=models.F("length") + len(events)
        )
    return events


@dataclass(frozen=True)
class ChainReport:
    intact: bool
    checked: int
    broken_at: int | None = None
    reason: str = ""


def audit_verify(*, batch_size: int = 5000) -> ChainReport:
    """Walk the chain in order and report the first broken link."""
    expected_prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        batch = list(AuditEvent.objects.filter(id__gt=last_id).order_by("id")[:batch_size])
        if not batch:
            break
        for event in batch:
            if event.prev_hash != expected_prev:
                return ChainReport(
                    False, checked, event.id, "an event before this one was deleted or changed"
                )
            if event_hash(event) != event.hash:
                return ChainReport(False, checked, event.id, "this event was changed")
            expected_prev = event.hash
            checked += 1
            last_id = event.id
    head = AuditChainHead.objects.filter(id=1).first()
    head_hash = head.last_hash if head else GENESIS
    head_length = head.length if head else 0
    if head_hash != expected_prev or head_length != checked:
        return ChainReport(
            False, checked, None, "the newest events were deleted (the chain head does not match)"
        )
    return ChainReport(True, checked)
