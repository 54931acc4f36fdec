"""Global Privacy Control (W3C): reading the signal from a request.

Only the exact header value ``Sec-GPC: 1`` is a signal. The signal is an opt-out of sale and
sharing (CCPA §7025); its absence never opts anyone back in, so there is nothing to do when
it is missing. Record a signal for a known customer with
``consent.services.gpc_signal_record(subject=..., actor=...)``.

Every other request that identifies a customer (subjects, conversations, data subject
requests, OpenDSR, signed download links) reaches ``gpc_request_check`` and
``gpc_subjects_identified`` as hooks of ``compliance.subject_hooks``, registered in
``ConsentConfig.ready``: the core app does not import this one.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from compliance.models import ApiClient, DataSubject
from compliance.services import ServiceError
from consent.models import SALE_SHARING, ConsentState, ConsentStatus
from consent.services import NotFoundError, gpc_signal_record

HEADER = "HTTP_SEC_GPC"


class InvalidGpcSignal(ServiceError):
    def __init__(self):
        super().__init__(
            'The Sec-GPC header must be exactly "1" (Global Privacy Control); leave it out '
            "when the customer's browser sends no signal.",
            field="Sec-GPC",
        )


def gpc_signal(request, *, strict: bool = True) -> bool:
    """Whether this request carries a Global Privacy Control signal.

    API requests are strict: any other value is a caller's mistake and raises
    InvalidGpcSignal (a 400). Browser pages (the portal) pass ``strict=False``: a browser
    that sends an odd value sends no signal, and the page must still render."""
    raw = request.META.get(HEADER)
    if raw is None:
        return False
    if raw == "1":
        return True
    if strict:
        raise InvalidGpcSignal()
    return False


def gpc_request_check(request, *, strict: bool) -> bool:
    """The hook's check: refuse a malformed header (strict) before the view writes
    anything; True when the request carries the signal."""
    return gpc_signal(request, strict=strict)


def gpc_subjects_identified(
    request,
    *,
    subjects: Sequence[DataSubject],
    actor: str,
    source: str,
    strict: bool,
    gpc_relayed: bool = False,
) -> None:
    """Record the signal a request carried (the header, or relayed in its body) as an
    opt-out of sale/sharing with source ``gpc`` for each known customer it named (CCPA
    regulations §7025(c)(1): the signal is a request to opt out for the browser and, where
    known, the consumer). A customer already opted out gets nothing new, so a signal sent
    with every request does not flood the history; the absence of the signal never opts
    anyone back in."""
    if not (gpc_relayed or gpc_signal(request, strict=strict)):
        return
    # One query skips those already opted out before gpc_signal_record locks each row: a
    # GET repeated with the header must not queue behind writers of the same subject.
    already = set(
        ConsentState.objects.filter(
            subject_id__in={s.pk for s in subjects},
            purpose__slug=SALE_SHARING,
            status=ConsentStatus.OPTED_OUT,
        ).values_list("subject_id", flat=True)
    )
    pending = {s.pk: s for s in subjects if s.pk not in already}
    if not pending:
        return
    evidence = _evidence(request, source)
    with transaction.atomic():
        # Subjects are locked in order of id: two batches naming the same customers in
        # another order cannot deadlock.
        for subject in sorted(pending.values(), key=lambda s: str(s.pk)):
            try:
                # Checks again under the subject's lock, so a race records one event.
                gpc_signal_record(subject=subject, actor=actor, evidence=evidence)
            except NotFoundError:
                continue  # erased since the view found it: nobody is left to opt out


def _evidence(request, source: str) -> dict[str, str]:
    """Which client relayed the signal, and through which operation; never an identity."""
    evidence = {"collection_point": source[:100]}
    client = getattr(request, "user", None)
    if isinstance(client, ApiClient):
        evidence["client"] = client.name[:100]
        if client.system_id:
            evidence["system"] = client.system.slug
    return evidence


@require_GET
@cache_control(public=True, max_age=86400)
def gpc_json(request):
    """``/.well-known/gpc.json``: this site honours the signal (GPC spec, section 3.4)."""
    return JsonResponse({"gpc": True, "lastUpdate": settings.CONSENT_GPC_LAST_UPDATE})
