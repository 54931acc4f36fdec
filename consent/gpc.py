"""Global Privacy Control (W3C): reading the signal from a request.

Only the exact header value ``Sec-GPC: 1`` is a signal. The signal is an opt-out of sale and
sharing (CCPA §7025); its absence never opts anyone back in, so there is nothing to do when
it is missing. Record a signal for a known customer with
``consent.services.gpc_signal_record(subject=..., actor=...)``.
"""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from compliance.services import ServiceError

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


@require_GET
@cache_control(public=True, max_age=86400)
def gpc_json(request):
    """``/.well-known/gpc.json``: this site honours the signal (GPC spec, section 3.4)."""
    return JsonResponse({"gpc": True, "lastUpdate": settings.CONSENT_GPC_LAST_UPDATE})
