"""Kantara Consent Receipts v1.1, signed as JWTs (RS256), and the public key as a JWKS.

The signing key comes from ``CONSENT_RECEIPT_PRIVATE_KEY`` (PEM). In the embedded mode and in
tests, when it is unset, one is generated once into ``var/receipt_signing_key.pem``. The key
id is the RFC 7638 thumbprint of the public key, so a rotated key gets a new id by itself.

Rotation: the new private key goes into ``CONSENT_RECEIPT_PRIVATE_KEY`` and the old key's
public half into ``CONSENT_RECEIPT_RETIRED_KEYS``. Receipts are signed with the current key
only (asking for one again gives it signed anew), and the JWKS publishes the current key and
the retired ones, so a receipt a customer was given before the rotation still verifies by
its ``kid``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET
from jwt.algorithms import RSAAlgorithm

from compliance.models import Jurisdiction
from consent import receipt_keys
from consent.models import ConsentAction, ConsentEvent, ConsentSource

VERSION = "KI-CR-v1.1.0"
ALGORITHM = "RS256"
MIN_KEY_BITS = receipt_keys.MIN_KEY_BITS

COLLECTION_METHODS = {
    ConsentSource.PORTAL: "Privacy portal web form",
    ConsentSource.API: "Recorded through the controller's API",
    ConsentSource.PLUGIN: "Chatbot plugin dialogue",
    ConsentSource.ADMIN: "Recorded by the data protection officer",
    ConsentSource.GPC: "Global Privacy Control browser signal",
}
# Kantara asks for a jurisdiction code; ours are regions of law, mapped to ISO 3166 codes.
JURISDICTION_CODES = {
    Jurisdiction.EU: "EU",
    Jurisdiction.UK: "GB",
    Jurisdiction.US_CA: "US-CA",
}
TERMINATION = (
    "Until the customer withdraws it, objects or opts out, which they can do at any time "
    "and as easily as they gave it (GDPR Art. 7(3)); withdrawal does not affect processing "
    "before it."
)


class ReceiptSigningUnavailable(Exception):
    """No signing key is configured (production without CONSENT_RECEIPT_PRIVATE_KEY)."""


@dataclass(frozen=True)
class SigningKey:
    private_key: rsa.RSAPrivateKey
    kid: str
    public_jwk: dict


_keys: dict[str, SigningKey] = {}
_lock = threading.Lock()


def _generated_pem(path: Path) -> str:
    """Generate the key once; concurrent first starts agree on one file (link is atomic and
    refuses to overwrite)."""
    if path.exists():
        return path.read_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process generated it first: use theirs
    finally:
        tmp.unlink()
    return path.read_text()


def _thumbprint(jwk: dict) -> str:
    members = {name: jwk[name] for name in ("e", "kty", "n")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def signing_key() -> SigningKey:
    pem = settings.CONSENT_RECEIPT_PRIVATE_KEY
    source = "setting"
    if not pem:
        if not settings.CONSENT_RECEIPT_GENERATE_KEY:
            raise ReceiptSigningUnavailable(
                "Consent receipts cannot be signed: set CONSENT_RECEIPT_PRIVATE_KEY to an RSA "
                "private key in PEM."
            )
        source = str(settings.CONSENT_RECEIPT_KEY_FILE)
    cache_key = f"{source}:{hashlib.sha256(pem.encode()).hexdigest()}"
    found = _keys.get(cache_key)
    if found is not None:
        return found
    with _lock:
        if not pem:
            pem = _generated_pem(Path(settings.CONSENT_RECEIPT_KEY_FILE))
        try:
            private_key = receipt_keys.private_key(pem)
        except ValueError as exc:  # checked at start-up too (compliance/settings.py)
            raise ReceiptSigningUnavailable(str(exc)) from None
        public_jwk = _public_jwk(private_key.public_key())
        key = SigningKey(private_key, public_jwk["kid"], public_jwk)
        _keys[cache_key] = key
        return key


def _public_jwk(public_key: rsa.RSAPublicKey) -> dict:
    jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    return {**jwk, "kid": _thumbprint(jwk), "use": "sig", "alg": ALGORITHM}


def retired_jwks() -> list[dict]:
    """The public keys of ``CONSENT_RECEIPT_RETIRED_KEYS``, which verify the receipts
    signed before a rotation."""
    try:
        return _retired_jwks(settings.CONSENT_RECEIPT_RETIRED_KEYS)
    except ValueError as exc:  # checked at start-up too
        raise ReceiptSigningUnavailable(str(exc)) from None


@functools.lru_cache(maxsize=4)
def _retired_jwks(pems: str) -> list[dict]:
    return [_public_jwk(key) for key in receipt_keys.public_keys(pems)]


def jwks() -> dict:
    """The current key first, then the retired ones (each once)."""
    keys = [signing_key().public_jwk]
    for jwk in retired_jwks():
        if all(jwk["kid"] != published["kid"] for published in keys):
            keys.append(jwk)
    return {"keys": keys}


def _controller() -> dict:
    c = settings.CONSENT_CONTROLLER
    return {
        "piiController": c["name"],
        "onBehalf": False,
        "contact": c["contact"],
        "address": {
            "streetAddress": c["street"],
            "addressLocality": c["locality"],
            "postalCode": c["postal_code"],
            "addressCountry": c["country"],
        },
        "email": c["email"],
        "phone": c["phone"],
        "piiControllerUrl": c["url"],
    }


def receipt_build(event: ConsentEvent) -> dict:
    """The receipt's claims: every field Kantara CR v1.1 requires, plus JWT ``iat``/``iss``/
    ``jti`` and an ``extensions`` object saying what the customer did (the spec has no field
    for a withdrawal or an opt-out). Identifies the customer by the subject's id only."""
    purpose = event.purpose
    categories = list(purpose.data_categories.all())
    sensitive_categories = sorted(c.name for c in categories if c.sensitive)
    sensitive = purpose.sensitive or bool(sensitive_categories)
    third_party = bool(purpose.third_party_name)
    kantara_purpose = {
        "purpose": purpose.name,
        "purposeCategory": [purpose.receipt_category],
        "consentType": "EXPLICIT",
        "piiCategory": sorted(c.name for c in categories) or ["Not specified"],
        "primaryPurpose": False,
        "termination": TERMINATION,
        "thirdPartyDisclosure": third_party,
    }
    if third_party:
        kantara_purpose["thirdPartyName"] = purpose.third_party_name
    systems = sorted(s.name for s in purpose.systems.all())
    services = [
        {"service": name, "purposes": [kantara_purpose]}
        for name in (systems or [settings.CONSENT_CONTROLLER["service"]])
    ]
    controller = settings.CONSENT_CONTROLLER
    return {
        "version": VERSION,
        "jurisdiction": JURISDICTION_CODES.get(event.jurisdiction, controller["country"]),
        "consentTimestamp": int(event.occurred_at.timestamp()),
        "collectionMethod": COLLECTION_METHODS[ConsentSource(event.source)],
        "consentReceiptID": str(event.receipt_id),
        "language": "en",
        "piiPrincipalId": str(event.subject_id),
        "piiControllers": [_controller()],
        "policyUrl": controller["policy_url"],
        "services": services,
        "sensitive": sensitive,
        "spiCat": sensitive_categories,
        "iss": controller["url"],
        "iat": int(timezone.now().timestamp()),
        "jti": str(event.receipt_id),
        "extensions": {
            "action": ConsentAction(event.action).value,
            "purposeSlug": purpose.slug,
            "noticeVersion": event.notice.version if event.notice_id else None,
            "source": event.source,
        },
    }


@dataclass(frozen=True)
class SignedReceipt:
    jwt: str
    claims: dict
    kid: str


def receipt_issue(event: ConsentEvent) -> SignedReceipt:
    """Build and sign an event's receipt. Raises ReceiptSigningUnavailable without a key."""
    key = signing_key()
    claims = receipt_build(event)
    token = jwt.encode(
        claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"}
    )
    return SignedReceipt(token, claims, key.kid)


@require_GET
@cache_control(public=True, max_age=3600)
def jwks_json(request):
    """``/.well-known/jwks.json``: the public keys that verify consent receipts."""
    try:
        return JsonResponse(jwks())
    except ReceiptSigningUnavailable as exc:
        return JsonResponse(
            {"error": {"code": "unavailable", "message": str(exc), "errors": []}}, status=503
        )
