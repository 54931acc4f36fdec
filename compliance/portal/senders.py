"""Delivery of sign-in codes. ``settings.PORTAL_CODE_SENDERS`` maps an identity type
(``email``, ``phone``) to the dotted path of a class implementing ``CodeSender``; a deployment
with an SMS gateway adds its own class there without touching the sign-in logic."""

from __future__ import annotations

import logging
from functools import cache
from typing import Protocol

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from compliance.models import DataSubject, IdentityType

logger = logging.getLogger(__name__)


class CodeSender(Protocol):
    def send(self, *, subject: DataSubject, identity_type: str, value: str, code: str) -> str:
        """Deliver ``code``; return the identity type it reached (``"email"``), or ``""``
        when it could not be delivered. Never log ``value`` or ``code``."""


def _send_code_email(*, to: str, code: str) -> None:
    minutes = settings.PORTAL_CODE_TTL_SECONDS // 60
    context = {"code": code, "minutes": minutes}
    send_mail(
        subject=_("Your sign-in code"),
        message=render_to_string("portal/email/sign_in_code.txt", context),
        from_email=None,
        recipient_list=[to],
    )


class EmailCodeSender:
    """Sends the code to the address the customer typed, with Django's ``send_mail``."""

    def send(self, *, subject: DataSubject, identity_type: str, value: str, code: str) -> str:
        _send_code_email(to=value, code=code)
        return IdentityType.EMAIL


class PhoneCodeSender:
    """No SMS gateway is configured yet. The code goes to the email address we hold for the
    same customer, if there is one: receiving it there proves control of one of their
    identities just as well. Otherwise nothing is sent, and a warning (without the number)
    tells the operator that phone sign-in needs an SMS sender."""

    def send(self, *, subject: DataSubject, identity_type: str, value: str, code: str) -> str:
        email = (
            subject.identities.filter(type=IdentityType.EMAIL)
            .order_by("-verified", "created_at")
            .values_list("value", flat=True)
            .first()
        )
        if email:
            _send_code_email(to=email, code=code)
            return IdentityType.EMAIL
        logger.warning("SMS sending not configured: no sign-in code sent for a phone sign-in.")
        return ""


@cache
def _sender_class(path: str) -> type:
    return import_string(path)


def sender_for(identity_type: str) -> CodeSender | None:
    path = settings.PORTAL_CODE_SENDERS.get(identity_type)
    return _sender_class(path)() if path else None
