"""Passwordless sign-in: codes by email, their limits, and what the pages give away."""

from __future__ import annotations

import logging
import re
import time

import pytest
from django.core.cache import cache

from compliance.models import AuditEvent, SubjectIdentity
from compliance.portal.services import (
    PortalIdentity,
    SignInCodeRejected,
    SignInRateLimited,
    _code_cache_key,
    sign_in_code_send,
    sign_in_code_verify,
)
from tests.factories import SubjectFactory
from tests.portal.conftest import ANA_EMAIL, code_from_outbox, sign_in

pytestmark = pytest.mark.django_db

CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_a_customer_signs_in_with_the_code_from_their_email(client, mailoutbox, ana):
    response = client.post("/portal/sign-in/", {"identity": "  Ana@Example.com "})
    assert response.status_code == 302
    assert response["Location"] == "/portal/sign-in/code/"
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [ANA_EMAIL]

    response = client.post("/portal/sign-in/code/", {"code": code_from_outbox(mailoutbox)})
    assert response.status_code == 302
    assert response["Location"] == "/"
    home = client.get("/")
    assert b"Your data" in home.content
    assert b"Sign out" in home.content
    assert client.session["portal_subject_id"] == str(ana.pk)


def test_the_identity_never_appears_in_a_url(client, mailoutbox, ana):
    response = client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    assert "ana" not in response["Location"]
    assert client.session["portal_pending_identity"] == {"type": "email", "value": ANA_EMAIL}


def test_signing_in_rotates_the_session_key(client, mailoutbox, ana):
    client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    key_before = client.session.session_key
    client.post("/portal/sign-in/code/", {"code": code_from_outbox(mailoutbox)})
    assert client.session.session_key != key_before
    assert client.session["portal_subject_id"] == str(ana.pk)


def test_a_known_and_an_unknown_address_get_the_same_pages(client, mailoutbox, ana):
    known = client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    known_page = client.get(known["Location"])
    client.cookies.clear()
    unknown = client.post("/portal/sign-in/", {"identity": "nobody@example.com"})
    unknown_page = client.get(unknown["Location"])

    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert known_page.status_code == unknown_page.status_code == 200
    assert CSRF_INPUT.sub(b"", known_page.content) == CSRF_INPUT.sub(b"", unknown_page.content)
    assert len(mailoutbox) == 1  # only the known address got an email


def test_a_wrong_code_for_an_unknown_address_reads_like_any_wrong_code(client, ana, mailoutbox):
    client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    wrong = _wrong(code_from_outbox(mailoutbox))
    known = client.post("/portal/sign-in/code/", {"code": wrong})
    client.cookies.clear()
    client.post("/portal/sign-in/", {"identity": "nobody@example.com"})
    unknown = client.post("/portal/sign-in/code/", {"code": wrong})
    assert known.status_code == unknown.status_code == 400
    assert CSRF_INPUT.sub(b"", known.content) == CSRF_INPUT.sub(b"", unknown.content)


def test_every_code_request_takes_the_same_minimum_time(settings, client, ana):
    settings.PORTAL_SIGN_IN_MIN_SECONDS = 0.3
    for identity in (ANA_EMAIL, "nobody@example.com"):
        started = time.monotonic()
        client.post("/portal/sign-in/", {"identity": identity})
        assert time.monotonic() - started >= 0.3


def test_the_right_code_is_refused_after_five_wrong_tries(client, mailoutbox, ana):
    client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    code = code_from_outbox(mailoutbox)
    for attempt in range(1, 6):
        response = client.post("/portal/sign-in/code/", {"code": _wrong(code)})
        assert response.status_code == 400
        assert "portal_subject_id" not in client.session
        if attempt < 5:
            assert f"Tries left: {5 - attempt}".encode() in response.content
    assert b"last try" in response.content

    response = client.post("/portal/sign-in/code/", {"code": code})
    assert response.status_code == 400
    assert "portal_subject_id" not in client.session
    assert b"Ask for a new code" in response.content


def test_five_tries_are_allowed_and_the_fifth_may_be_right(client, mailoutbox, ana):
    client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    code = code_from_outbox(mailoutbox)
    for _ in range(4):
        client.post("/portal/sign-in/code/", {"code": _wrong(code)})
    response = client.post("/portal/sign-in/code/", {"code": code})
    assert response.status_code == 302
    assert client.session["portal_subject_id"] == str(ana.pk)


def test_a_code_works_only_once(mailoutbox, ana):
    identity = PortalIdentity(type="email", value=ANA_EMAIL)
    sign_in_code_send(identity=identity, ip_address="192.0.2.1")
    code = code_from_outbox(mailoutbox)
    assert sign_in_code_verify(identity=identity, code=code) == ana
    with pytest.raises(SignInCodeRejected):
        sign_in_code_verify(identity=identity, code=code)


def test_a_new_code_replaces_the_previous_one(client, mailoutbox, ana):
    client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    first = code_from_outbox(mailoutbox)
    response = client.post("/portal/sign-in/new-code/")
    assert response.status_code == 302
    second = code_from_outbox(mailoutbox)
    assert len(mailoutbox) == 2
    if first != second:
        assert client.post("/portal/sign-in/code/", {"code": first}).status_code == 400
    assert client.post("/portal/sign-in/code/", {"code": second}).status_code == 302


def test_a_code_expires(settings, client, mailoutbox, ana):
    settings.PORTAL_CODE_TTL_SECONDS = 1
    client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    code = code_from_outbox(mailoutbox)
    time.sleep(1.5)
    response = client.post("/portal/sign-in/code/", {"code": code})
    assert response.status_code == 400
    assert b"expired" in response.content
    assert "portal_subject_id" not in client.session


def test_codes_are_kept_only_as_a_keyed_hash(client, mailoutbox, ana):
    client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    code = code_from_outbox(mailoutbox)
    key = _code_cache_key(PortalIdentity(type="email", value=ANA_EMAIL))
    entry = cache.get(key)
    assert entry["digest"] and code not in str(entry)
    assert ANA_EMAIL not in key and "ana" not in key


def test_sending_codes_to_one_address_stops_after_five_an_hour(client, mailoutbox, ana):
    for _ in range(5):
        assert client.post("/portal/sign-in/", {"identity": ANA_EMAIL}).status_code == 302
    response = client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    assert response.status_code == 429
    assert b"Too many codes" in response.content
    assert len(mailoutbox) == 5


def test_an_unknown_address_is_rate_limited_exactly_like_a_known_one(client, ana):
    for _ in range(5):
        assert client.post("/portal/sign-in/", {"identity": "x@example.com"}).status_code == 302
    assert client.post("/portal/sign-in/", {"identity": "x@example.com"}).status_code == 429


def test_one_ip_address_may_ask_for_twenty_codes_an_hour(client, ana):
    for n in range(20):
        response = client.post("/portal/sign-in/", {"identity": f"person{n}@example.com"})
        assert response.status_code == 302
    response = client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    assert response.status_code == 429
    other_ip = client.post("/portal/sign-in/", {"identity": ANA_EMAIL}, REMOTE_ADDR="198.51.100.7")
    assert other_ip.status_code == 302


def test_an_address_that_is_neither_email_nor_phone_is_refused_plainly(client, db):
    response = client.post("/portal/sign-in/", {"identity": "not an address"})
    assert response.status_code == 400
    assert b"country code" in response.content
    assert "portal_pending_identity" not in client.session


def test_the_code_page_without_a_pending_address_goes_back_to_sign_in(client, db):
    assert client.get("/portal/sign-in/code/")["Location"] == "/portal/sign-in/"
    assert client.post("/portal/sign-in/code/", {"code": "123456"}).status_code == 302


def test_signing_in_marks_the_email_verified_and_is_audited_without_the_address(
    client, mailoutbox, ana
):
    sign_in(client, mailoutbox, ANA_EMAIL)
    assert SubjectIdentity.objects.get(subject=ana, type="email").verified
    event = AuditEvent.objects.get(action="portal.signed_in")
    assert event.target_id == str(ana.pk)
    assert ANA_EMAIL not in str(event.detail)


def test_a_phone_sign_in_sends_the_code_to_the_email_on_record(client, mailoutbox, db):
    subject = SubjectFactory(identities={"email": "cy@example.com", "phone": "+447911123456"})
    client.post("/portal/sign-in/", {"identity": "+44 7911 123456"})
    assert mailoutbox[0].to == ["cy@example.com"]
    client.post("/portal/sign-in/code/", {"code": code_from_outbox(mailoutbox)})
    assert client.session["portal_subject_id"] == str(subject.pk)
    assert not SubjectIdentity.objects.get(subject=subject, type="phone").verified
    assert SubjectIdentity.objects.get(subject=subject, type="email").verified


def test_a_phone_without_an_email_on_record_sends_nothing_and_logs_no_number(
    client, mailoutbox, caplog, db
):
    SubjectFactory(identities={"phone": "+4915112345678"})
    with caplog.at_level(logging.WARNING, logger="compliance.portal"):
        response = client.post("/portal/sign-in/", {"identity": "+4915112345678"})
    assert response.status_code == 302
    assert mailoutbox == []
    assert "SMS sending not configured" in caplog.text
    assert "12345678" not in caplog.text


def test_a_failing_mail_server_shows_the_usual_page_and_logs_no_address(
    settings, client, caplog, ana
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 1
    with caplog.at_level(logging.ERROR, logger="compliance.portal"):
        response = client.post("/portal/sign-in/", {"identity": ANA_EMAIL})
    assert response.status_code == 302
    assert "could not be sent" in caplog.text
    assert ANA_EMAIL not in caplog.text


def test_signing_out_ends_the_session(ana_client):
    response = ana_client.post("/portal/sign-out/")
    assert response.status_code == 302
    assert "portal_subject_id" not in ana_client.session
    assert ana_client.get("/portal/conversations/")["Location"] == "/portal/sign-in/"


def test_signing_out_needs_a_post(ana_client):
    assert ana_client.get("/portal/sign-out/").status_code == 405
    assert "portal_subject_id" in ana_client.session


def test_the_session_ends_after_a_quiet_spell(settings, ana_client):
    settings.PORTAL_SESSION_IDLE_SECONDS = 1
    assert ana_client.get("/portal/conversations/").status_code == 200
    time.sleep(1.5)
    response = ana_client.get("/portal/conversations/")
    assert response.status_code == 302
    assert response["Location"] == "/portal/sign-in/"
    page = ana_client.get(response["Location"])
    assert b"nothing happened for a while" in page.content
    assert "portal_subject_id" not in ana_client.session


def test_activity_keeps_the_session_alive(settings, ana_client):
    settings.PORTAL_SESSION_IDLE_SECONDS = 2
    for _ in range(3):
        time.sleep(0.8)
        assert ana_client.get("/portal/conversations/").status_code == 200


def test_the_session_cookie_expires_with_the_idle_timeout(settings, client, mailoutbox, ana):
    sign_in(client, mailoutbox, ANA_EMAIL)
    assert client.session.get_expiry_age() == settings.PORTAL_SESSION_IDLE_SECONDS


def test_an_erased_customer_is_signed_out(ana_client, ana):
    ana.delete()
    response = ana_client.get("/portal/conversations/")
    assert response["Location"] == "/portal/sign-in/"


def test_the_service_refuses_a_sixth_code_within_the_hour_for_the_same_address(ana):
    identity = PortalIdentity(type="email", value=ANA_EMAIL)
    for n in range(5):
        sign_in_code_send(identity=identity, ip_address=f"192.0.2.{n}")
    with pytest.raises(SignInRateLimited):
        sign_in_code_send(identity=identity, ip_address="192.0.2.99")
