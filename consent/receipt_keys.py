"""Reading the consent receipts' keys from their settings: the signing key, an RSA private
key in PEM, and the retired keys, RSA public keys in PEM, one after the other, that still
verify the receipts signed before a rotation. No Django here: the settings module checks
the variables with these at start-up, and ``consent.receipts`` loads the keys with them.

Errors are ``ValueError`` with a sentence that names the variable and never quotes it.
"""

from __future__ import annotations

import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

MIN_KEY_BITS = 2048
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


def private_key(
    pem: str, *, name: str = "CONSENT_RECEIPT_PRIVATE_KEY", check_primes: bool = True
) -> rsa.RSAPrivateKey:
    """The key of ``pem``. ``check_primes=False`` only reads it: the check of an RSA key's
    numbers takes about 85 ms for 3,072 bits, too much for every process's start-up, and
    the key that signs is loaded with it once per process."""
    try:
        key = serialization.load_pem_private_key(
            pem.strip().encode(), password=None, unsafe_skip_rsa_key_validation=not check_primes
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(
            f"{name} is not an unencrypted private key in PEM "
            "(-----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY-----)."
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_KEY_BITS:
        raise ValueError(f"{name} must be an RSA key of at least {MIN_KEY_BITS} bits.")
    return key


def public_keys(pems: str, *, name: str = "CONSENT_RECEIPT_RETIRED_KEYS") -> list[rsa.RSAPublicKey]:
    """Every PEM block of ``pems``, each an RSA public key; empty text, no keys."""
    text = pems.strip()
    blocks = list(_PEM_BLOCK.finditer(text))
    outside = _PEM_BLOCK.sub("", text).strip()
    if outside or (text and not blocks):
        raise ValueError(f"{name} must hold PEM blocks only, one per retired public key.")
    keys = []
    for number, block in enumerate(blocks, start=1):
        if "PRIVATE" in block.group(1):
            raise ValueError(
                f"{name}: block {number} is a private key; give only the public key of a "
                "retired key (its private key is no longer needed)."
            )
        try:
            key = serialization.load_pem_public_key(block.group(0).encode())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError(f"{name}: block {number} is not a public key in PEM.") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError(f"{name}: block {number} is not an RSA public key.")
        keys.append(key)
    return keys
