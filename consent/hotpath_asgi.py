"""The consent check's hot path in an event loop: ``ConsentCheckFront``, the ASGI
application the deployed server runs (``compliance/asgi.py``, served by gunicorn with
``compliance.gunicorn_worker.Worker``).

``GET /api/v1/consent/check`` is answered here, in the worker's event loop, by the same
logic as the WSGI shortcut (``consent/hotpath.py``: ``plan``, the script, ``settle``), with
one difference: the script goes down the worker's one pipelined Redis connection
(``compliance/redis_pipe.py``), so a worker never sits idle while Redis answers, and many
checks share each round trip. Answering a check costs a worker a fraction of what a
thread of the WSGI server cost, and the server's latency under load follows.

What cannot be answered from the cache is never waited on in the loop: when ``settle``
reaches a read of PostgreSQL (a subject not cached yet, the catalogue moved) it stops, and
settles again in one of the threads that run Django, from the same script reply (so the
request is counted once). Every request the hot path does not answer, and every other
request, goes to Django's WSGI handler in those threads (``compliance/wsgi_bridge.py``),
marked so that the view does not try the hot path again.
"""

from __future__ import annotations

import asyncio
import weakref

from compliance.redis_pipe import RedisPipe, RedisUnavailable, ReplyError
from compliance.wsgi_bridge import WsgiBridge
from consent import hotpath

# Seconds the front waits for Redis before it hands the check to the full view (which
# has its own cache client) and stands aside for ``hotpath.REDIS_RETRY_SECONDS``.
REDIS_TIMEOUT_SECONDS = 1.0
_SCRIPT_LOAD = (b"SCRIPT", b"LOAD", hotpath.CHECK_SCRIPT.encode())


class NeedsDatabase(Exception):
    """``settle`` reached a read of PostgreSQL, which the event loop must not wait on."""


class _InLoop(hotpath.Lifecycle):
    def database(self) -> None:
        raise NeedsDatabase

    def in_transaction(self) -> bool:
        # The loop never touches the database, so it has no transaction open (and asking
        # Django would make a connection object for every request: its connections are
        # per task in an event loop).
        return False


_IN_LOOP = _InLoop()


class ConsentCheckFront:
    """ASGI application: the consent check's hot path, then Django (``WsgiBridge``, in a
    pool of ``threads`` threads) for everything else. ``shortcut`` is the WSGI application
    of ``compliance/wsgi.py``: its checks and headers are the front's, and the Django
    handler it wraps answers what the front does not."""

    def __init__(self, shortcut: hotpath.ConsentCheckShortcut, *, threads: int) -> None:
        self.shortcut = shortcut
        self.django = WsgiBridge(self._django, workers=threads)
        self._pipes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == hotpath.PATH
            and scope["method"] == "GET"
            and self.shortcut.active
        ):
            answered = await self._answer(_environ(scope))
            if answered is not None:
                headers, body = answered
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            scope[hotpath.HANDED_OVER] = True
        await self.django(scope, receive, send)

    def _django(self, environ, start_response):
        if environ["asgi.scope"].get(hotpath.HANDED_OVER):
            environ[hotpath.HANDED_OVER] = True
        return self.shortcut.application(environ, start_response)

    async def _answer(self, environ) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
        if not self.shortcut.admits(environ):
            return None
        try:
            planned = hotpath.plan(environ)
            if planned is None:
                return None
            reply = await self._run_script(planned)
            if reply is None:
                return None
            try:
                body = hotpath.settle(planned, reply, _IN_LOOP)
            except NeedsDatabase:
                body = await asyncio.get_running_loop().run_in_executor(
                    self.django.executor, _settle_in_thread, planned, reply, environ
                )
        except Exception as exc:
            hotpath.failed(exc)
            return None
        if body is None:
            return None
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.shortcut.headers(environ, body)
        ]
        return headers, body

    async def _run_script(self, planned: hotpath.Plan) -> list | None:
        pipe = self._pipe(planned.redis.location)
        try:
            try:
                return await pipe.execute(*planned.command)
            except ReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                await pipe.execute(*_SCRIPT_LOAD)  # a new or restarted server: load it once
                return await pipe.execute(*planned.command)
        except RedisUnavailable:
            hotpath.redis_failed()
            return None

    def _pipe(self, location: str) -> RedisPipe:
        """This event loop's connection to the consent cache's server."""
        loop = asyncio.get_running_loop()
        pipe = self._pipes.get(loop)
        if pipe is None or pipe.url != location:
            if pipe is not None:
                pipe.close()  # the cache moved (settings changed): its old server
            pipe = self._pipes[loop] = RedisPipe(location, timeout=REDIS_TIMEOUT_SECONDS)
        return pipe


# Header name (as ASGI gives it) -> its WSGI environ key; filled as names are seen.
_ENVIRON_KEYS = {b"content-length": "CONTENT_LENGTH", b"content-type": "CONTENT_TYPE"}


def _environ(scope) -> dict:
    """The WSGI environ of a request without a body, as the bridge builds it for Django (header
    values as latin-1 strings, a repeated header's values joined with commas), with only
    what the hot path reads besides the headers."""
    environ = {
        "REQUEST_METHOD": scope["method"],
        "PATH_INFO": scope["path"],
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "wsgi.url_scheme": scope.get("scheme", "http"),
    }
    for name, raw in scope["headers"]:
        key = _ENVIRON_KEYS.get(name)
        if key is None:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            if len(_ENVIRON_KEYS) < 200:  # the header names are the caller's to choose
                _ENVIRON_KEYS[name] = key
        value = raw.decode("latin-1")
        environ[key] = environ[key] + "," + value if key in environ else value
    return environ


def _settle_in_thread(planned: hotpath.Plan, reply: list, environ) -> bytes | None:
    lifecycle = hotpath.Lifecycle(environ)
    try:
        return hotpath.settle(planned, reply, lifecycle)
    finally:
        lifecycle.finish()
