"""OpenAPI examples for the consent API. Every value is fake (example.com, made-up UUIDs)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

SUBJECT_ID = "3f2b8c1e-6d4a-4b7e-9c1f-2a5e8d0b7c31"
RECEIPT_ID = "7a1d4e9b-2c8f-4f3a-b6e0-5d9c1a2b3e4f"
OLDER_RECEIPT_ID = "c2e5f8a1-9b3d-4e7c-8a6f-1d0b2c3e4f5a"

CHECK = [
    OpenApiExample(
        "Allowed by an explicit grant",
        value={
            "allowed": True,
            "reason": "explicit_grant",
            "state_since": "2026-11-02T10:22:05.301000Z",
        },
        response_only=True,
        status_codes=["200"],
    ),
    OpenApiExample(
        "Unknown customer, EU default",
        value={"allowed": False, "reason": "unknown_subject_default", "state_since": None},
        response_only=True,
        status_codes=["200"],
    ),
]

CHECK_BATCH = [
    OpenApiExample(
        "Two checks",
        request_only=True,
        value={
            "checks": [
                {"subject": "customer_id:C-1001", "purpose": "conversation-logging"},
                {"subject": "email:ana@example.com", "purpose": "marketing"},
            ]
        },
    ),
    OpenApiExample(
        "Two answers",
        response_only=True,
        status_codes=["200"],
        value={
            "results": [
                {
                    "subject": "customer_id:C-1001",
                    "purpose": "conversation-logging",
                    "allowed": True,
                    "reason": "explicit_grant",
                    "state_since": "2026-11-02T10:22:05.301000Z",
                },
                {
                    "subject": "email:ana@example.com",
                    "purpose": "marketing",
                    "allowed": False,
                    "reason": "withdrawn",
                    "state_since": "2026-11-20T09:16:41.000000Z",
                },
            ]
        },
    ),
]

EVENT = {
    "receipt_id": RECEIPT_ID,
    "subject_id": SUBJECT_ID,
    "purpose": "marketing",
    "action": "withdraw",
    "source": "plugin",
    "notice_version": 1,
    "jurisdiction": "EU",
    "occurred_at": "2026-11-20T09:16:41.000000Z",
    "evidence": {
        "client": "shop-assistant-plugin",
        "system": "shop-assistant",
        "collection_point": "chat-widget",
    },
}

EVENTS_CREATE = [
    OpenApiExample(
        "A withdrawal in the chat widget",
        request_only=True,
        value={
            "subject": "customer_id:C-1001",
            "purpose": "marketing",
            "action": "withdraw",
            "source": "plugin",
            "notice_version": 1,
            "evidence": {"collection_point": "chat-widget"},
        },
    ),
    OpenApiExample(
        "Recorded",
        response_only=True,
        status_codes=["201"],
        value={
            **EVENT,
            "answer": {
                "allowed": False,
                "reason": "withdrawn",
                "state_since": "2026-11-20T09:16:41.000000Z",
            },
            "gpc_recorded": False,
        },
    ),
]

SUBJECT_CONSENTS = [
    OpenApiExample(
        "One grant, one withdrawal",
        response_only=True,
        status_codes=["200"],
        value={
            "subject_id": SUBJECT_ID,
            "jurisdiction": "EU",
            "restricted": False,
            "purposes": [
                {
                    "purpose": "conversation-logging",
                    "name": "Keeping chat transcripts",
                    "lawful_basis": "consent",
                    "allowed": True,
                    "reason": "explicit_grant",
                    "state_since": "2026-11-02T10:22:05.301000Z",
                    "status": "granted",
                    "source": "api",
                },
                {
                    "purpose": "marketing",
                    "name": "Marketing emails",
                    "lawful_basis": "consent",
                    "allowed": False,
                    "reason": "withdrawn",
                    "state_since": "2026-11-20T09:16:41.000000Z",
                    "status": "withdrawn",
                    "source": "plugin",
                },
            ],
            "history": [
                EVENT,
                {
                    **EVENT,
                    "receipt_id": OLDER_RECEIPT_ID,
                    "action": "grant",
                    "source": "api",
                    "occurred_at": "2026-11-02T10:22:05.301000Z",
                    "evidence": {"client": "shop-backend", "collection_point": "checkout"},
                },
            ],
        },
    )
]

# One purpose per example: drf-spectacular wraps a list endpoint's example in the list itself.
PURPOSES_LIST = [
    OpenApiExample(
        "A purpose with its notice",
        response_only=True,
        status_codes=["200"],
        value={
            "slug": "marketing",
            "name": "Marketing emails",
            "description": "News and offers by email.",
            "lawful_basis": "consent",
            "sensitive": False,
            "sold_or_shared": False,
            "third_party_name": "",
            "data_categories": ["contact"],
            "systems": ["newsletter"],
            "notice_version": 1,
            "notice": "We email you news and offers. Withdraw at any time.",
        },
    ),
    OpenApiExample(
        "A purpose without a notice yet",
        response_only=True,
        status_codes=["200"],
        value={
            "slug": "conversation-logging",
            "name": "Keeping chat transcripts",
            "description": "Chat transcripts kept to improve answers.",
            "lawful_basis": "consent",
            "sensitive": False,
            "sold_or_shared": False,
            "third_party_name": "",
            "data_categories": ["conversation"],
            "systems": ["shop-assistant"],
            "notice_version": None,
            "notice": None,
        },
    ),
]


RECEIPT_CLAIMS = {
    "version": "KI-CR-v1.1.0",
    "jurisdiction": "EU",
    "consentTimestamp": 1795166201,
    "collectionMethod": "Chatbot plugin dialogue",
    "consentReceiptID": RECEIPT_ID,
    "language": "en",
    "piiPrincipalId": SUBJECT_ID,
    "piiControllers": [
        {
            "piiController": "Example Shop Ltd",
            "onBehalf": False,
            "contact": "Data Protection Officer",
            "address": {
                "streetAddress": "1 Example Street",
                "addressLocality": "London",
                "postalCode": "EC1A 1AA",
                "addressCountry": "GB",
            },
            "email": "dpo@example.com",
            "phone": "+44 20 7946 0000",
            "piiControllerUrl": "https://shop.example.com",
        }
    ],
    "policyUrl": "https://shop.example.com/privacy",
    "services": [
        {
            "service": "Newsletter",
            "purposes": [
                {
                    "purpose": "Marketing emails",
                    "purposeCategory": ["Marketing"],
                    "consentType": "EXPLICIT",
                    "piiCategory": ["Contact"],
                    "primaryPurpose": False,
                    "termination": (
                        "Until the customer withdraws it, objects or opts out, which they can "
                        "do at any time and as easily as they gave it (GDPR Art. 7(3)); "
                        "withdrawal does not affect processing before it."
                    ),
                    "thirdPartyDisclosure": False,
                }
            ],
        }
    ],
    "sensitive": False,
    "spiCat": [],
    "iss": "https://shop.example.com",
    "iat": 1795166300,
    "jti": RECEIPT_ID,
    "extensions": {
        "action": "withdraw",
        "purposeSlug": "marketing",
        "noticeVersion": 1,
        "source": "plugin",
    },
}

RECEIPT = [
    OpenApiExample(
        "A signed receipt",
        response_only=True,
        status_codes=["200"],
        value={
            "consentReceiptID": RECEIPT_ID,
            "kid": "2026-11-rsa-1",
            "jwt": "eyJhbGciOiJSUzI1NiIsImtpZCI6IjIwMjYtMTEtcnNhLTEiLCJ0eXAiOiJKV1QifQ"
            ".eyJleGFtcGxlIjp0cnVlfQ.ZmFrZS1zaWduYXR1cmU",
            "receipt": RECEIPT_CLAIMS,
        },
    )
]
