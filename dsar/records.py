"""Pseudonymous references to a subject: a keyed hash (HMAC-SHA256) that lets us tie a
download link or a kept request record to a subject without storing who they are. Without
the key the hash cannot be reversed by trying candidate identities."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings


def _key() -> bytes:
    configured = getattr(settings, "DSAR_RECORD_HASH_KEY", "")
    secret = configured or f"dsar-subject-ref:{settings.SECRET_KEY}"
    return secret.encode()


def subject_ref(*, subject_id: object | None, identity_type: str, identity_value: str) -> str:
    """The subject's reference: from the subject id when the request matched someone, else
    from the identity given (so two requests for the same unknown identity share it)."""
    if subject_id is not None:
        message = f"subject:{subject_id}"
    else:
        message = f"identity:{identity_type}:{identity_value}"
    return hmac.new(_key(), message.encode(), hashlib.sha256).hexdigest()
