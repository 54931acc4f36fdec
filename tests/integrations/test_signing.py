"""Webhook signatures, checked the way a receiver is told to check them (docs/api.md)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.signing import (
    SignatureError,
    signature_compute,
    signature_headers,
    signature_verify,
)

SECRET = "whsec_unit_test"
NOW = 1_800_000_000


def signed(body: bytes, *, timestamp: int = NOW, secret: str = SECRET) -> dict:
    return signature_headers(secret=secret, event_id="evt-1", body=body, timestamp=timestamp)


def test_the_signature_is_an_hmac_of_timestamp_dot_body():
    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert signed(body)["X-Webhook-Signature"] == f"v1={expected}"
    assert signed(body)["X-Webhook-Timestamp"] == str(NOW)


def test_a_genuine_delivery_verifies():
    body = b'{"type":"erasure.requested"}'
    assert signature_verify(secret=SECRET, headers=signed(body), body=body, now=NOW) == "evt-1"


def test_header_names_are_matched_case_insensitively():
    body = b"{}"
    lowered = {k.lower(): v for k, v in signed(body).items()}
    assert signature_verify(secret=SECRET, headers=lowered, body=body, now=NOW) == "evt-1"


def test_it_rejects_a_changed_body():
    headers = signed(b'{"subject_id":"a"}')
    with pytest.raises(SignatureError) as caught:
        signature_verify(secret=SECRET, headers=headers, body=b'{"subject_id":"b"}', now=NOW)
    assert caught.value.reason == "mismatch"


def test_it_rejects_another_secret():
    body = b"{}"
    with pytest.raises(SignatureError) as caught:
        signature_verify(secret="whsec_other", headers=signed(body), body=body, now=NOW)
    assert caught.value.reason == "mismatch"


def test_it_rejects_a_re_dated_delivery():
    # An attacker who captured a delivery cannot move its timestamp: it is signed.
    body = b"{}"
    headers = signed(body)
    headers["X-Webhook-Timestamp"] = str(NOW + 1000)
    with pytest.raises(SignatureError) as caught:
        signature_verify(secret=SECRET, headers=headers, body=body, now=NOW + 1000)
    assert caught.value.reason == "mismatch"


def test_a_replay_after_the_tolerance_is_stale():
    body = b"{}"
    with pytest.raises(SignatureError) as caught:
        signature_verify(secret=SECRET, headers=signed(body), body=body, now=NOW + 301)
    assert caught.value.reason == "stale"


def test_a_replay_inside_the_tolerance_is_caught_by_the_seen_ids():
    body = b"{}"
    headers = signed(body)
    seen_ids: set[str] = set()

    def seen(event_id: str) -> bool:
        if event_id in seen_ids:
            return True
        seen_ids.add(event_id)
        return False

    signature_verify(secret=SECRET, headers=headers, body=body, now=NOW, seen=seen)
    with pytest.raises(SignatureError) as caught:
        signature_verify(secret=SECRET, headers=headers, body=body, now=NOW + 5, seen=seen)
    assert caught.value.reason == "replayed"


def test_missing_headers_are_refused():
    with pytest.raises(SignatureError) as caught:
        signature_verify(secret=SECRET, headers={}, body=b"{}", now=NOW)
    assert caught.value.reason == "missing"


def test_one_matching_signature_among_several_is_enough_during_a_rotation():
    body = b"{}"
    headers = signed(body)
    old = signature_compute(secret="whsec_old", timestamp=NOW, body=body)
    headers["X-Webhook-Signature"] = f"v1={old}, {headers['X-Webhook-Signature']}"
    assert signature_verify(secret=SECRET, headers=headers, body=body, now=NOW) == "evt-1"


@given(
    secret=st.text(min_size=1, max_size=40),
    body=st.binary(max_size=200),
    timestamp=st.integers(min_value=0, max_value=2**40),
    flip=st.integers(min_value=0, max_value=10_000),
)
def test_every_signed_body_verifies_and_any_changed_byte_does_not(secret, body, timestamp, flip):
    headers = signed(body, timestamp=timestamp, secret=secret)
    signature_verify(secret=secret, headers=headers, body=body, now=timestamp)
    if body:
        index = flip % len(body)
        tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        with pytest.raises(SignatureError):
            signature_verify(secret=secret, headers=headers, body=tampered, now=timestamp)
