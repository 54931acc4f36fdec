"""Emails to the subject about their request: receipt, verification code, verified,
extension, completion, rejection, and the notice before a restriction is lifted.

Sent only after the transaction that caused them commits (a rolled-back change must not
be announced), and a mail server that fails never undoes the change: the failure is logged
(without the address) and the DPO sees the request's state in the admin."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from dsar.models import DataSubjectRequest

logger = logging.getLogger(__name__)

SUBJECT_LINES = {
    "received": "We received your privacy request",
    "code": "Your verification code",
    "verified": "Your identity is verified",
    "extended": "We need more time for your privacy request",
    "completed": "Your privacy request is answered",
    "rejected": "Your privacy request was refused",
    "cancelled": "Your privacy request was cancelled",
    "restriction_lift": "The restriction of your data will be lifted",
}


def _send(kind: str, to: str, body: str) -> None:
    try:
        send_mail(
            subject=SUBJECT_LINES[kind],
            message=body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[to],
        )
    except Exception as exc:  # the mail server is outside our control; the change stands
        logger.error("could not send the %s notice of a request: %s", kind, exc.__class__.__name__)


def notify_subject(request: DataSubjectRequest, kind: str, **extra: object) -> bool:
    """Queue a notice for after commit. False when there is nowhere to send it."""
    to = request.contact_email
    if not to:
        return False
    context = {
        "request": request,
        "type_label": request.get_type_display(),
        "site_name": settings.DSAR_SITE_NAME,
        "privacy_contact": settings.DSAR_PRIVACY_CONTACT,
        **extra,
    }
    # Rendered now, while the request still holds what the notice needs (an erasure clears
    # the contact details before commit).
    body = render_to_string(f"dsar/email/{kind}.txt", context)
    transaction.on_commit(lambda: _send(kind, to, body), robust=True)
    return True
