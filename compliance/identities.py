"""Normalization of subject identities, so that the same person written two ways is one key.

Emails are trimmed and lower-cased; phone numbers become E.164 (``+14155550123``); customer
ids are trimmed. Every identity is normalized before it is stored or matched.
"""

from __future__ import annotations

import re
from typing import TypedDict

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

from compliance.models import IdentityType


class InvalidIdentity(ValueError):
    """The value cannot be an identity of that type. The message never repeats the value."""


class IdentityRef(TypedDict):
    type: str
    value: str


_email_validator = EmailValidator()
# Control characters, and lone surrogates, which no UTF-8 column can store.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
MAX_CUSTOMER_ID = 200


def normalize_email(raw: str) -> str:
    value = raw.strip().lower()
    if not value or len(value) > 254 or _CONTROL.search(value):
        raise InvalidIdentity("Not a valid email address.")
    try:
        _email_validator(value)
    except ValidationError:
        raise InvalidIdentity("Not a valid email address.") from None
    return value


def normalize_phone(raw: str, *, region: str | None = None) -> str:
    value = raw.strip()
    if not value or len(value) > 40 or _CONTROL.search(value):
        raise InvalidIdentity("Not a valid phone number.")
    # "00" is the international call prefix in most of the world; people write it inside
    # brackets as often as "+" ("(0044) 20 7946 0958"), so look past an opening bracket.
    unbracketed = value.lstrip("([ ")
    if unbracketed.startswith("00"):
        value = "+" + unbracketed[2:]
    region = region or getattr(settings, "PHONE_DEFAULT_REGION", None)
    try:
        parsed = phonenumbers.parse(value, None if value.startswith("+") else region)
    except phonenumbers.NumberParseException:
        raise InvalidIdentity(
            "Not a valid phone number; give it in international form, e.g. +44 20 7946 0958."
        ) from None
    if not phonenumbers.is_possible_number(parsed) or not phonenumbers.is_valid_number(parsed):
        raise InvalidIdentity("Not a valid phone number.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_customer_id(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > MAX_CUSTOMER_ID or _CONTROL.search(value):
        raise InvalidIdentity(f"A customer id is 1 to {MAX_CUSTOMER_ID} printable characters.")
    return value


_NORMALIZERS = {
    IdentityType.EMAIL: normalize_email,
    IdentityType.PHONE: normalize_phone,
    IdentityType.CUSTOMER_ID: normalize_customer_id,
}
IDENTITY_TYPES = tuple(t.value for t in IdentityType)


def normalize_identity(identity_type: str, raw: object) -> str:
    if identity_type not in _NORMALIZERS:
        raise InvalidIdentity(f"Unknown identity type; use one of: {', '.join(IDENTITY_TYPES)}.")
    if not isinstance(raw, str):
        raise InvalidIdentity("An identity value must be a string.")
    return _NORMALIZERS[identity_type](raw)


def parse_identity_ref(text: str) -> IdentityRef:
    """Parse ``type:value`` (``email:ana@example.com``, ``customer_id:C-1``)."""
    identity_type, sep, raw = text.partition(":")
    if not sep:
        raise InvalidIdentity(
            "An identity is written type:value, e.g. email:ana@example.com or customer_id:C-1."
        )
    identity_type = identity_type.strip().lower()
    return {"type": identity_type, "value": normalize_identity(identity_type, raw)}
