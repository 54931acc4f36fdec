"""Webhook subscriptions, the outbox of deliveries and their sending; idempotency upkeep.

Other apps announce a change with ``webhook_emit`` *inside* the transaction that makes it.
The delivery rows commit or roll back with the change, and sending starts only after
commit: a rolled-back erasure is never announced, a committed one always is (the outbox
pattern; GDPR Art. 19 and CCPA §7022 oblige us to tell recipients of erasures).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import F, Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from compliance.audit import audit_record
from compliance.dispatch import task_publish
from compliance.models import System
from compliance.services import ServiceError
from integrations.events import EVENT_TYPES, personal_keys_in
from integrations.models import (
    DeliveryStatus,
    IdempotencyRecord,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSequence,
    WebhookSubscription,
)
from integrations.selectors import webhook_deliveries_due, webhook_deliveries_earlier_pending
from integrations.signing import secret_generate, signature_headers
from integrations.transport import url_problem, webhook_send

MAX_EVENT_TYPES = 50


# --- Subscriptions ------------------------------------------------------------------------


def _validated_event_types(event_types: Iterable[str]) -> list[str]:
    cleaned = sorted({str(e) for e in event_types})
    if not cleaned:
        raise ServiceError("Subscribe to at least one event type.", field="event_types")
    unknown = [e for e in cleaned if e not in EVENT_TYPES]
    if unknown:
        raise ServiceError(
            f"Unknown event types: {', '.join(unknown)}. Known: {', '.join(EVENT_TYPES)}.",
            field="event_types",
        )
    return cleaned


def webhook_subscription_create(
    *,
    system: System,
    target_url: str,
    event_types: Iterable[str],
    actor: str,
    description: str = "",
) -> tuple[WebhookSubscription, str]:
    """Create a subscription; return it with its signing secret, shown to the caller once."""
    target_url = target_url.strip()
    problem = url_problem(target_url)
    if problem:
        raise ServiceError(problem, field="target_url")
    types = _validated_event_types(event_types)
    secret = secret_generate()
    with transaction.atomic():
        subscription = WebhookSubscription.objects.create(
            system=system,
            target_url=target_url,
            event_types=types,
            secret=secret,
            description=description.strip(),
            created_by=actor,
        )
        audit_record(
            actor=actor,
            action="webhook.subscribed",
            target=subscription,
            detail={"system": system.slug, "event_types": types},
        )
    return subscription, secret


def webhook_subscription_delete(*, subscription: WebhookSubscription, actor: str) -> None:
    """Stop a subscription. Its deliveries stay as the record of what was announced; those
    still pending are cancelled."""
    now = timezone.now()
    with transaction.atomic():
        updated = WebhookSubscription.objects.filter(
            pk=subscription.pk, deleted_at__isnull=True
        ).update(deleted_at=now, active=False)
        if not updated:
            return
        cancelled = WebhookDelivery.objects.filter(
            subscription=subscription, status=DeliveryStatus.PENDING
        ).update(status=DeliveryStatus.CANCELLED, lease_token=None)
        audit_record(
            actor=actor,
            action="webhook.unsubscribed",
            target=subscription,
            detail={"system": subscription.system.slug, "pending_cancelled": cancelled},
        )


def webhook_subscription_set_active(
    *, subscription: WebhookSubscription, active: bool, actor: str
) -> None:
    with transaction.atomic():
        updated = (
            WebhookSubscription.objects.filter(pk=subscription.pk, deleted_at__isnull=True)
            .exclude(active=active)
            .update(active=active)
        )
        if updated:
            audit_record(
                actor=actor,
                action="webhook.resumed" if active else "webhook.paused",
                target=subscription,
                detail={"system": subscription.system.slug},
            )
            if active:
                transaction.on_commit(webhook_dispatch_due)


# --- The outbox ---------------------------------------------------------------------------


def _next_sequence(*, subscription: WebhookSubscription, ordering_key: str) -> int:
    # One statement that inserts or increments, and locks the lane's row until commit.
    table = WebhookSequence._meta.db_table
    subscription_id = WebhookSequence._meta.get_field(
        "subscription"
    ).target_field.get_db_prep_value(subscription.pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (subscription_id, ordering_key, last_sequence) "  # noqa: S608
            "VALUES (%s, %s, 1) ON CONFLICT (subscription_id, ordering_key) "
            f"DO UPDATE SET last_sequence = {table}.last_sequence + 1 RETURNING last_sequence",
            [subscription_id, ordering_key],
        )
        return cursor.fetchone()[0]


def webhook_emit(
    *,
    event_type: str,
    system: System | None,
    subject_id: uuid.UUID | str | None,
    payload: Mapping[str, object],
) -> list[WebhookDelivery]:
    """Write one outbox row per active subscription to ``event_type`` and send them after
    commit. Call it inside the transaction of the change it reports (it refuses otherwise).

    ``system`` limits the event to that system's subscriptions; ``None`` announces it to
    every system's (an erasure concerns every processor). ``payload`` holds ids and states:
    keys that carry personal data are refused unless the event type needs them (see
    ``integrations.events``)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(
            "webhook_emit must run inside the transaction of the change it announces."
        )
    event = EVENT_TYPES.get(event_type)
    if event is None:
        raise ServiceError(f"Unknown webhook event type {event_type!r}.", field="event_type")
    if not isinstance(payload, Mapping):
        raise ServiceError("A webhook payload is an object.", field="payload")
    forbidden = [
        path
        for path in personal_keys_in(dict(payload))
        if path.split(".")[0].split("[")[0] not in event.personal_keys
    ]
    if forbidden:
        raise ServiceError(
            f"The payload of {event_type} may not carry personal data: {', '.join(forbidden)}.",
            field="payload",
        )
    # Stored as JSON exactly as it will be sent, so what the admin shows is what went out.
    data = json.loads(json.dumps(dict(payload), cls=DjangoJSONEncoder))
    ordering_key = str(subject_id) if subject_id else ""
    subscriptions = WebhookSubscription.objects.filter(active=True, deleted_at__isnull=True)
    if system is not None:
        subscriptions = subscriptions.filter(system=system)
    event_id = uuid.uuid4()
    deliveries = []
    for subscription in subscriptions.order_by("pk"):
        if event_type not in subscription.event_types:
            continue
        deliveries.append(
            WebhookDelivery.objects.create(
                subscription=subscription,
                event_type=event_type,
                event_id=event_id,
                ordering_key=ordering_key,
                sequence=_next_sequence(subscription=subscription, ordering_key=ordering_key),
                payload=data,
            )
        )
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: _dispatch(pk))
    return deliveries


def delivery_body(delivery: WebhookDelivery) -> bytes:
    """The JSON body of a delivery: the same bytes on every attempt."""
    envelope = {
        "id": str(delivery.event_id),
        "type": delivery.event_type,
        "created_at": delivery.created_at.isoformat().replace("+00:00", "Z"),
        "system": delivery.subscription.system.slug,
        "subject_id": delivery.ordering_key or None,
        "sequence": delivery.sequence,
        "data": delivery.payload,
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()


def webhook_backoff_seconds(attempts: int) -> int:
    """Delay before the next try after ``attempts`` failed ones: base, 2x base, 4x base, ...
    up to the maximum."""
    base = settings.WEBHOOK_BACKOFF_BASE_SECONDS
    ceiling = settings.WEBHOOK_BACKOFF_MAX_SECONDS
    return min(ceiling, base * 2 ** min(max(attempts - 1, 0), 30))


def _dispatch(delivery_id: int, countdown: int | None = None) -> None:
    from integrations.tasks import webhook_deliver_task

    task_publish(webhook_deliver_task, [delivery_id], countdown=countdown)


def _dispatch_lane_head(*, subscription_id, ordering_key: str) -> None:
    head = (
        WebhookDelivery.objects.filter(
            subscription_id=subscription_id,
            ordering_key=ordering_key,
            status=DeliveryStatus.PENDING,
        )
        .order_by("sequence")
        .values_list("pk", "next_attempt_at")
        .first()
    )
    if head is not None and head[1] <= timezone.now():
        _dispatch(head[0])


def webhook_deliver(*, delivery_id: int) -> str:
    """Try to send one delivery; return what happened in a word. Safe to run twice at once
    or after a crash: the attempt is claimed with a guarded update and a lease, and the
    result is written only by the holder of the lease.

    Not to be called inside a transaction: it waits on the network."""
    now = timezone.now()
    delivery = (
        WebhookDelivery.objects.select_related("subscription__system")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return "not_pending"
    subscription = delivery.subscription
    if subscription.deleted_at is not None:
        WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
            status=DeliveryStatus.CANCELLED, lease_token=None
        )
        return "cancelled"
    if not subscription.active:
        return "paused"
    if delivery.next_attempt_at > now:
        return "not_due"
    # In order per subject: an earlier event still pending goes first; its success sends
    # this one on, so a receiver that was down gets the events as they happened.
    if webhook_deliveries_earlier_pending(delivery=delivery).exists():
        return "waiting"
    token = uuid.uuid4()
    lease = settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 30
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(lease_token=token, next_attempt_at=now + timedelta(seconds=lease))
    if not claimed:
        return "claimed_elsewhere"

    body = delivery_body(delivery)
    headers = signature_headers(
        secret=subscription.secret,
        event_id=str(delivery.event_id),
        body=body,
        timestamp=int(time.time()),
    )
    headers["X-Webhook-Event"] = delivery.event_type
    result = webhook_send(
        url=subscription.target_url,
        body=body,
        headers=headers,
        timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
        allow_private=settings.WEBHOOK_ALLOW_PRIVATE_TARGETS,
    )

    finished = timezone.now()
    attempts = delivery.attempts + 1
    mine = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, lease_token=token
    )
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=finished,
            status_code=result.status_code,
            error=result.error[:300],
            duration_ms=result.duration_ms,
        )
        common = {
            "attempts": F("attempts") + 1,
            "last_status_code": result.status_code,
            "last_error": result.error[:300],
            "lease_token": None,
        }
        if result.ok:
            if mine.update(status=DeliveryStatus.DELIVERED, delivered_at=finished, **common):
                transaction.on_commit(
                    lambda: _dispatch_lane_head(
                        subscription_id=delivery.subscription_id,
                        ordering_key=delivery.ordering_key,
                    )
                )
                return "delivered"
            return "lease_lost"
        if attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            if mine.update(status=DeliveryStatus.FAILED, **common):
                # Giving up on one event must not hold back the subject's later ones forever.
                transaction.on_commit(
                    lambda: _dispatch_lane_head(
                        subscription_id=delivery.subscription_id,
                        ordering_key=delivery.ordering_key,
                    )
                )
                return "failed"
            return "lease_lost"
        delay = webhook_backoff_seconds(attempts)
        if mine.update(next_attempt_at=finished + timedelta(seconds=delay), **common):
            transaction.on_commit(lambda: _dispatch(delivery.pk, countdown=delay))
            return "retry_scheduled"
        return "lease_lost"


def outbox_retryable(now) -> Q:
    """Outbox rows (webhook deliveries, OpenDSR callbacks) a person may send again now:
    failed ones, and pending ones that no worker holds or whose backoff is over."""
    return (
        Q(status=DeliveryStatus.FAILED)
        | Q(status=DeliveryStatus.PENDING, lease_token__isnull=True)
        | Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    )


def webhook_delivery_retry(*, delivery: WebhookDelivery, actor: str) -> bool:
    """Send a pending or failed delivery now, out of its backoff. Returns False when it is
    delivered, cancelled or being sent right now."""
    now = timezone.now()
    with transaction.atomic():
        updated = (
            WebhookDelivery.objects.filter(pk=delivery.pk)
            .filter(outbox_retryable(now))
            .update(status=DeliveryStatus.PENDING, next_attempt_at=now, lease_token=None)
        )
        if not updated:
            return False
        audit_record(
            actor=actor,
            action="webhook.delivery_retried",
            target=delivery,
            detail={"event_type": delivery.event_type, "event_id": str(delivery.event_id)},
        )
        transaction.on_commit(lambda: _dispatch(delivery.pk))
    return True


def webhook_dispatch_due(*, limit: int = 500) -> int:
    """Queue every delivery that is due and first in its lane. The periodic safety net for
    dispatches lost with a broker or a worker; sending twice is harmless (see
    webhook_deliver)."""
    due = webhook_deliveries_due(limit=limit)
    for pk in due:
        _dispatch(pk)
    return len(due)


# --- Idempotency upkeep -------------------------------------------------------------------


def idempotency_records_purge(*, now=None) -> int:
    """Delete idempotency records past their expiry; they may hold response bodies."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


def idempotency_records_forget(*, subject_id: uuid.UUID | str) -> int:
    """Delete stored answers that name this subject (a subject's record, with its
    identities, is the answer to POST /subjects/). For erasure (GDPR Art. 17): without it
    they would live on until they expire."""
    deleted, _ = (
        IdempotencyRecord.objects.annotate(body_text=Cast("response_body", TextField()))
        .filter(body_text__contains=str(subject_id))
        .delete()
    )
    return deleted
