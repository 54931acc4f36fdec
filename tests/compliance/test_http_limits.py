"""The deployed server refuses an oversized request head (``compliance.http_limits``) before
the application sees it, as gunicorn's own workers did, and one that does not arrive in
time; it serves everything else as before: requests sent over real sockets to uvicorn with
the gunicorn worker's settings."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from compliance import http_limits
from compliance.http_limits import MAX_HEAD_BYTES, MAX_HEADER_FIELDS, MAX_TARGET_BYTES
from tests.consent.asgi_support import LiveAsgi


@pytest.fixture(scope="module")
def server():
    live = LiveAsgi(threads=2)  # /healthz reads no database
    yield live
    live.stop()


def exchange(server: LiveAsgi, *pieces: bytes, pause: float = 0.0) -> bytes:
    """Send ``pieces`` (with ``pause`` seconds between them) on one connection and read
    until the server closes it: each request here ends with ``Connection: close`` or is
    refused, which closes it too."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # refused mid-way: the answer is already there to read
            time.sleep(pause)
        received = b""
        while chunk := _recv(sock):
            received += chunk
        return received


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def head(target: str = "/healthz", fields: list[tuple[str, str]] | None = None) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in fields or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_a_head_within_the_limits_is_served(server):
    fields = [(f"X-Note-{i}", "n" * 200) for i in range(MAX_HEADER_FIELDS - 3)]
    request = head("/healthz?" + "q" * (MAX_TARGET_BYTES - 100), fields)
    assert len(request) < MAX_HEAD_BYTES
    assert status(exchange(server, request)) == 200


def test_an_oversized_header_field_is_refused_with_431(server, caplog):
    secret = "customer-777-" + "x" * MAX_HEAD_BYTES
    with caplog.at_level(logging.WARNING, logger="uvicorn.error"):
        response = exchange(server, head(fields=[("X-Big", secret)]))
    assert status(response) == 431
    assert response.endswith(b"Request header fields too large.")
    assert b"connection: close" in response.lower()
    assert "customer-777" not in caplog.text  # nothing of the request reaches the log
    # The worker goes on serving.
    assert status(exchange(server, head())) == 200


def test_a_head_that_grows_over_many_reads_is_refused(server):
    # A slow client that never ends its head: the server counts across reads and stops it
    # at the limit, not when the client stops sending.
    start = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
    pieces = [start] + [b"X-Slow: " + b"s" * 1000 + b"\r\n"] * (MAX_HEAD_BYTES // 1000 + 5)
    assert status(exchange(server, *pieces, pause=0.002)) == 431


def test_too_many_header_fields_are_refused_with_431(server):
    fields = [(f"X-F{i}", "1") for i in range(MAX_HEADER_FIELDS + 1)]
    response = exchange(server, head(fields=fields))
    assert status(response) == 431
    assert response.endswith(b"Too many request header fields.")


def test_an_overlong_target_is_refused_with_414(server):
    response = exchange(server, head("/healthz?" + "q" * MAX_TARGET_BYTES))
    assert status(response) == 414
    assert response.endswith(b"Request target too long.")


def test_a_body_is_not_counted_as_head(server):
    # A large body in the same read as its head, and a head whose blank line is split over
    # two reads: the body is the application's (the API answers 401 without a key), never 431.
    body = b'{"note": "%s"}' % (b"b" * (4 * MAX_HEAD_BYTES))
    request = (
        b"POST /api/v1/consent/events/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    assert status(exchange(server, request + body)) == 401
    assert status(exchange(server, request[:-1], request[-1:] + body, pause=0.05)) == 401


def test_pipelined_requests_on_one_connection_are_each_served(server):
    keep = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    response = exchange(server, keep + keep + head())
    assert response.count(b"HTTP/1.1 200 OK") == 3


# A head that does not arrive in time. The limit is made short here; the server reads it
# for each new connection.


@pytest.fixture
def quick_head_limit(monkeypatch):
    monkeypatch.setattr(http_limits, "HEAD_TIMEOUT_SECONDS", 0.6)


def test_a_connection_that_sends_nothing_is_closed_with_408(server, quick_head_limit):
    started = time.monotonic()
    response = exchange(server)  # connects and waits for the server to close
    assert status(response) == 408
    assert response.endswith(b"The request's head did not arrive in time.")
    assert time.monotonic() - started < 5


def test_a_head_that_stops_half_way_is_closed_with_408(server, quick_head_limit):
    assert status(exchange(server, b"GET /healthz HTTP/1.1\r\nHost: loc")) == 408


def test_a_slow_head_that_ends_in_time_is_served(server, quick_head_limit):
    pieces = [b"GET /healthz HTTP/1.1\r\n", b"Host: localhost\r\n", b"Connection: close\r\n\r\n"]
    assert status(exchange(server, *pieces, pause=0.05)) == 200


def test_each_request_on_a_kept_connection_has_its_own_time(server, quick_head_limit):
    keep = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    # The first request is answered, the connection kept; the second head stops half way.
    response = exchange(server, keep, b"GET /healthz HTTP/1.1\r\n", pause=0.8)
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert response.count(b"HTTP/1.1 408 Request Timeout") == 1


# One write per response (compliance/http_writes.py).


def _write_calls() -> int:
    """Write system calls this process has made (``syscw``: write and writev, which
    uvloop's sockets use; the test's own client sends with send(), not counted)."""
    with open("/proc/self/io") as io:
        return int(next(line for line in io if line.startswith("syscw:")).split()[1])


def _writes_for_responses(server: LiveAsgi, requests: int) -> int:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        reader = sock.makefile("rb")
        keep = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"

        def one() -> None:
            sock.sendall(keep)
            length = 0
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)

        one()  # the connection and the application warmed up
        before = _write_calls()
        for _ in range(requests):
            one()
        return _write_calls() - before


def test_a_response_goes_out_in_one_write(server):
    # Against uvicorn's own protocol in the same process: the same requests, the same other
    # writes (the Django thread waking the loop), one write more per response there.
    plain = LiveAsgi(threads=2, http="httptools")
    try:
        uncorked = _writes_for_responses(plain, 200)
    finally:
        plain.stop()
    corked = _writes_for_responses(server, 200)
    assert uncorked - corked >= 150, (uncorked, corked)
