"""The processor's signature on OpenDSR callbacks and responses.

``X-OpenDSR-Signature`` is the base64 RSA signature (PKCS#1 v1.5) over the SHA-256 of the
raw body ("SHA256withRSA"), made with the key of the certificate published at the URL that
``/discovery`` names; ``X-OpenDSR-Processor-Domain`` is the domain that certificate is issued
to. The v1 names (``X-OpenGDPR-*``) carry the same values, for controllers still on OpenGDPR.

Production sets OPENDSR_PRIVATE_KEY and OPENDSR_CERTIFICATE. The embedded mode and tests
generate a key and a self-signed certificate once into OPENDSR_KEY_DIR (the specification
wants a CA-issued certificate; a self-signed one is only for trying it out).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.utils import timezone

MIN_KEY_BITS = 2048
GENERATED_CERTIFICATE_DAYS = 825
SIGNATURE_HEADERS = ("X-OpenDSR-Signature", "X-OpenGDPR-Signature")
DOMAIN_HEADERS = ("X-OpenDSR-Processor-Domain", "X-OpenGDPR-Processor-Domain")


class SigningUnavailable(Exception):
    """No usable key and certificate: say what to configure, never the key."""


@dataclass(frozen=True)
class ProcessorIdentity:
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    certificate_pem: bytes


_identities: dict[str, ProcessorIdentity] = {}
_lock = threading.Lock()


def processor_domain() -> str:
    configured = settings.OPENDSR_PROCESSOR_DOMAIN.strip()
    if configured:
        return configured.lower()
    host = urlsplit(settings.DSAR_PUBLIC_BASE_URL or "").hostname
    return (host or "localhost").lower()


def _generate(domain: str) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = timezone.now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=GENERATED_CERTIFICATE_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ) + certificate.public_bytes(serialization.Encoding.PEM)


def _generated_pair(domain: str) -> bytes:
    """Key and certificate in one file, so two processes starting together can never pair
    one's key with the other's certificate: the file is linked into place atomically and the
    loser uses the winner's."""
    directory = Path(settings.OPENDSR_KEY_DIR)
    path = directory / f"processor-{re.sub(r'[^a-z0-9.-]', '_', domain)}.pem"
    if path.exists():
        return path.read_bytes()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, _generate(domain))
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


def _load(key_pem: bytes, certificate_pem: bytes) -> ProcessorIdentity:
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except (ValueError, TypeError):
        raise SigningUnavailable(
            "OPENDSR_PRIVATE_KEY or OPENDSR_CERTIFICATE is not valid PEM."
        ) from None
    if not isinstance(private_key, rsa.RSAPrivateKey) or private_key.key_size < MIN_KEY_BITS:
        raise SigningUnavailable(
            f"OPENDSR_PRIVATE_KEY must be an RSA key of at least {MIN_KEY_BITS} bits."
        )
    if certificate.public_key().public_numbers() != private_key.public_key().public_numbers():
        raise SigningUnavailable("OPENDSR_CERTIFICATE is not the certificate of the key.")
    return ProcessorIdentity(
        private_key, certificate, certificate.public_bytes(serialization.Encoding.PEM)
    )


def processor_identity() -> ProcessorIdentity:
    key_pem = settings.OPENDSR_PRIVATE_KEY.encode()
    certificate_pem = settings.OPENDSR_CERTIFICATE.encode()
    domain = processor_domain()
    if not (key_pem and certificate_pem) and not settings.OPENDSR_GENERATE_CERTIFICATE:
        raise SigningUnavailable(
            "OpenDSR needs OPENDSR_PRIVATE_KEY and OPENDSR_CERTIFICATE (PEM) to sign."
        )
    cache_key = hashlib.sha256(key_pem + b"|" + certificate_pem + b"|" + domain.encode())
    found = _identities.get(cache_key.hexdigest())
    if found is not None:
        return found
    with _lock:
        if key_pem and certificate_pem:
            identity = _load(key_pem, certificate_pem)
        else:
            pair = _generated_pair(domain)
            identity = _load(pair, pair)  # each loader reads its own PEM block
        _identities[cache_key.hexdigest()] = identity
        return identity


def sign(body: bytes) -> str:
    """Base64 of the RSA PKCS#1 v1.5 signature over SHA-256 of ``body``."""
    signature = processor_identity().private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def signature_headers(body: bytes) -> dict[str, str]:
    """The OpenDSR and OpenGDPR signature and domain headers for a body."""
    signature = sign(body)
    domain = processor_domain()
    headers = dict.fromkeys(SIGNATURE_HEADERS, signature)
    headers.update(dict.fromkeys(DOMAIN_HEADERS, domain))
    return headers


def signature_verify(*, certificate_pem: bytes, body: bytes, signature: str) -> bool:
    """A controller's check of a callback (OpenDSR 8.8 step 4), with the certificate fetched
    from the URL ``/discovery`` names. Checking the certificate itself (issuer, domain,
    expiry) is the controller's TLS library's job and not done here."""
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            return False
        public_key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, UnicodeEncodeError):
        return False
    return True
