"""Helpers shared by the consent tests."""

from __future__ import annotations

from compliance.models import AuditEvent
from consent.models import ConsentEvent, ConsentState


def consent_rows() -> tuple[int, int, int]:
    """Consent events, states and audit events: a request that is refused adds none."""
    return ConsentEvent.objects.count(), ConsentState.objects.count(), AuditEvent.objects.count()


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "errors"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]
