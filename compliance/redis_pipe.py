"""One pipelined connection to a Redis server, for code that runs in an event loop (the
consent check's ASGI front, ``consent/hotpath_asgi.py``).

Every command of every request a worker serves goes down the same connection without
waiting for the answers before it, in one write per turn of the event loop; Redis answers in
order, so each reply goes to the oldest caller still waiting. hiredis packs the commands and
parses the replies (in C). Compared with redis-py's asyncio
client, there is no connection pool to take a connection from and give it back, no command
object and no parser in Python: on the hot path, where a check is one script call, that is
most of the client's CPU.

Failures: a command that gets no reply within ``timeout`` seconds, a lost connection or a
refused one raise ``RedisUnavailable`` to every caller waiting on that connection, which is
closed (after a timeout the replies still to come could no longer be matched to their
callers); the next command connects again. An error reply (``-ERR ...``) raises
``ReplyError`` to its own caller only; the connection stays.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any

import hiredis
from redis.asyncio.connection import RedisSSLContext
from redis.connection import SSLConnection, parse_url
from redis.exceptions import RedisError

ReplyError = hiredis.ReplyError


class RedisUnavailable(Exception):
    """No reply: Redis refused the connection, lost it, or did not answer in time."""


class _Protocol(asyncio.Protocol):
    """The connection: commands written together once per turn of the event loop (one
    write for all the requests the loop served in that turn), replies handed out in order,
    and a watchdog that closes the connection when the oldest command has waited longer
    than ``timeout``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.sent_at: collections.deque[float] = collections.deque()
        self.outgoing: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, command: tuple) -> asyncio.Future:
        future = self.loop.create_future()
        self.waiting.append(future)
        self.sent_at.append(self.loop.time())
        if not self.outgoing:
            self.loop.call_soon(self.flush)
        self.outgoing.append(hiredis.pack_command(command))
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(self.timeout / 4, self.watch)
        return future

    def flush(self) -> None:
        if self.outgoing and self.transport is not None:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def watch(self) -> None:
        self.watchdog = None
        if not self.sent_at:
            return
        if self.loop.time() - self.sent_at[0] > self.timeout:
            self.close(RedisUnavailable("no reply in time"))
        else:
            self.watchdog = self.loop.call_later(self.timeout / 4, self.watch)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while (reply := self.reader.gets()) is not False:
            if not waiting:  # a reply nobody asked for: the stream cannot be trusted
                self.close(RedisUnavailable("unexpected reply"))
                return
            future = waiting.popleft()
            self.sent_at.popleft()
            if not future.done():  # its caller may have been cancelled
                if isinstance(reply, ReplyError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisUnavailable("connection lost"))
        self.transport = None

    def fail(self, exc: Exception) -> None:
        self.outgoing.clear()
        self.sent_at.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)

    def close(self, exc: Exception) -> None:
        self.fail(exc)
        if self.transport is not None:
            self.transport.abort()

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


def _tls_context(options: dict) -> ssl.SSLContext:
    """The TLS context redis-py's client makes for a ``rediss://`` URL's options
    (``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
    ``ssl_check_hostname``...), with its defaults (a certificate required, the host name
    checked): the pipe connects as the cache it reads does."""
    check_hostname = options.get("ssl_check_hostname")
    return RedisSSLContext(
        keyfile=options.get("ssl_keyfile"),
        certfile=options.get("ssl_certfile"),
        cert_reqs=options.get("ssl_cert_reqs", "required"),
        include_verify_flags=options.get("ssl_include_verify_flags"),
        exclude_verify_flags=options.get("ssl_exclude_verify_flags"),
        ca_certs=options.get("ssl_ca_certs"),
        ca_path=options.get("ssl_ca_path"),
        check_hostname=True if check_hostname is None else check_hostname,
        min_version=options.get("ssl_min_version"),
        ciphers=options.get("ssl_ciphers"),
        password=options.get("ssl_password"),
    ).get()


class RedisPipe:
    """Commands to the Redis server at ``url`` (``redis://``, ``rediss://`` with the TLS
    options redis-py reads from it, or ``unix://``; with its user, password and database)
    over one connection, from callers in one event loop."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._options = parse_url(url)
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future | None = None

    async def execute(self, *args: bytes | str) -> Any:
        """One command's reply; ``ReplyError`` for an error reply, ``RedisUnavailable``
        for no reply."""
        protocol = self._protocol
        if protocol is None or not protocol.open:
            protocol = await self._connected()
        return await protocol.send(args)

    def close(self) -> None:
        """Fail the callers waiting, including those waiting for a connection being made
        (closed as soon as it is); the next call connects again."""
        self._connecting = None  # an attempt under way keeps nothing (``_connect``)
        if self._protocol is not None:
            self._protocol.close(RedisUnavailable("closed"))
            self._protocol = None

    async def _connected(self) -> _Protocol:
        """The open connection; callers that arrive while it is being made wait for it.
        The attempt is forgotten when it ends, even if every caller waiting on it was
        cancelled, so the next call after a loss never gets a finished attempt's result."""
        connecting = self._connecting
        if connecting is None:
            connecting = self._connecting = asyncio.ensure_future(self._connect())
            connecting.add_done_callback(self._connect_ended)
        return await asyncio.shield(connecting)

    def _connect_ended(self, connecting: asyncio.Future) -> None:
        if self._connecting is connecting:
            self._connecting = None
        if not connecting.cancelled():
            connecting.exception()  # read here, as its callers may all have gone

    async def _connect(self) -> _Protocol:
        options = self._options
        loop = asyncio.get_running_loop()
        protocol = None
        futures: list[asyncio.Future] = []

        def factory() -> _Protocol:
            return _Protocol(self.timeout)

        try:
            async with asyncio.timeout(self.timeout):
                if "path" in options:
                    _, protocol = await loop.create_unix_connection(factory, options["path"])
                else:
                    tls = None
                    if options.get("connection_class") is SSLConnection:
                        tls = _tls_context(options)
                    _, protocol = await loop.create_connection(
                        factory,
                        options.get("host", "localhost"),
                        int(options.get("port", 6379)),
                        ssl=tls,
                    )
                handshake = []
                if options.get("password") is not None:
                    user = options.get("username")
                    password = options["password"]
                    handshake.append(("AUTH", user, password) if user else ("AUTH", password))
                if options.get("db"):
                    handshake.append(("SELECT", str(options["db"])))
                futures = [protocol.send(command) for command in handshake]
                for future in futures:
                    await future  # an error reply (a wrong password) raises ReplyError
        except (OSError, TimeoutError, ReplyError, RedisError, ValueError) as exc:
            if protocol is not None:
                protocol.close(RedisUnavailable("handshake failed"))
            for future in futures:  # the replies after a failed one: failed too, unread
                if future.done() and not future.cancelled():
                    future.exception()
            raise RedisUnavailable(f"cannot connect ({type(exc).__name__})") from None
        if self._connecting is not asyncio.current_task():  # close() came meanwhile
            protocol.close(RedisUnavailable("closed"))
            raise RedisUnavailable("closed while connecting")
        self._protocol = protocol
        return protocol
