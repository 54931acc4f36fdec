"""OpenAPI examples for the compliance API (subjects, conversations, log sources).

Kept apart from the views so they stay readable. Every value is fake: example.com emails,
+44 20 7946 0xxx numbers (Ofcom's range reserved for drama) and made-up UUIDs.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

SUBJECT_ID = "3f2b8c1e-6d4a-4b7e-9c1f-2a5e8d0b7c31"
# A list endpoint's example is one item: drf-spectacular wraps it in the paginated shape
# ({"next", "previous", "results": [item]}) itself, or in a list for an unpaginated one.


SUBJECT = {
    "id": SUBJECT_ID,
    "external_id": "C-1001",
    "display_name": "Ana Example",
    "jurisdiction": "EU",
    "identities": [
        {"type": "customer_id", "value": "C-1001", "verified": True},
        {"type": "email", "value": "ana@example.com", "verified": True},
        {"type": "phone", "value": "+442079460123", "verified": False},
    ],
    "created_at": "2026-11-02T10:21:43.512000Z",
}

CONVERSATION = {
    "id": 1842,
    "system": "shop-assistant",
    "conversation_id": "c-1842",
    "subject": SUBJECT_ID,
    "started_at": "2026-11-20T09:14:00Z",
    "disclosure_version": 2,
    "disclosure_shown_at": "2026-11-20T09:14:00Z",
    "created_at": "2026-11-20T09:15:02.114000Z",
}

CONVERSATION_DETAIL = {
    **CONVERSATION,
    "messages": [
        {
            "sequence": 0,
            "role": "assistant",
            "text": "Hi! I'm an AI assistant.",
            "sent_at": "2026-11-20T09:14:00Z",
        },
        {
            "sequence": 1,
            "role": "customer",
            "text": "Where is my order 5512?",
            "sent_at": "2026-11-20T09:14:09Z",
        },
    ],
}

CONVERSATIONS_LIST = [
    OpenApiExample(
        "A conversation in a page",
        value=CONVERSATION,
        response_only=True,
        status_codes=["200"],
    )
]

CONVERSATIONS_INGEST = [
    OpenApiExample(
        "Stored",
        value={
            "conversations_created": 1,
            "conversations_seen": 1,
            "messages_created": 2,
            "messages_skipped": 0,
        },
        response_only=True,
        status_codes=["201"],
    ),
    OpenApiExample(
        "Everything was already there",
        value={
            "conversations_created": 0,
            "conversations_seen": 1,
            "messages_created": 0,
            "messages_skipped": 2,
        },
        response_only=True,
        status_codes=["200"],
    ),
]

CONVERSATION_RETRIEVE = [
    OpenApiExample(
        "A conversation", value=CONVERSATION_DETAIL, response_only=True, status_codes=["200"]
    )
]

SUBJECTS_LIST = [
    OpenApiExample(
        "A subject in a page",
        value=SUBJECT,
        response_only=True,
        status_codes=["200"],
    )
]

SUBJECTS_CREATE = [
    OpenApiExample(
        "A customer known by id and email",
        value={
            "identities": {"customer_id": "C-1001", "email": "ana@example.com"},
            "display_name": "Ana Example",
            "jurisdiction": "EU",
        },
        request_only=True,
    ),
    OpenApiExample("Registered", value=SUBJECT, response_only=True, status_codes=["201"]),
]

SUBJECT_RETRIEVE = [
    OpenApiExample("A subject", value=SUBJECT, response_only=True, status_codes=["200"])
]

SUBJECTS_LOOKUP = [
    OpenApiExample("By email", value={"identity": "email:ana@example.com"}, request_only=True),
    OpenApiExample("Found", value=SUBJECT, response_only=True, status_codes=["200"]),
]

SOURCES_LIST = [
    OpenApiExample(
        "A log source in a page",
        value={
            "id": 3,
            "system": "shop-assistant",
            "name": "Built-in store",
            "connector": "builtin",
            "enabled": True,
            "created_at": "2026-10-01T08:00:00Z",
        },
        response_only=True,
        status_codes=["200"],
    )
]
