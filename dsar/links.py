"""Signed, expiring download links for export packages and erasure certificates.

A link carries the request id and the subject's keyed reference, signed with SECRET_KEY
(django.core.signing) and time-stamped: it works for that request of that subject only,
and only until it expires. Nothing in it identifies the person."""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.urls import reverse

from dsar.models import DataSubjectRequest

EXPORT_SALT = "dsar.download.export"
CERTIFICATE_SALT = "dsar.download.certificate"


class LinkInvalid(Exception):
    """Expired, tampered with, or for another request or subject."""


def _token(request: DataSubjectRequest, salt: str) -> str:
    return signing.dumps({"r": str(request.pk), "s": request.subject_ref}, salt=salt)


def _absolute(path: str) -> str:
    base = settings.DSAR_PUBLIC_BASE_URL.rstrip("/")
    return f"{base}{path}" if base else path


def download_token(request: DataSubjectRequest) -> str:
    return _token(request, EXPORT_SALT)


def download_url(request: DataSubjectRequest, *, absolute: bool = False) -> str:
    path = reverse("api-dsar-download", args=[request.pk]) + f"?token={download_token(request)}"
    return _absolute(path) if absolute else path


def certificate_token(request: DataSubjectRequest) -> str:
    return _token(request, CERTIFICATE_SALT)


def certificate_url(request: DataSubjectRequest, *, absolute: bool = False) -> str:
    path = (
        reverse("api-dsar-certificate", args=[request.pk]) + f"?token={certificate_token(request)}"
    )
    return _absolute(path) if absolute else path


def _check(request: DataSubjectRequest, token: str, salt: str, max_age_days: int) -> None:
    try:
        payload = signing.loads(token, salt=salt, max_age=max_age_days * 86400)
    except signing.BadSignature:  # SignatureExpired is a BadSignature too
        raise LinkInvalid() from None
    if not isinstance(payload, dict):
        raise LinkInvalid()
    if payload.get("r") != str(request.pk) or payload.get("s") != request.subject_ref:
        raise LinkInvalid()


def download_check(request: DataSubjectRequest, token: str) -> None:
    _check(request, token, EXPORT_SALT, settings.DSAR_EXPORT_LINK_DAYS)


def certificate_check(request: DataSubjectRequest, token: str) -> None:
    _check(request, token, CERTIFICATE_SALT, settings.DSAR_CERTIFICATE_LINK_DAYS)
