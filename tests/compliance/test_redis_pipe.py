"""The pipelined Redis client of the consent check's ASGI front (``compliance/redis_pipe.py``).

Each test runs its own event loop (``asyncio.run``). Tests that only send commands use the
shared Redis, under a key prefix of their own that is deleted afterwards; tests that stop,
pause or configure a server start their own ``redis-server`` (marked slow)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
import redis

from compliance.redis_pipe import RedisPipe, RedisUnavailable, ReplyError

SHARED_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/")


def run(scenario: Callable[[], Awaitable], *, limit: float = 10.0):
    """Run ``scenario`` in a fresh event loop, bounded by ``limit`` seconds so a hang fails
    the test instead of stalling the suite. Anything the loop reports to its exception
    handler (a fatal error in ``data_received``, a future whose exception nobody took)
    fails the test too: in the front those go to the error log on every request."""
    reported: list[dict] = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
        return await asyncio.wait_for(scenario(), limit)

    # In a thread of its own: the browser tests' Playwright leaves an event loop running in
    # the main thread for the rest of the session, and asyncio.run() refuses to nest.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        result = thread.submit(asyncio.run, main()).result()
    gc.collect()  # futures dropped with the loop report an unretrieved exception when freed
    assert not reported, [ctx.get("message") for ctx in reported]
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class OwnRedis:
    """A redis-server of this test's own, which it may stop, pause or configure."""

    port: int = 0
    unixsocket: str | None = None
    tls_port: int = 0
    options: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def sync_client(self, **kwargs) -> redis.Redis:
        if self.unixsocket:
            return redis.Redis(unix_socket_path=self.unixsocket, **kwargs)
        return redis.Redis(host="127.0.0.1", port=self.port or self.tls_port, **kwargs)

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", *self.options]
        if self.unixsocket:
            command += ["--unixsocket", self.unixsocket, "--unixsocketperm", "700"]
        if self.tls_port:
            command += ["--tls-port", str(self.tls_port)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def answers() -> bool:
            assert self.process.poll() is None, "redis-server exited at start"
            try:
                if self.unixsocket:
                    with socket.socket(socket.AF_UNIX) as sock:
                        sock.connect(self.unixsocket)
                else:
                    port = self.port or self.tls_port
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_until(answers, timeout=10, what="our redis-server to start")

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()  # a stopped process would hold SIGTERM until continued
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def own_redis():
    """Start a redis-server with extra options: ``own_redis("--requirepass", "x")``."""
    servers: list[OwnRedis] = []

    def start(*options: str, **kwargs) -> OwnRedis:
        kwargs.setdefault("port", free_port())
        server = OwnRedis(options=list(options), **kwargs)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def prefix():
    """A key prefix of this test's own on the shared Redis, deleted afterwards."""
    prefix = f"test:redis_pipe:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(SHARED_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def client_ids(server: OwnRedis) -> set[int]:
    """Ids of the server's clients other than the one asking."""
    with server.sync_client() as client:
        me = client.client_id()
        return {entry["id"] for entry in client.client_list()} - {me}


# Many callers, one connection.


def test_concurrent_callers_each_get_their_own_reply_over_one_connection(prefix):
    callers = 500

    async def caller(pipe: RedisPipe, n: int) -> tuple:
        # The first command of every caller arrives before the connection exists: they
        # must all wait for the same connection, not open one each.
        client_id = await pipe.execute("CLIENT", "ID")
        stored = await pipe.execute("SET", f"{prefix}key:{n}", f"value-{n}")
        value = await pipe.execute("GET", f"{prefix}key:{n}")
        counted = await pipe.execute("INCR", f"{prefix}counter")
        return client_id, stored, value, counted

    async def scenario():
        pipe = RedisPipe(SHARED_URL, timeout=5)
        try:
            results = await asyncio.gather(*(caller(pipe, n) for n in range(callers)))
            total = await pipe.execute("GET", f"{prefix}counter")
            last_id = await pipe.execute("CLIENT", "ID")
        finally:
            pipe.close()
        return results, total, last_id

    results, total, last_id = run(scenario)
    assert {client_id for client_id, *_ in results} == {last_id}
    assert [stored for _, stored, _, _ in results] == [b"OK"] * callers
    assert [value for _, _, value, _ in results] == [f"value-{n}".encode() for n in range(callers)]
    assert sorted(counted for *_, counted in results) == list(range(1, callers + 1))
    assert total == str(callers).encode()


@pytest.mark.slow
def test_one_turn_of_callers_is_one_connection_and_a_few_reads_for_the_server(own_redis):
    """Batching seen from the server: 500 commands queued in one turn of the loop arrive
    in one write, which Redis takes in a few reads (16 KiB each), not 500."""
    server = own_redis()
    callers = 500

    def stats() -> dict:
        with server.sync_client() as client:
            return client.info("stats")

    async def scenario():
        pipe = RedisPipe(server.url, timeout=5)
        try:
            await pipe.execute("PING")
            before = stats()  # blocks the loop: nothing is sent meanwhile
            replies = await asyncio.gather(
                *(pipe.execute("SET", f"key:{n}", "x" * 20) for n in range(callers))
            )
            after = stats()
        finally:
            pipe.close()
        return before, replies, after

    before, replies, after = run(scenario)
    assert replies == [b"OK"] * callers
    # The INFO of `after` is one more connection and one more read.
    assert after["total_connections_received"] - before["total_connections_received"] == 1
    assert after["total_reads_processed"] - before["total_reads_processed"] <= 10
    with server.sync_client() as client:
        assert client.dbsize() == callers


# Error replies.


def test_an_error_reply_goes_to_its_caller_only_and_the_connection_stays(prefix):
    async def scenario():
        pipe = RedisPipe(SHARED_URL, timeout=5)
        try:
            await pipe.execute("SET", f"{prefix}text", "not a number")
            await pipe.execute("SET", f"{prefix}number", "41")
            before = await pipe.execute("CLIENT", "ID")
            replies = await asyncio.gather(
                pipe.execute("GET", f"{prefix}text"),
                pipe.execute("INCR", f"{prefix}text"),
                pipe.execute("INCR", f"{prefix}number"),
                pipe.execute("NO-SUCH-COMMAND", "x"),
                pipe.execute("GET", f"{prefix}number"),
                return_exceptions=True,
            )
            after = await pipe.execute("CLIENT", "ID")
            value = await pipe.execute("GET", f"{prefix}number")
        finally:
            pipe.close()
        return before, replies, after, value

    before, replies, after, value = run(scenario)
    text, incr_text, incr_number, unknown, number = replies
    assert text == b"not a number"
    assert isinstance(incr_text, ReplyError)
    assert "not an integer" in str(incr_text)
    assert incr_number == 42
    assert isinstance(unknown, ReplyError)
    assert "unknown command" in str(unknown)
    assert number == b"42"
    assert after == before
    assert value == b"42"


def test_evalsha_of_an_unknown_script_says_noscript_and_works_once_loaded(prefix):
    script = "return redis.call('INCR', KEYS[1])"

    async def scenario():
        pipe = RedisPipe(SHARED_URL, timeout=5)
        try:
            sha = await pipe.execute("SCRIPT", "LOAD", script)
            # A script nobody loaded: the SHA1 of a random string.
            unknown = uuid.uuid4().hex + "00000000"
            with pytest.raises(ReplyError) as missing:
                await pipe.execute("EVALSHA", unknown, "1", f"{prefix}calls")
            loaded = await pipe.execute("EVALSHA", sha, "1", f"{prefix}calls")
        finally:
            pipe.close()
        return missing.value, loaded

    missing, loaded = run(scenario)
    # consent/hotpath_asgi.py loads the script again on exactly this prefix.
    assert str(missing).startswith("NOSCRIPT")
    assert loaded == 1


# Cancelled callers and close().


def test_a_caller_cancelled_while_waiting_does_not_shift_the_next_replies(prefix):
    async def scenario():
        pipe = RedisPipe(SHARED_URL, timeout=5)
        try:
            await pipe.execute("MSET", f"{prefix}a", "A", f"{prefix}b", "B")
            # Blocks the connection 0.3 s, so its caller is surely waiting when cancelled.
            blocked = asyncio.ensure_future(pipe.execute("BLPOP", f"{prefix}empty", "0.3"))
            behind = asyncio.ensure_future(pipe.execute("GET", f"{prefix}a"))
            await asyncio.sleep(0.05)
            blocked.cancel()
            after = await asyncio.gather(
                pipe.execute("GET", f"{prefix}b"), pipe.execute("GET", f"{prefix}a")
            )
            # Cancelled in the turn it was queued, before the write: still sent, and its
            # reply must still be skipped.
            early = asyncio.ensure_future(pipe.execute("GET", f"{prefix}a"))
            await asyncio.sleep(0)
            early.cancel()
            last = await pipe.execute("GET", f"{prefix}b")
        finally:
            pipe.close()
        return blocked.cancelled(), await behind, after, early.cancelled(), last

    blocked_cancelled, behind, after, early_cancelled, last = run(scenario)
    assert blocked_cancelled and early_cancelled
    assert behind == b"A"
    assert after == [b"B", b"A"]
    assert last == b"B"


def test_close_fails_the_waiting_callers_and_the_next_call_reconnects(prefix):
    async def scenario():
        pipe = RedisPipe(SHARED_URL, timeout=5)
        try:
            await pipe.execute("SET", f"{prefix}a", "A")
            first_id = await pipe.execute("CLIENT", "ID")
            waiting = [
                asyncio.ensure_future(pipe.execute("BLPOP", f"{prefix}empty", "3")),
                asyncio.ensure_future(pipe.execute("GET", f"{prefix}a")),
            ]
            await asyncio.sleep(0.05)
            started = time.monotonic()
            pipe.close()
            outcomes = await asyncio.gather(*waiting, return_exceptions=True)
            took = time.monotonic() - started
            value = await pipe.execute("GET", f"{prefix}a")
            second_id = await pipe.execute("CLIENT", "ID")
        finally:
            pipe.close()
        return outcomes, took, value, first_id, second_id

    outcomes, took, value, first_id, second_id = run(scenario)
    assert all(isinstance(outcome, RedisUnavailable) for outcome in outcomes), outcomes
    assert took < 2, "the waiting callers were not failed by close() but by BLPOP's end"
    assert value == b"A"
    assert second_id != first_id


@pytest.mark.slow
def test_close_while_connecting_keeps_no_connection_and_the_next_call_reconnects(own_redis):
    server = own_redis()

    async def scenario():
        pipe = RedisPipe(server.url, timeout=5)
        try:
            pending = asyncio.ensure_future(pipe.execute("PING"))
            await asyncio.sleep(0)  # the connection is being made
            pipe.close()
            outcome = (await asyncio.gather(pending, return_exceptions=True))[0]
            again = await pipe.execute("PING")
            with server.sync_client() as observer:  # the pipe's one connection, and its own
                clients = observer.info("clients")["connected_clients"]
        finally:
            pipe.close()
        return outcome, again, clients

    outcome, again, clients = run(scenario)
    assert isinstance(outcome, RedisUnavailable), outcome
    assert again == b"PONG"
    assert clients == 2


# Timeouts, lost and refused connections.


def test_a_steady_stream_of_answered_commands_never_times_out(prefix):
    """The watchdog times the oldest command still waiting, not the connection's age."""

    async def scenario():
        pipe = RedisPipe(SHARED_URL, timeout=0.3)
        try:
            answered = 0
            ends = time.monotonic() + 1.0
            while time.monotonic() < ends:
                await asyncio.gather(*(pipe.execute("INCR", f"{prefix}n") for _ in range(20)))
                answered += 20
                await asyncio.sleep(0.01)
            total = await pipe.execute("GET", f"{prefix}n")
        finally:
            pipe.close()
        return answered, total

    answered, total = run(scenario)
    assert total == str(answered).encode()


def test_a_refused_connection_raises_unavailable_promptly():
    port = free_port()  # nothing listens there

    async def scenario():
        pipe = RedisPipe(f"redis://127.0.0.1:{port}/0", timeout=30)
        # Refusals must not wait for the 30 s timeout: wait_for fails the test first.
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(pipe.execute("PING") for _ in range(5)), return_exceptions=True),
            4,
        )
        with pytest.raises(RedisUnavailable):
            await asyncio.wait_for(pipe.execute("PING"), 4)
        return outcomes

    outcomes = run(scenario)
    assert all(isinstance(outcome, RedisUnavailable) for outcome in outcomes), outcomes


@pytest.mark.slow
def test_a_stopped_server_fails_pending_and_new_calls_and_a_restarted_one_serves_again(
    own_redis,
):
    server = own_redis()

    async def scenario():
        pipe = RedisPipe(server.url, timeout=30)
        try:
            assert await pipe.execute("PING") == b"PONG"
            pending = asyncio.ensure_future(pipe.execute("BLPOP", "empty", "0"))
            await asyncio.sleep(0.05)
            server.stop()
            # Bounded well below the 30 s timeout: a lost connection fails at once.
            with pytest.raises(RedisUnavailable):
                await asyncio.wait_for(pending, 4)
            with pytest.raises(RedisUnavailable):
                await asyncio.wait_for(pipe.execute("PING"), 4)
            server.start()  # the same port
            return await asyncio.wait_for(pipe.execute("ECHO", "back"), 4)
        finally:
            pipe.close()

    assert run(scenario, limit=20) == b"back"


@pytest.mark.slow
def test_a_paused_server_times_out_and_its_late_replies_reach_nobody(own_redis):
    """After a timeout the connection must be dropped: its replies, if they came, would go
    to the callers after the ones that timed out."""
    server = own_redis()
    timeout = 0.3

    async def scenario():
        pipe = RedisPipe(server.url, timeout=timeout)
        try:
            await pipe.execute("MSET", "stale", "old reply", "fresh", "new reply")
            first_id = await pipe.execute("CLIENT", "ID")
            server.pause()
            try:
                started = time.monotonic()
                outcomes = await asyncio.gather(
                    pipe.execute("GET", "stale"),
                    pipe.execute("GET", "stale"),
                    pipe.execute("PING"),
                    return_exceptions=True,
                )
                took = time.monotonic() - started
            finally:
                server.resume()
            # The dropped connection leaves the server's client list once it runs again.
            wait_until(
                lambda: first_id not in client_ids(server),
                timeout=5,
                what="the timed-out connection to be closed",
            )
            fresh = await pipe.execute("GET", "fresh")
            second_id = await pipe.execute("CLIENT", "ID")
        finally:
            pipe.close()
        return outcomes, took, fresh, first_id, second_id

    outcomes, took, fresh, first_id, second_id = run(scenario, limit=20)
    assert all(isinstance(outcome, RedisUnavailable) for outcome in outcomes), outcomes
    assert took < 3  # timeout * 1.25 plus a generous margin for a busy machine
    assert fresh == b"new reply"
    assert second_id != first_id


@pytest.mark.slow
def test_a_caller_cancelled_while_connecting_leaves_no_stale_connection(own_redis):
    """The connect outlives a cancelled caller (it is shielded); once it is done, a later
    reconnect must make a new connection, not be handed the finished, now dead, one."""
    server = own_redis()

    async def scenario():
        # db 3: the handshake sends SELECT, so the connect waits on the paused server.
        pipe = RedisPipe(f"redis://127.0.0.1:{server.port}/3", timeout=2)
        try:
            server.pause()
            try:
                impatient = asyncio.ensure_future(pipe.execute("PING"))
                await asyncio.sleep(0.1)
                impatient.cancel()
            finally:
                server.resume()
            await asyncio.sleep(0.2)  # the connect completes
            assert await pipe.execute("PING") == b"PONG"
            # The server drops the connection (a restart, a `timeout` setting, CLIENT KILL).
            with server.sync_client() as admin:
                assert admin.client_kill_filter(_type="normal", skipme=True) == 1
            await asyncio.sleep(0.2)  # the loop sees the connection lost
            return await pipe.execute("ECHO", "reconnected")
        finally:
            pipe.close()

    assert run(scenario) == b"reconnected"


# URLs: password, database, ACL user, unix socket, TLS.


@pytest.mark.slow
def test_the_password_and_database_of_the_url_are_used(own_redis):
    server = own_redis("--requirepass", "secret")

    async def scenario():
        pipe = RedisPipe(f"redis://:secret@127.0.0.1:{server.port}/3", timeout=5)
        try:
            stored = await pipe.execute("SET", "where", "db three")
            value = await pipe.execute("GET", "where")
        finally:
            pipe.close()
        return stored, value

    assert run(scenario) == (b"OK", b"db three")
    with server.sync_client(password="secret", db=3) as db3:
        assert db3.get("where") == b"db three"
    with server.sync_client(password="secret", db=0) as db0:
        assert db0.dbsize() == 0


@pytest.mark.slow
def test_a_wrong_password_raises_unavailable(own_redis):
    server = own_redis("--requirepass", "secret")

    async def scenario():
        pipe = RedisPipe(f"redis://:wrong@127.0.0.1:{server.port}/0", timeout=5)
        outcomes = []
        for _ in range(2):  # every attempt, not only the first
            try:
                outcomes.append(await pipe.execute("PING"))
            except RedisUnavailable as exc:
                outcomes.append((type(exc), str(exc)))
        pipe.close()
        return outcomes

    outcomes = run(scenario)
    assert [kind for kind, _ in outcomes] == [RedisUnavailable] * 2, outcomes
    # The password is not repeated in what the front may log.
    assert not any("wrong" in message for _, message in outcomes)


@pytest.mark.slow
def test_a_failed_handshake_leaves_no_error_for_asyncio_to_log(own_redis):
    """With a password and a database the handshake is AUTH then SELECT; when AUTH fails,
    SELECT's reply (or the close) must not be left in a future nobody reads, which asyncio
    logs as "Future exception was never retrieved" on every attempt."""
    server = own_redis("--requirepass", "secret")

    async def scenario():
        pipe = RedisPipe(f"redis://:wrong@127.0.0.1:{server.port}/3", timeout=5)
        failed = 0
        for _ in range(2):
            try:
                await pipe.execute("PING")
            except RedisUnavailable:  # dropped, as consent/hotpath_asgi.py does
                failed += 1
        pipe.close()
        return failed

    assert run(scenario) == 2  # run() fails on anything reported to the loop


@pytest.mark.slow
def test_an_acl_user_of_the_url_is_used(own_redis):
    server = own_redis()
    with server.sync_client() as admin:
        admin.acl_setuser(
            "consent-front",
            enabled=True,
            passwords=["+front-pass"],
            keys=["*"],
            commands=["+@all"],
        )

    async def scenario():
        pipe = RedisPipe(f"redis://consent-front:front-pass@127.0.0.1:{server.port}/2", timeout=5)
        wrong = RedisPipe(f"redis://consent-front:nope@127.0.0.1:{server.port}/0", timeout=5)
        try:
            who = await pipe.execute("ACL", "WHOAMI")
            await pipe.execute("SET", "k", "v")
            with pytest.raises(RedisUnavailable):
                await wrong.execute("PING")
        finally:
            pipe.close()
            wrong.close()
        return who

    assert run(scenario) == b"consent-front"
    with server.sync_client(db=2) as db2:
        assert db2.get("k") == b"v"


@pytest.mark.slow
def test_a_unix_socket_url_works(own_redis):
    # A short directory: unix socket paths are limited to about 100 bytes.
    directory = tempfile.mkdtemp(prefix="rp-", dir="/tmp")
    try:
        path = f"{directory}/redis.sock"
        server = own_redis(port=0, unixsocket=path)

        async def scenario():
            pipe = RedisPipe(f"unix://{path}?db=2", timeout=5)
            try:
                await pipe.execute("SET", "over", "the socket")
                return await asyncio.gather(*(pipe.execute("ECHO", str(n)) for n in range(50)))
            finally:
                pipe.close()

        assert run(scenario) == [str(n).encode() for n in range(50)]
        with server.sync_client(db=2) as db2:
            assert db2.get("over") == b"the socket"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
def test_a_rediss_url_speaks_tls_and_checks_the_certificate(own_redis, tmp_path, monkeypatch):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    new_key = ["-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        ["openssl", "req", "-x509", "-days", "1", *new_key, *subject],
        check=True,
        capture_output=True,
    )
    tls = {"cert-file": cert, "key-file": key, "ca-cert-file": cert, "auth-clients": "no"}
    options = [part for name, value in tls.items() for part in (f"--tls-{name}", str(value))]
    server = own_redis(*options, port=0, tls_port=free_port())
    url = f"rediss://127.0.0.1:{server.tls_port}/1"

    def attempt(query: dict | None = None):
        async def scenario():
            pipe = RedisPipe(f"{url}?{urlencode(query)}" if query else url, timeout=5)
            try:
                return await pipe.execute("ECHO", "private")
            except RedisUnavailable as exc:
                return exc
            finally:
                pipe.close()

        return run(scenario)

    # An unknown certificate authority: refused.
    assert isinstance(attempt(), RedisUnavailable)
    # The URL's TLS options, read as redis-py's client (and so the cache) reads them: the
    # authority named, or no check at all, as a managed Redis with its own certificate needs.
    assert attempt({"ssl_ca_certs": str(cert)}) == b"private"
    assert attempt({"ssl_cert_reqs": "none"}) == b"private"
    with redis.Redis.from_url(f"{url}?ssl_cert_reqs=none") as client:
        assert client.echo("private") == b"private"
    # An option that makes no sense refuses the connection like a server that is not there.
    assert isinstance(attempt({"ssl_cert_reqs": "sometimes"}), RedisUnavailable)
    assert isinstance(attempt({"ssl_ca_certs": str(tmp_path / "missing.pem")}), RedisUnavailable)
    # The same server once its certificate is trusted (OpenSSL reads SSL_CERT_FILE).
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert attempt() == b"private"
