"""What the request services tell other systems, inside the transaction of each change:
webhook events through the outbox (``integrations.services.webhook_emit``) and the status
callbacks of requests filed through OpenDSR. A change that rolls back is never announced;
one that commits always is.

Recipients must hear of erasures, rectifications and restrictions (GDPR Art. 19, CCPA
§7022); the other events let the systems follow the requests. Every event goes to every
system's subscriptions: a request concerns whatever any system holds about the person."""

from __future__ import annotations

from compliance.connectors import SubjectKeys
from dsar.models import DataSubjectRequest, RequestStatus
from integrations.opendsr.callbacks import opendsr_status_changed
from integrations.services import webhook_emit

S = RequestStatus
# request.completed reports how a request was answered: done, done in part, or refused.
ANSWERED = frozenset({S.COMPLETED, S.PARTIALLY_COMPLETED, S.REJECTED})


def _emit(event_type: str, request: DataSubjectRequest, payload: dict) -> None:
    webhook_emit(
        event_type=event_type,
        system=None,
        subject_id=request.subject_id,
        payload={"request_id": str(request.pk), **payload},
    )


def request_created(request: DataSubjectRequest) -> None:
    _emit(
        "request.created",
        request,
        {
            "type": request.type,
            "regulation": request.regulation,
            "channel": request.channel,
            "due_at": request.due_at,
            "duplicate": request.duplicate_of_id is not None,
        },
    )


def status_changed(request: DataSubjectRequest, *, old: str, new: str) -> None:
    """Every transition of the lifecycle: the webhooks, and the OpenDSR callbacks."""
    _emit("request.status_changed", request, {"type": request.type, "from": old, "to": new})
    if new in ANSWERED:
        _emit("request.completed", request, {"type": request.type, "outcome": new})
    opendsr_status_changed(request=request)


def erasure_requested(request: DataSubjectRequest, keys: SubjectKeys) -> None:
    """GDPR Art. 17 and 19, CCPA §7022: the processors erase too. They can only find their
    records by the identities, so these are sent (the one event type allowed to)."""
    _emit(
        "erasure.requested",
        request,
        {
            "regulation": request.regulation,
            "identities": {
                "customer_id": list(keys.customer_ids),
                "email": list(keys.emails),
                "phone": list(keys.phones),
            },
        },
    )


def erasure_completed(request: DataSubjectRequest, certificate_body: dict) -> None:
    _emit(
        "erasure.completed",
        request,
        {
            "complete": bool(certificate_body.get("complete")),
            "sources": [
                {
                    "source_id": source["source_id"],
                    "status": source["status"],
                    "records_before": source["records_before"],
                    "records_after": source["records_after"],
                }
                for source in certificate_body.get("sources", [])
            ],
        },
    )


def restriction_changed(request: DataSubjectRequest, *, restricted: bool) -> None:
    _emit("restriction.changed", request, {"restricted": restricted})


def rectification_completed(request: DataSubjectRequest, corrections: list[dict]) -> None:
    """GDPR Art. 19: recipients correct their copy; they need the old value to find it."""
    _emit(
        "rectification.completed",
        request,
        {
            "identities": [
                {"type": c["type"], "old": c["old"], "new": c["new"]} for c in corrections
            ]
        },
    )
