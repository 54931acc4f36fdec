"""Kantara Consent Receipts v1.1, signed as JWTs and verified with the published JWKS."""

from __future__ import annotations

import json
import stat

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from consent import receipts
from consent.models import ConsentEvent
from tests.consent.helpers import assert_error
from tests.factories import SystemFactory

pytestmark = pytest.mark.django_db

REQUIRED = {
    "version",
    "jurisdiction",
    "consentTimestamp",
    "collectionMethod",
    "consentReceiptID",
    "piiPrincipalId",
    "piiControllers",
    "policyUrl",
    "services",
    "sensitive",
    "spiCat",
}
CONTROLLER_FIELDS = {"piiController", "contact", "address", "email", "phone"}
PURPOSE_FIELDS = {
    "purpose",
    "consentType",
    "purposeCategory",
    "piiCategory",
    "termination",
    "thirdPartyDisclosure",
}


def record(writer, **body) -> str:
    response = writer.post("/api/v1/consent/events/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["receipt_id"]


def verify(client, token: str) -> dict:
    """Verify as an outsider would: only with what /.well-known/jwks.json publishes."""
    published = client.get("/.well-known/jwks.json")
    assert published.status_code == 200
    keys = {k["kid"]: k for k in published.json()["keys"]}
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    public_key = jwt.PyJWK(keys[header["kid"]]).key
    return jwt.decode(token, public_key, algorithms=["RS256"])


def test_a_grant_receipt_verifies_with_the_published_key_and_has_every_field(
    client, writer, reader, purposes, eu_customer
):
    purposes["third-party-sharing"].systems.add(SystemFactory(slug="shop", name="Shop assistant"))
    receipt_id = record(
        writer, subject="customer_id:EU-1", purpose="third-party-sharing", action="grant"
    )
    response = reader.get(f"/api/v1/consent/receipts/{receipt_id}")
    assert response.status_code == 200, response.content
    body = response.json()
    claims = verify(client, body["jwt"])
    assert claims == body["receipt"]
    assert set(claims) >= REQUIRED
    assert claims["version"] == "KI-CR-v1.1.0"
    assert claims["jurisdiction"] == "EU"
    event = ConsentEvent.objects.get(receipt_id=receipt_id)
    assert claims["consentTimestamp"] == int(event.occurred_at.timestamp())
    assert claims["collectionMethod"] == "Recorded through the controller's API"
    assert claims["consentReceiptID"] == receipt_id == body["consentReceiptID"]
    assert claims["piiPrincipalId"] == str(eu_customer.pk)
    assert "eva@example.de" not in body["jwt"] and "eva@example.de" not in json.dumps(claims)
    [controller] = claims["piiControllers"]
    assert set(controller) >= CONTROLLER_FIELDS
    assert all(controller[f] for f in CONTROLLER_FIELDS)
    assert {"streetAddress", "addressCountry"} <= set(controller["address"])
    assert claims["policyUrl"].startswith("https://")
    [service] = claims["services"]
    assert service["service"] == "Shop assistant"
    [purpose] = service["purposes"]
    assert set(purpose) >= PURPOSE_FIELDS
    assert purpose["purpose"] == purposes["third-party-sharing"].name
    assert purpose["consentType"] == "EXPLICIT"
    assert purpose["thirdPartyDisclosure"] is True
    assert purpose["thirdPartyName"] == "Partner shops"
    assert isinstance(purpose["purposeCategory"], list) and purpose["purposeCategory"]
    assert isinstance(purpose["piiCategory"], list) and purpose["piiCategory"]
    assert claims["sensitive"] is False
    assert claims["spiCat"] == []
    assert claims["extensions"]["action"] == "grant"
    assert claims["extensions"]["noticeVersion"] == 1


def test_a_withdrawal_has_a_receipt_too_and_sensitive_purposes_say_so(
    client, writer, reader, purposes, ca_customer
):
    receipt_id = record(
        writer, subject="customer_id:CA-1", purpose="location-offers", action="withdraw"
    )
    claims = verify(client, reader.get(f"/api/v1/consent/receipts/{receipt_id}").json()["jwt"])
    assert claims["extensions"]["action"] == "withdraw"
    assert claims["jurisdiction"] == "US-CA"
    assert claims["sensitive"] is True
    assert "thirdPartyName" not in claims["services"][0]["purposes"][0]


def test_a_tampered_receipt_fails_verification(client, writer, reader, purposes, eu_customer):
    receipt_id = record(writer, subject="customer_id:EU-1", purpose="marketing", action="grant")
    token = reader.get(f"/api/v1/consent/receipts/{receipt_id}").json()["jwt"]
    header, _payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["extensions"]["action"] = "withdraw"
    forged_payload = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verify(client, f"{header}.{forged_payload}.{signature}")


def test_the_key_is_generated_once_into_var(settings, tmp_path):
    settings.CONSENT_RECEIPT_PRIVATE_KEY = ""
    settings.CONSENT_RECEIPT_KEY_FILE = tmp_path / "receipt_signing_key.pem"
    first = receipts.signing_key()
    path = settings.CONSENT_RECEIPT_KEY_FILE
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    receipts._keys.clear()
    assert receipts.signing_key().kid == first.kid  # read back, not generated again
    assert [p.name for p in tmp_path.iterdir()] == ["receipt_signing_key.pem"]


def test_a_configured_key_is_used_and_published(settings, client):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings.CONSENT_RECEIPT_PRIVATE_KEY = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    [published] = client.get("/.well-known/jwks.json").json()["keys"]
    numbers = key.public_key().public_numbers()
    assert jwt.utils.base64url_decode(published["n"]) == numbers.n.to_bytes(256, "big")
    assert {published["kty"], published["alg"], published["use"]} == {"RSA", "RS256", "sig"}
    assert published["kid"]


def pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def pem_public(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_a_receipt_signed_before_a_rotation_still_verifies_with_the_published_keys(
    settings, client, writer, reader, purposes, eu_customer
):
    old, new, older = (rsa.generate_private_key(65537, 2048) for _ in range(3))
    settings.CONSENT_RECEIPT_PRIVATE_KEY = pem_private(old)
    receipt_id = record(writer, subject="customer_id:EU-1", purpose="marketing", action="grant")
    held = reader.get(f"/api/v1/consent/receipts/{receipt_id}").json()  # what the customer keeps
    old_kid = jwt.get_unverified_header(held["jwt"])["kid"]

    # The rotation: a new signing key; the old one's public half (and one retired earlier).
    settings.CONSENT_RECEIPT_PRIVATE_KEY = pem_private(new)
    settings.CONSENT_RECEIPT_RETIRED_KEYS = pem_public(old) + "\n" + pem_public(older)
    published = [key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]]
    again = reader.get(f"/api/v1/consent/receipts/{receipt_id}").json()
    new_kid = jwt.get_unverified_header(again["jwt"])["kid"]

    assert new_kid != old_kid
    assert published[0] == new_kid and old_kid in published and len(published) == 3
    assert verify(client, held["jwt"])["consentReceiptID"] == receipt_id
    assert verify(client, again["jwt"])["consentReceiptID"] == receipt_id
    # A key given as both current and retired is published once.
    settings.CONSENT_RECEIPT_RETIRED_KEYS = pem_public(new)
    assert len(client.get("/.well-known/jwks.json").json()["keys"]) == 1


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("CONSENT_RECEIPT_PRIVATE_KEY", "not a key", "not an unencrypted private key"),
        ("CONSENT_RECEIPT_RETIRED_KEYS", "not a key", "PEM blocks only"),
        ("CONSENT_RECEIPT_RETIRED_KEYS", "private", "is a private key"),
    ],
)
def test_a_malformed_key_setting_makes_the_key_unavailable_not_a_500(
    settings, client, writer, reader, purposes, eu_customer, variable, value, words
):
    receipt_id = record(writer, subject="customer_id:EU-1", purpose="marketing", action="grant")
    if value == "private":
        value = pem_private(rsa.generate_private_key(65537, 2048))
    setattr(settings, variable, value)
    published = client.get("/.well-known/jwks.json")
    assert published.status_code == 503
    assert words in published.json()["error"]["message"]
    assert value not in published.json()["error"]["message"]
    receipt = reader.get(f"/api/v1/consent/receipts/{receipt_id}")
    # The signing key alone signs receipts: a bad retired key leaves them available.
    assert receipt.status_code == (503 if variable == "CONSENT_RECEIPT_PRIVATE_KEY" else 200)


def test_without_a_key_in_production_receipts_are_unavailable_not_a_500(
    settings, client, writer, reader, purposes, eu_customer
):
    receipt_id = record(writer, subject="customer_id:EU-1", purpose="marketing", action="grant")
    settings.CONSENT_RECEIPT_PRIVATE_KEY = ""
    settings.CONSENT_RECEIPT_GENERATE_KEY = False
    error = assert_error(reader.get(f"/api/v1/consent/receipts/{receipt_id}"), 503)
    assert "CONSENT_RECEIPT_PRIVATE_KEY" in error["message"]
    assert client.get("/.well-known/jwks.json").status_code == 503


def test_an_unknown_receipt_is_a_404(reader, purposes):
    assert_error(reader.get("/api/v1/consent/receipts/00000000-0000-4000-8000-000000000000"), 404)


def test_a_key_without_consent_read_is_refused(make_api, writer, purposes, eu_customer):
    receipt_id = record(writer, subject="customer_id:EU-1", purpose="marketing", action="grant")
    assert_error(writer.get(f"/api/v1/consent/receipts/{receipt_id}"), 403)
    assert_error(make_api("dsar:read").get(f"/api/v1/consent/receipts/{receipt_id}"), 403)
