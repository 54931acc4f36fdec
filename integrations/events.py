"""The webhook event types other services may subscribe to.

A payload carries ids and states, not personal data: the receiver already knows its own
customers, and a webhook body travels to another company's server and into its logs. Only an
event type that names a key in ``personal_keys`` may carry that key, because the receiver
cannot act without it (an erasure a processor cannot match to its records is no erasure).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    # Keys that hold personal data and that this event type may nevertheless carry.
    personal_keys: frozenset[str] = field(default_factory=frozenset)


# Keys that hold personal data wherever they appear in a payload. webhook_emit refuses a
# payload that uses one of them unless its event type allows it.
PERSONAL_DATA_KEYS = frozenset(
    {
        "address",
        "display_name",
        "email",
        "identities",
        "identity_value",
        "message",
        "messages",
        "name",
        "phone",
        "text",
    }
)

EVENT_TYPES: dict[str, EventType] = {
    event.name: event
    for event in (
        EventType(
            "consent.changed",
            "A subject's consent for a purpose was granted or withdrawn, or an opt-out "
            "(sale/sharing, sensitive data, GPC) changed (GDPR Art. 7(3), CCPA §7026).",
        ),
        EventType(
            "request.created",
            "A data subject request was filed: its id, type, regulation and due date.",
        ),
        EventType(
            "request.status_changed",
            "A data subject request moved to another state.",
        ),
        EventType(
            "request.completed",
            "A data subject request was completed (or refused, with the reason code).",
        ),
        EventType(
            "erasure.requested",
            "Erase this subject's data too (GDPR Art. 17 and 19, CCPA §7022). Carries the "
            "subject's identities (customer id, email, phone), because a processor can only "
            "find its own records by them.",
            personal_keys=frozenset({"identities"}),
        ),
        EventType(
            "erasure.completed",
            "This service finished erasing a subject's data; counts per source only.",
        ),
        EventType(
            "restriction.changed",
            "Processing of a subject's data was restricted or the restriction lifted "
            "(GDPR Art. 18 and 19).",
        ),
        EventType(
            "rectification.completed",
            "A subject's data was corrected (GDPR Art. 16 and 19). Carries the corrected "
            "identities, which the recipient needs to correct its copy.",
            personal_keys=frozenset({"identities"}),
        ),
    )
}


def personal_keys_in(payload: object, *, path: str = "") -> list[str]:
    """Paths of every key in ``payload`` (nested dicts and lists) that holds personal data."""
    found: list[str] = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            here = f"{path}.{key}" if path else str(key)
            if str(key).lower() in PERSONAL_DATA_KEYS:
                found.append(here)
            else:
                found.extend(personal_keys_in(value, path=here))
    elif isinstance(payload, list):
        for index, value in enumerate(payload):
            found.extend(personal_keys_in(value, path=f"{path}[{index}]"))
    return found
