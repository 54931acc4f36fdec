"""OpenAPI examples for the webhook API. Every value is fake (example.com, made-up UUIDs)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

from integrations.events import EVENT_TYPES

CREATE_EXAMPLE = {
    "system": "shop-assistant",
    "target_url": "https://crm.example.com/hooks/privacy",
    "event_types": ["erasure.requested", "consent.changed"],
    "description": "CRM erases and updates marketing flags",
}

WEBHOOK = {
    "id": "b4d6f8a0-2c4e-4a6b-8d0f-1e3a5c7e9b2d",
    **CREATE_EXAMPLE,
    "active": True,
    "created_at": "2026-11-05T13:40:22.761000Z",
}

# One item: drf-spectacular wraps a list endpoint's example in the paginated shape itself.
WEBHOOKS_LIST = [
    OpenApiExample(
        "A subscription in a page", value=WEBHOOK, response_only=True, status_codes=["200"]
    )
]

WEBHOOKS_CREATE = [
    OpenApiExample("Erasures and consents", value=CREATE_EXAMPLE, request_only=True),
    OpenApiExample(
        "Subscribed",
        response_only=True,
        status_codes=["201"],
        value={**WEBHOOK, "secret": "whsec_example_3q9Zf1xKpL7vN2mR8tYb4cWd"},
    ),
]

WEBHOOK_RETRIEVE = [
    OpenApiExample("A subscription", value=WEBHOOK, response_only=True, status_codes=["200"])
]

# From the registry itself, so the example cannot drift from what the endpoint lists. One
# item per example: drf-spectacular wraps a list endpoint's example in the list itself.
EVENT_TYPES_LIST = [
    OpenApiExample(
        f"{name} event",
        response_only=True,
        status_codes=["200"],
        value={
            "name": EVENT_TYPES[name].name,
            "description": EVENT_TYPES[name].description,
            "personal_data": sorted(EVENT_TYPES[name].personal_keys),
        },
    )
    for name in ("erasure.requested", "consent.changed")
]
