"""Behind a trusted reverse proxy the deployed server takes the customer's address from the
proxy's ``X-Forwarded-For`` (``FORWARDED_ALLOW_IPS``, compliance/gunicorn_worker.py), so the
portal's per-address limit on sign-in codes counts each customer's own address; from a peer
that is not trusted the header is ignored and the peer's own address counts. Over real HTTP
to uvicorn with the gunicorn worker's settings; the test's connections come from 127.0.0.1."""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlencode

import pytest

from tests.consent.asgi_support import LiveAsgi

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
COOKIE_RE = re.compile(r"csrftoken=([^;]+)")


@pytest.fixture
def per_address_limit(settings):
    settings.PORTAL_CODES_PER_IP_PER_HOUR = 2
    settings.PORTAL_CODES_PER_IDENTITY_PER_HOUR = 10


def ask_for_a_code(server: LiveAsgi, address: str, forwarded_for: str) -> int:
    """The status of a "send me a code" form post (302: sent, 429: limited), after the GET
    that gives the form's CSRF token; both through a proxy that says ``forwarded_for``."""
    proxy = {"X-Forwarded-For": forwarded_for}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", "/portal/sign-in/", headers=proxy)
        page = connection.getresponse()
        html = page.read().decode()
        cookie = COOKIE_RE.search(page.getheader("Set-Cookie", "")).group(1)
        form = urlencode({"identity": address, "csrfmiddlewaretoken": TOKEN_RE.search(html)[1]})
        connection.request(
            "POST",
            "/portal/sign-in/",
            body=form,
            headers={
                **proxy,
                "Cookie": f"csrftoken={cookie}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_behind_a_trusted_proxy_each_customer_address_has_its_own_limit(per_address_limit):
    server = LiveAsgi(threads=2, forwarded_allow_ips="127.0.0.1")
    try:
        statuses = [
            ask_for_a_code(server, f"person{n}@example.com", "203.0.113.7") for n in range(3)
        ]
        other = ask_for_a_code(server, "person9@example.com", "198.51.100.20, 127.0.0.1")
    finally:
        server.stop()
    assert statuses == [302, 302, 429]
    assert other == 302  # another customer, the same proxy


def test_from_a_peer_that_is_not_trusted_the_header_is_ignored(per_address_limit):
    server = LiveAsgi(threads=2, forwarded_allow_ips="192.0.2.1")
    try:
        statuses = [
            ask_for_a_code(server, f"person{n}@example.com", f"203.0.113.{n}") for n in range(3)
        ]
    finally:
        server.stop()
    assert statuses == [302, 302, 429]  # all counted against 127.0.0.1
