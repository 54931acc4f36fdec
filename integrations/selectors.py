"""Read queries of the webhook outbox worth a name."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from integrations.models import DeliveryStatus, WebhookDelivery


def webhook_deliveries_earlier_pending(*, delivery: WebhookDelivery) -> QuerySet:
    """Deliveries of the same subscription and subject still pending before this one."""
    return WebhookDelivery.objects.filter(
        subscription_id=delivery.subscription_id,
        ordering_key=delivery.ordering_key,
        status=DeliveryStatus.PENDING,
        sequence__lt=delivery.sequence,
    )


def webhook_deliveries_due(*, limit: int = 500) -> list[int]:
    """Ids of pending deliveries that are due and first in their lane (subscription and
    subject), oldest due first."""
    earlier = WebhookDelivery.objects.filter(
        subscription_id=OuterRef("subscription_id"),
        ordering_key=OuterRef("ordering_key"),
        status=DeliveryStatus.PENDING,
        sequence__lt=OuterRef("sequence"),
    )
    return list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=timezone.now(),
            subscription__active=True,
            subscription__deleted_at__isnull=True,
        )
        .exclude(Exists(earlier))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
