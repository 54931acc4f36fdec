"""OpenAPI examples for the data subject request API. Every value is fake (example.com,
+44 20 7946 0xxx, made-up UUIDs and tokens)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

REQUEST_ID = "5c8e1f2a-3b4d-4a6e-9f0c-7d2b1e8a9c43"
LINK_SIGNATURE = "eyJyIjoiNWM4ZTFmMmEiLCJzIjoiZXhhbXBsZSJ9:1tExmp:fake-signature-for-docs"

ACCEPTED = {
    "id": REQUEST_ID,
    "type": "access",
    "status": "awaiting_verification",
    "duplicate": False,
    "received_at": "2026-11-20T09:30:12.402000Z",
}

REQUEST = {
    "id": REQUEST_ID,
    "type": "access",
    "status": "in_progress",
    "regulation": "gdpr",
    "channel": "api",
    "received_at": "2026-11-20T09:30:12.402000Z",
    "due_at": "2026-12-20T09:30:12.402000Z",
    "extended": False,
    "extension_reason": "",
    "confirmation_due_at": None,
    "verified": True,
    "completed_at": None,
    "rejection_reason": "",
    "duplicate": False,
    "progress": {"sources_total": 3, "sources_done": 2, "sources_failed": 0, "records_found": 41},
    "download": None,
    "certificate_url": None,
}

COMPLETED_ERASURE = {
    **REQUEST,
    "id": "9e4a7c2d-1f8b-4d3e-a5c6-0b2f9e8d7a61",
    "type": "erasure",
    "status": "completed",
    "completed_at": "2026-11-21T16:02:55.870000Z",
    "progress": {"sources_total": 3, "sources_done": 3, "sources_failed": 0, "records_found": 41},
    "certificate_url": (
        "/api/v1/requests/9e4a7c2d-1f8b-4d3e-a5c6-0b2f9e8d7a61/certificate/?token=" + LINK_SIGNATURE
    ),
}

COMPLETED_ACCESS = {
    **REQUEST,
    "status": "completed",
    "completed_at": "2026-11-21T11:47:03.115000Z",
    "progress": {"sources_total": 3, "sources_done": 3, "sources_failed": 0, "records_found": 41},
    "download": {
        "url": f"/api/v1/requests/{REQUEST_ID}/download/?token={LINK_SIGNATURE}",
        "expires_at": "2026-12-21T11:47:03.115000Z",
        "sha256": "9f2c4e1a7b3d5f8e0c6a2b4d8f1e3a5c7b9d0e2f4a6c8e1b3d5f7a9c0e2b4d6f",
        "size": 48213,
    },
}

REQUESTS_CREATE = [
    OpenApiExample(
        "Access by email",
        request_only=True,
        value={"type": "access", "identity": {"email": "ana@example.com"}, "regulation": "gdpr"},
    ),
    OpenApiExample(
        "Rectification of a phone number",
        request_only=True,
        value={
            "type": "rectification",
            "identity": {"customer_id": "C-1001"},
            "details": {
                "corrections": [{"type": "phone", "old": "+442079460123", "new": "+442079460456"}]
            },
        },
    ),
    OpenApiExample(
        "Opt-out filed by an authorized agent",
        request_only=True,
        value={
            "type": "opt_out_sale",
            "identity": {"email": "ben@example.com"},
            "regulation": "ccpa",
            "agent": {
                "name": "Example Privacy Agents LLC",
                "permission_note": "Signed permission on file, ticket AG-2041.",
            },
        },
    ),
    OpenApiExample("Accepted", value=ACCEPTED, response_only=True, status_codes=["202"]),
]

# One request: drf-spectacular wraps a list endpoint's example in the paginated shape itself.
REQUESTS_LIST = [
    OpenApiExample(
        "A completed access request in a page",
        value=COMPLETED_ACCESS,
        response_only=True,
        status_codes=["200"],
    ),
    OpenApiExample(
        "A completed erasure in a page",
        value=COMPLETED_ERASURE,
        response_only=True,
        status_codes=["200"],
    ),
]

REQUEST_RETRIEVE = [
    OpenApiExample("In progress", value=REQUEST, response_only=True, status_codes=["200"]),
    OpenApiExample(
        "Completed, with its export",
        value=COMPLETED_ACCESS,
        response_only=True,
        status_codes=["200"],
    ),
]

REQUEST_CANCEL = [
    OpenApiExample(
        "Cancelled",
        response_only=True,
        status_codes=["200"],
        value={
            **REQUEST,
            "status": "cancelled",
            "verified": False,
            "confirmation_due_at": "2026-11-30T09:30:12.402000Z",
            "completed_at": "2026-11-20T10:02:40.000000Z",
            "progress": {
                "sources_total": 0,
                "sources_done": 0,
                "sources_failed": 0,
                "records_found": 0,
            },
        },
    )
]

REQUEST_VERIFY = [
    OpenApiExample("The emailed code", value={"code": "482913"}, request_only=True),
    OpenApiExample(
        "Verified",
        response_only=True,
        status_codes=["200"],
        value={
            **REQUEST,
            "status": "verified",
            "progress": {
                "sources_total": 0,
                "sources_done": 0,
                "sources_failed": 0,
                "records_found": 0,
            },
        },
    ),
]

CERTIFICATE = [
    OpenApiExample(
        "A certificate of erasure",
        response_only=True,
        status_codes=["200"],
        value={
            "certificate": "erasure",
            "request_id": "9e4a7c2d-1f8b-4d3e-a5c6-0b2f9e8d7a61",
            "regulation": "gdpr",
            "subject_reference": "b71e0c4f9a2d6e8b3c5a7f1d0e9b2c4a6f8d1e3b5c7a9f0e2d4b6c8a1e3f5b7d",
            "received_at": "2026-11-20T09:30:12.402000+00:00",
            "completed_at": "2026-11-21T16:02:55.870000+00:00",
            "complete": True,
            "sources": [
                {
                    "source_id": 3,
                    "source": "Built-in store",
                    "system": "Shop assistant",
                    "connector": "builtin",
                    "status": "done",
                    "strategy": "delete",
                    "records_before": 38,
                    "mentions_before": 2,
                    "records_erased": 38,
                    "records_after": 0,
                    "final_count": 0,
                    "final_count_unavailable": None,
                    "held_reason": None,
                    "error": None,
                    "finished_at": "2026-11-21T16:02:41.009000+00:00",
                }
            ],
            "totals": {"records_before": 38, "records_after": 0},
        },
    )
]
