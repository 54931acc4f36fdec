"""Django's WSGI application behind the event loop: ``WsgiBridge`` runs it in a pool of
threads and hands its responses back to the loop.

A response whose body is already in memory (Django's ``HttpResponse``, or a list) crosses
back in one piece when the thread is done: the loop sends its start and its body, and the
thread never waits on the loop. A streaming response (``StreamingHttpResponse``, a file, any
other iterable) is sent as the thread produces it, in pieces of at least 16 KiB (a file's
4 KiB blocks gathered), each waiting until the loop has handed it to the connection, so a
slow client slows the thread instead of filling the worker's memory. a2wsgi's
``WSGIMiddleware``, which this replaces, waited on the loop for the start, each chunk and the
end of every response: three waits for a ``/healthz``. The environ is a2wsgi's
(``build_environ``).

A request's body is read in the loop, whole, before a thread is given the request (as a
proxy that buffers bodies would): a client that sends its body slowly, or stops half way,
holds a connection and not one of the few threads that run Django. Each piece must come
within ``BODY_TIMEOUT_SECONDS`` of the one before (408 otherwise), and a body without a
declared length (chunked) may not exceed ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413), the size
Django reads into memory anyway. A body declared larger than that is left unread for Django
to refuse (``ApiBodyLimitMiddleware``'s 413, Django's 400), as before. The bodies a worker
holds at once, arriving or waiting for a thread, stay within ``WEB_BODY_BUFFER_BYTES``: a
body that would go beyond it is refused with 503 and ``Retry-After``, so many slow uploads
cannot fill the worker's memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
from concurrent.futures import ThreadPoolExecutor

from a2wsgi.wsgi import Body, build_environ
from django.conf import settings

from compliance.http_limits import Refused

# A stream is sent in pieces of at least this many bytes (fewer crossings to the loop).
_COALESCE_BYTES = 16 * 1024
# Seconds a client may take between two pieces of a request body (nginx's
# client_body_timeout is 60 s).
BODY_TIMEOUT_SECONDS = 20.0


class WsgiBridge:
    """ASGI application: ``app`` (WSGI) in ``workers`` threads."""

    def __init__(self, app, *, workers: int) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(thread_name_prefix="django", max_workers=workers)
        self.buffered = 0  # bytes of request bodies held now (WEB_BODY_BUFFER_BYTES)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        loop = asyncio.get_running_loop()
        length = _declared_length(scope["headers"])
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        budget = _Budget(self)
        try:
            if length is not None and limit is not None and length > limit:
                # Refused by Django unread (ApiBodyLimitMiddleware, RequestDataTooBig).
                environ = build_environ(scope, Body(loop, receive))
            else:
                try:
                    if length:
                        budget.check(length)  # refused before a byte is read
                    body = b"" if length == 0 else await _received_body(receive, limit, budget)
                except _ClientGone:
                    return
                except Refused as refused:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": refused.status,
                            "headers": refused.headers(),
                        }
                    )
                    await send({"type": "http.response.body", "body": refused.body})
                    return
                environ = build_environ(scope, io.BytesIO(body))
                if length is None:  # chunked: Django reads CONTENT_LENGTH bytes
                    environ["CONTENT_LENGTH"] = str(len(body))
            exchange = _Exchange(loop, send)
            context = contextvars.copy_context()
            await loop.run_in_executor(self.executor, context.run, exchange.run, self.app, environ)
            await exchange.finish()
        finally:
            budget.release()


class _Budget:
    """One request's share of its worker's ``WEB_BODY_BUFFER_BYTES``."""

    def __init__(self, bridge: WsgiBridge) -> None:
        self.bridge, self.held = bridge, 0

    def check(self, size: int) -> None:
        if self.bridge.buffered + size > settings.WEB_BODY_BUFFER_BYTES:
            raise Refused(
                503,
                "The server is receiving too much at once; send this again shortly.",
                retry_after=1,
            )

    def take(self, size: int) -> None:
        self.check(size)
        self.bridge.buffered += size
        self.held += size

    def release(self) -> None:
        self.bridge.buffered -= self.held
        self.held = 0


def _declared_length(headers) -> int | None:
    """The body's length as the head declares it: 0 without one, None for a chunked body."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # the parser has refused anything but digits
        if name == b"transfer-encoding":
            return None
    return 0


class _ClientGone(Exception):
    pass


async def _received_body(receive, limit: int | None, budget: _Budget) -> bytes:
    """The whole request body, read in the loop: each piece within
    ``BODY_TIMEOUT_SECONDS`` of the one before (408 otherwise), ``limit`` bytes at most
    (413 otherwise), within the worker's budget (503 otherwise)."""
    pieces, size = [], 0
    while True:
        try:
            async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
                message = await receive()
        except TimeoutError:
            raise Refused(408, "The request's body did not arrive in time.") from None
        if message["type"] == "http.disconnect":
            raise _ClientGone
        piece = message.get("body", b"")
        size += len(piece)
        if limit is not None and size > limit:
            raise Refused(413, f"The request's body is larger than {limit} bytes.")
        budget.take(len(piece))
        pieces.append(piece)
        if not message.get("more_body", False):
            return b"".join(pieces)


class _Exchange:
    """One request's response, from the WSGI thread to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send) -> None:
        self.loop, self.send = loop, send
        self.start: dict | None = None  # the start message, until it is sent
        self.started = False  # the start has gone to the connection (streaming)
        self.body = b""  # a whole body kept for the loop to send

    # --- in the WSGI thread ---

    def run(self, app, environ) -> None:
        iterable = app(environ, self.start_response)
        try:
            if isinstance(iterable, list | tuple) or getattr(iterable, "streaming", True) is False:
                body = b"".join(iterable)  # in memory already: HttpResponse, a list
            else:
                body = b""
                for chunk in iterable:
                    body += chunk
                    if len(body) >= _COALESCE_BYTES:
                        self._cross(body, more=True)
                        body = b""
            if self.started:  # streamed, or write() was called
                self._cross(body, more=False)
            else:
                self.body = body  # whole: the loop sends it
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

    def start_response(self, status: str, headers, exc_info=None):
        if exc_info is not None and self.started:
            raise exc_info[1].with_traceback(exc_info[2])  # PEP 3333: too late to replace
        self.start = {
            "type": "http.response.start",
            "status": int(status.split(" ", 1)[0]),
            "headers": [
                (name.strip().encode("latin-1").lower(), value.strip().encode("latin-1"))
                for name, value in headers
            ],
        }
        return self._write

    def _write(self, data: bytes) -> None:
        # WSGI's legacy write(): sent at once, as the specification wants.
        if data:
            self._cross(data, more=True)

    def _cross(self, body: bytes, *, more: bool) -> None:
        asyncio.run_coroutine_threadsafe(self._send(body, more), self.loop).result()

    # --- in the loop ---

    async def _send(self, body: bytes, more: bool) -> None:
        if not self.started:
            self.started = True
            await self.send(self.start)
        await self.send({"type": "http.response.body", "body": body, "more_body": more})

    async def finish(self) -> None:
        if self.started:
            return  # streamed: the thread sent the end
        if self.start is None:
            raise RuntimeError("the WSGI application returned without starting a response")
        await self._send(self.body, more=False)
