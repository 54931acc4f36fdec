"""Sending one webhook over HTTP, with the standard library.

Redirects are never followed: a receiver that moved must be re-subscribed, and a redirect
must not be able to carry signed personal data to another host. Targets are http(s) only,
and unless WEBHOOK_ALLOW_PRIVATE_TARGETS is set, never a loopback, private or link-local
address (a subscription must not be a way to reach this service's own network).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

USER_AGENT = "privacy-compliance-webhooks/1"


@dataclass(frozen=True)
class SendResult:
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class TargetRefused(Exception):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx code


_opener = urllib.request.build_opener(_NoRedirect)


def url_problem(url: str) -> str:
    """Why ``url`` cannot be a webhook target, or "" if it can (before any DNS lookup)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "The URL is not valid."
    if parts.scheme not in ("http", "https"):
        return "Only http and https URLs can receive webhooks."
    if not parts.hostname:
        return "The URL has no host."
    if parts.username or parts.password:
        return "Put no credentials in the URL; verify the signature instead."
    if parts.fragment:
        return "The URL must not have a fragment."
    return ""


def _check_address(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise TargetRefused("the host name does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_reserved
            or address.is_unspecified
        ):
            raise TargetRefused("the host resolves to a private address")


def webhook_send(
    *, url: str, body: bytes, headers: dict, timeout: float, allow_private: bool
) -> SendResult:
    """POST ``body``; never raises for network trouble, returns what happened instead."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    problem = url_problem(url)
    if problem:
        return SendResult(None, problem, 0)
    parts = urlsplit(url)
    try:
        if not allow_private:
            _check_address(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        )
        with _opener.open(request, timeout=timeout) as response:
            # Read a little so keep-alive servers see a finished exchange; never store it.
            response.read(1024)
            return SendResult(response.status, "", elapsed())
    except urllib.error.HTTPError as exc:
        exc.close()
        error = "redirects are not followed" if 300 <= exc.code < 400 else f"HTTP {exc.code}"
        return SendResult(exc.code, error, elapsed())
    except TargetRefused as exc:
        return SendResult(None, f"refused: {exc}", elapsed())
    except TimeoutError:
        return SendResult(None, "timed out", elapsed())
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return SendResult(None, "timed out", elapsed())
        if isinstance(reason, ConnectionRefusedError):
            return SendResult(None, "connection refused", elapsed())
        return SendResult(None, f"connection failed ({type(reason).__name__})", elapsed())
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # ConnectionResetError, RemoteDisconnected, a malformed status line, etc.
        return SendResult(None, f"connection failed ({type(exc).__name__})", elapsed())
