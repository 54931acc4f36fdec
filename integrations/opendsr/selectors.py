"""Read queries of OpenDSR requests and their callbacks worth a name."""

from __future__ import annotations

import uuid

from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from compliance.models import ApiClient
from integrations.models import DeliveryStatus
from integrations.opendsr.models import OpenDsrCallback, OpenDsrRequest


def opendsr_request_of(
    *, client: ApiClient, subject_request_id: uuid.UUID
) -> OpenDsrRequest | None:
    """A controller's request by its own id; another controller's is never found."""
    return (
        OpenDsrRequest.objects.select_related("request", "client")
        .filter(client=client, subject_request_id=subject_request_id)
        .first()
    )


def opendsr_callbacks_earlier_pending(*, callback: OpenDsrCallback) -> QuerySet:
    """Reports to the same URL about the same request still waiting before this one."""
    return OpenDsrCallback.objects.filter(
        opendsr_request_id=callback.opendsr_request_id,
        url=callback.url,
        status=DeliveryStatus.PENDING,
        sequence__lt=callback.sequence,
    )


def opendsr_callbacks_due(*, limit: int = 500) -> list[int]:
    """Ids of pending callbacks that are due and first in their lane (request and URL)."""
    earlier = OpenDsrCallback.objects.filter(
        opendsr_request_id=OuterRef("opendsr_request_id"),
        url=OuterRef("url"),
        status=DeliveryStatus.PENDING,
        sequence__lt=OuterRef("sequence"),
    )
    return list(
        OpenDsrCallback.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
        )
        .exclude(Exists(earlier))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
