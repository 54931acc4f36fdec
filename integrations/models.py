"""Webhook subscriptions with their outbox of deliveries, and idempotency records of the API."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from compliance.models import ApiClient, System


class WebhookSubscription(models.Model):
    """A system's endpoint that hears about events, e.g. a processor that must erase too
    (GDPR Art. 19, CCPA §7022)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    system = models.ForeignKey(
        System, on_delete=models.PROTECT, related_name="webhook_subscriptions"
    )
    target_url = models.URLField(max_length=2000)
    event_types = models.JSONField(default=list)
    # Kept as is: signing needs the secret itself, so a digest would not do. It is shown once,
    # when the subscription is created, and never leaves through the API or the admin again.
    secret = models.CharField(max_length=100)
    description = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(
        default=True,
        help_text=_(
            "An inactive subscription records no new events and holds its pending "
            "deliveries until it is active again."
        ),
    )
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.system.slug} webhook {str(self.id)[:8]}"

    @property
    def secret_hint(self) -> str:
        return f"{self.secret[:8]}…" if self.secret else ""


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed (gave up)")
    CANCELLED = "cancelled", _("Cancelled (subscription deleted)")


class WebhookDelivery(models.Model):
    """One event for one subscription: an outbox row written in the transaction of the change
    it reports, so a change that rolls back is never announced and one that commits always
    is. Deliveries of one subscription and subject go out in ``sequence`` order: one is not
    sent while an earlier one is still pending."""

    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_type = models.CharField(max_length=64)
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    # The subject id as text, or "" for events about no subject (they share one lane).
    ordering_key = models.CharField(max_length=64, blank=True)
    sequence = models.PositiveBigIntegerField()
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Set while a worker holds the delivery; a worker that dies leaves it to expire.
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event_id"], name="webhookdelivery_unique_event"
            ),
            models.UniqueConstraint(
                fields=["subscription", "ordering_key", "sequence"],
                name="webhookdelivery_unique_sequence",
            ),
        ]
        indexes = [
            models.Index(
                fields=["status", "next_attempt_at"],
                name="webhookdelivery_due_idx",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.pk}"


class WebhookAttempt(models.Model):
    """One try at sending a delivery. Holds the receiver's status code, never its body."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["attempted_at"]

    def __str__(self) -> str:
        return f"attempt on delivery {self.delivery_id}"


class WebhookSequence(models.Model):
    """The last sequence number handed out per subscription and subject. Taking the next
    number locks this row until the emitting transaction commits, so two concurrent changes
    to one subject get numbers in the order they commit."""

    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="+"
    )
    ordering_key = models.CharField(max_length=64, blank=True)
    last_sequence = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "ordering_key"], name="webhooksequence_unique_lane"
            )
        ]

    def __str__(self) -> str:
        return f"sequence {self.last_sequence}"


class IdempotencyRecord(models.Model):
    """The first answer to a POST sent with an ``Idempotency-Key``, replayed to retries of
    the same request for a day."""

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 over method, path and the canonical JSON body: a reused key with another
    # request is a client bug, answered 422.
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="idempotency_unique_key")
        ]

    def __str__(self) -> str:
        return f"idempotency record {self.pk}"
