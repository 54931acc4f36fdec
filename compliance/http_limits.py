"""Limits on a request's head for the deployed server's HTTP parser.

gunicorn's own workers refuse an over-long request line or too many or too large header
fields (``limit_request_line``, ``limit_request_fields``, ``limit_request_field_size``);
under uvicorn's worker those settings do nothing, and httptools keeps whatever a client
sends until the head ends, so one connection could make a worker hold any amount of memory.
``HttpProtocol`` is uvicorn's httptools protocol with such limits: it answers 414 to a
request target over ``MAX_TARGET_BYTES``, 431 to a head (request line and header fields)
over ``MAX_HEAD_BYTES`` or with more than ``MAX_HEADER_FIELDS`` fields, 408 to a head not
complete within ``HEAD_TIMEOUT_SECONDS`` (a connection held open by a client that sends
nothing, or a byte now and then, would otherwise be held for ever), and closes the
connection, before the application sees anything. A body is the application's to limit
(``compliance/wsgi_bridge.py``, ``compliance.middleware.ApiBodyLimitMiddleware``). Its
connections write through ``compliance.http_writes.CorkedTransport``.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from compliance.http_writes import CorkedTransport

# gunicorn's limit_request_line is 4094 bytes; the API's longest targets (a consent check
# with a 400-character identity, percent-encoded) stay far below this.
MAX_TARGET_BYTES = 8190
# What nginx accepts by default (large_client_header_buffers: four buffers of 8 KiB).
MAX_HEAD_BYTES = 32 * 1024
# gunicorn's limit_request_fields.
MAX_HEADER_FIELDS = 100
# Seconds a client has to send a request's head, from the connection's start or the head's
# first byte (nginx's client_header_timeout is 60 s). uvicorn closes a connection left idle
# between requests (gunicorn's keepalive) but waits on an unfinished head for ever.
HEAD_TIMEOUT_SECONDS = 20.0

_REASONS = {
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


class Refused(Exception):
    """A request the server answers itself, here or in ``compliance/wsgi_bridge.py``: a
    status, one plain sentence (never anything from the request), and the connection closed."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after

    @property
    def body(self) -> bytes:
        return self.message.encode()

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(self.body)),
            (b"connection", b"close"),
        ]
        if self.retry_after is not None:
            headers.append((b"retry-after", b"%d" % self.retry_after))
        return headers


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between a message's end (or the connection's start) and its head's
        self._head_bytes = 0
        self._tail = b""  # the last bytes of the head so far: a terminator may span two reads
        self._header_fields = 0
        self._refused: Refused | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        # One write per turn of the loop: a response's head and body in one system call.
        super().connection_made(CorkedTransport(transport, self.loop))
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_late)

    def connection_lost(self, exc) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # Only the head is counted: the first blank line ends it, and what follows in this
            # read is a body (or pipelined requests, which fit in the read).
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end + 4 - len(self._tail)
            self._tail = seen[-3:]
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(Refused(431, "Request header fields too large."))
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_fields = 0
        if self._head_timer is None:  # a later request on the connection: its own time
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_late)

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_TARGET_BYTES:
            self._refused = Refused(414, "Request target too long.")
            raise self._refused  # the parser stops; send_400_response answers it
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_fields += 1
        if self._header_fields > MAX_HEADER_FIELDS:
            self._refused = Refused(431, "Too many request header fields.")
            raise self._refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self.flow.read_paused or not (self.cycle is None or self.cycle.response_complete):
            # Not the client's delay: the server has stopped reading, or is still answering
            # the request before (pipelined). Its own time starts again.
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_late)
            return
        self._refuse(Refused(408, "The request's head did not arrive in time."))

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes, self._tail = True, 0, b""
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error here, including one a callback above raised.
        if self._refused is not None:
            self._refuse(self._refused)
        else:
            super().send_400_response(msg)

    def _refuse(self, refused: Refused) -> None:
        # Nothing from the request is logged: its target or a header may carry identities.
        self.logger.warning("Refused a request: %s", refused.message)
        head = [b"HTTP/1.1 %d %s\r\n" % (refused.status, _REASONS[refused.status])]
        for name, value in [*self.server_state.default_headers, *refused.headers()]:
            head.append(b"%s: %s\r\n" % (name, value))
        self.transport.write(b"".join(head) + b"\r\n" + refused.body)
        self.transport.close()
