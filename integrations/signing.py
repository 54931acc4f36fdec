"""Webhook signatures: what this service sends, and a reference check for receivers.

Headers of every delivery:

    X-Webhook-Id:        the event id (a UUID; the same on every retry of the delivery)
    X-Webhook-Timestamp: unix seconds when this attempt was signed
    X-Webhook-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{raw body}")>

The timestamp is inside the signed bytes, so an attacker who captured a delivery cannot
re-date it; a receiver refuses timestamps outside its tolerance and remembers the ids it
has seen for at least that long, so a replayed delivery is caught either way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """A delivery that must be refused; ``reason`` is a short machine-readable word."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def secret_generate() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature_compute(*, secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_headers(*, secret: str, event_id: str, body: bytes, timestamp: int) -> dict:
    return {
        "X-Webhook-Id": event_id,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": f"{SIGNATURE_VERSION}="
        + signature_compute(secret=secret, timestamp=timestamp, body=body),
    }


def signature_verify(
    *,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
    seen: Callable[[str], bool] | None = None,
) -> str:
    """Check a delivery as a receiver should; return its event id or raise SignatureError.

    ``headers`` is looked up case-insensitively. ``seen(event_id)`` (optional) answers
    whether this id was already accepted and records it; it makes a replay inside the
    tolerance window detectable too."""
    lowered = {k.lower(): v for k, v in headers.items()}
    event_id = lowered.get("x-webhook-id", "")
    raw_timestamp = lowered.get("x-webhook-timestamp", "")
    raw_signature = lowered.get("x-webhook-signature", "")
    if not (event_id and raw_timestamp and raw_signature):
        raise SignatureError("missing", "A signature header is missing.")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise SignatureError("malformed", "The timestamp is not a whole number.") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError("stale", "The timestamp is outside the tolerance.")
    expected = signature_compute(secret=secret, timestamp=timestamp, body=body)
    # Several comma-separated signatures may come during a secret rotation; one must match.
    candidates = [
        part.split("=", 1)[1]
        for part in raw_signature.split(",")
        if part.strip().startswith(f"{SIGNATURE_VERSION}=")
    ]
    if not any(hmac.compare_digest(expected, c.strip()) for c in candidates):
        raise SignatureError("mismatch", "The signature does not match.")
    if seen is not None and seen(event_id):
        raise SignatureError("replayed", "This delivery was already received.")
    return event_id
