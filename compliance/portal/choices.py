"""The portal's privacy choices, on top of the consent app: which consent service a switch
calls, and what the page shows for each purpose. The consent app stays the only writer of
consent events; this module only picks the right one of its services."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

from compliance.models import DataSubject
from compliance.portal.session import GPC_KEY
from compliance.services import ServiceError
from consent import services as consent_services
from consent.gpc import gpc_signal
from consent.models import (
    BUILTIN_PURPOSES,
    SALE_SHARING,
    SENSITIVE_PI,
    ConsentEvent,
    ConsentSource,
    LawfulBasis,
    Purpose,
)
from consent.selectors import subject_consent_overview

# The two CCPA links and the purpose each one turns off (§7026, §7027).
CCPA_LINKS = {"do-not-sell": SALE_SHARING, "limit-sensitive": SENSITIVE_PI}


@dataclass(frozen=True)
class PurposeChoice:
    purpose: Purpose
    notice_text: str
    notice_version: int | None
    allowed: bool
    # False for processing that is necessary (contract, legal obligation): no switch.
    switchable: bool
    reason: str


def portal_privacy_choices(*, subject: DataSubject) -> list[PurposeChoice]:
    """Every purpose with its plain-language notice and whether it is on for the subject
    now, read the way the consent check answers (consent.selectors)."""
    rows = []
    for answer in subject_consent_overview(subject=subject):
        purpose = answer.purpose
        notice = purpose.notices.order_by("-version").first()
        rows.append(
            PurposeChoice(
                purpose=purpose,
                notice_text=notice.text if notice else purpose.description,
                notice_version=notice.version if notice else None,
                allowed=answer.result.allowed,
                switchable=purpose.lawful_basis in consent_services.REFUSABLE_BASES,
                reason=str(answer.result.reason),
            )
        )
    # The two CCPA opt-outs first: they are what a Californian comes here for.
    rows.sort(key=lambda row: (row.purpose.slug not in BUILTIN_PURPOSES, row.purpose.name))
    return rows


def portal_privacy_choice_set(
    *, subject: DataSubject, purpose: Purpose, allow: bool, ip_address: str | None
) -> ConsentEvent:
    """One click turns a purpose on or off, the same one click either way (GDPR Art. 7(3):
    withdrawing is as easy as giving consent). The event names the notice version the
    customer saw: the purpose's current one."""
    kwargs = {
        "subject": subject,
        "purpose": purpose,
        "source": ConsentSource.PORTAL,
        "actor": f"subject:{subject.pk}",
        "evidence": {"collection_point": "privacy-portal"},
        "ip_address": ip_address,
    }
    if purpose.lawful_basis not in consent_services.REFUSABLE_BASES:
        raise ServiceError(
            str(_("This use of your information is needed to serve you and has no switch.")),
            field="purpose",
        )
    if purpose.slug in BUILTIN_PURPOSES:
        # CCPA: opting out and back in, not a GDPR consent.
        service = consent_services.consent_opt_in if allow else consent_services.consent_opt_out
    elif purpose.lawful_basis == LawfulBasis.CONSENT:
        service = consent_services.consent_grant if allow else consent_services.consent_withdraw
    else:
        # Legitimate interest: "off" is an objection (GDPR Art. 21), "on" takes it back.
        service = consent_services.consent_opt_in if allow else consent_services.consent_object
    return service(**kwargs)


def portal_consent_event_get(*, subject: DataSubject, receipt_id) -> ConsentEvent | None:
    return (
        ConsentEvent.objects.select_related("purpose", "notice")
        .filter(subject=subject, receipt_id=receipt_id)
        .first()
    )


def portal_gpc_honor(request, subject: DataSubject | None, *, ip_address: str) -> bool:
    """Whether this browser sends a Global Privacy Control signal; for a signed-in customer
    it is recorded once per session as an opt-out of sale/sharing (CCPA §7025: the signal
    is an opt-out for the browser and, where known, the consumer)."""
    if not gpc_signal(request, strict=False):
        return False
    if subject is not None and request.session.get(GPC_KEY) != str(subject.pk):
        consent_services.gpc_signal_record(
            subject=subject,
            actor=f"subject:{subject.pk}",
            evidence={"collection_point": "privacy-portal"},
            ip_address=ip_address,
        )
        request.session[GPC_KEY] = str(subject.pk)
    return True
