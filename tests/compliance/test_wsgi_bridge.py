"""``compliance.wsgi_bridge.WsgiBridge``, the way every request but the consent check's hot
path reaches Django in the deployed server: WSGI applications of the test's own behind the
bridge, served by uvicorn with the gunicorn worker's settings over real sockets. Whole
bodies, streamed ones (sent before the application has finished), request bodies (read in
the loop: slow, stalled, chunked, too large, abandoned), the legacy ``write()``, errors,
``close()`` and the environ."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from compliance import wsgi_bridge
from compliance.wsgi_bridge import WsgiBridge
from tests.consent.asgi_support import LiveAsgi


class Recorder:
    """A WSGI application whose behaviour each test sets (``self.respond``), keeping the
    environ it saw and where its iterable was closed."""

    def __init__(self) -> None:
        self.environ: dict = {}
        self.closed_in: list[str] = []
        self.respond = None

    def __call__(self, environ, start_response):
        self.environ = environ
        return self.respond(environ, start_response)


class Closing:
    """A response body with ``close()``, like Django's responses: in memory
    (``streaming = False``, as ``HttpResponse``) or produced as it is iterated."""

    def __init__(self, chunks, recorder: Recorder, *, streaming: bool) -> None:
        self.chunks, self.recorder, self.streaming = chunks, recorder, streaming

    def __iter__(self):
        yield from self.chunks

    def close(self) -> None:
        self.recorder.closed_in.append(threading.current_thread().name)


@pytest.fixture(scope="module")
def app():
    return Recorder()


@pytest.fixture(scope="module")
def server(app):
    live = LiveAsgi(application=WsgiBridge(app, workers=2))
    yield live
    live.stop()


def raw(server: LiveAsgi, request: bytes, *, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def get(target: str, method: str = "GET") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()


def split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return int(lines[0].split()[1]), headers, body


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, body = out + body[:size], body[size + 2 :]


@pytest.mark.parametrize("streaming", [False, True])
def test_a_body_arrives_whole_with_its_status_and_headers(server, app, streaming):
    chunks = [b"x" * 5000 for _ in range(40)] + [b"end"]

    def respond(environ, start_response):
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Kind", "Test ")])
        return Closing(chunks, app, streaming=streaming)

    app.respond = respond
    app.closed_in.clear()
    status, headers, body = split(raw(server, get("/whole")))
    assert status == 201
    assert headers["content-type"] == "text/plain" and headers["x-kind"] == "Test"
    assert body == b"".join(chunks)
    assert len(app.closed_in) == 1 and app.closed_in[0].startswith("django")


def test_a_stream_is_sent_before_the_application_has_finished(server, app):
    go_on = threading.Event()

    def respond(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"a" * 20_000  # more than the bridge gathers before sending
            if not go_on.wait(timeout=10):
                yield b"timed out"
                return
            yield b"b" * 10

        return body()

    app.respond = respond
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(get("/stream"))
        first = b""
        while first.count(b"a") < 20_000:
            first += sock.recv(65536)
        go_on.set()  # only once the first part has arrived
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    _, headers, body = split(first + rest)
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"a" * 20_000 + b"b" * 10


def test_the_request_body_is_read_by_the_application(server, app):
    def respond(environ, start_response):
        data = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d:%s" % (len(data), data[-5:])]

    app.respond = respond
    payload = b"p" * 300_000 + b"tail!"
    request = (
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(payload)
    ) + payload
    assert split(raw(server, request))[2] == b"300005:tail!"


def test_the_legacy_write_callable_sends_what_it_is_given(server, app):
    def respond(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written, ")
        return [b"then returned"]

    app.respond = respond
    assert split(raw(server, get("/write")))[2] == b"written, then returned"


def test_a_start_replaced_with_exc_info_before_anything_was_sent(server, app):
    def respond(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("boom")
        except ValueError as exc:
            start_response("500 Internal Server Error", [("X-Error", "1")], (None, exc, None))
        return [b"sorry"]

    app.respond = respond
    status, headers, body = split(raw(server, get("/replaced")))
    assert (status, headers.get("x-error"), body) == (500, "1", b"sorry")


def test_an_application_that_raises_gets_a_500_and_the_server_goes_on(server, app):
    def broken(environ, start_response):
        raise RuntimeError("a bug")

    app.respond = broken
    assert split(raw(server, get("/broken")))[0] == 500

    def fine(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    app.respond = fine
    assert split(raw(server, get("/fine")))[2] == b"ok"


def test_the_environ(server, app):
    def respond(environ, start_response):
        start_response("204 No Content", [])
        return []

    app.respond = respond
    request = (
        b"GET /p%C3%A5th?x=%C3%A5&y=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert split(raw(server, request))[0] == 204
    environ = app.environ
    assert environ["PATH_INFO"] == "/påth".encode().decode("latin-1")  # PEP 3333
    assert environ["QUERY_STRING"] == "x=%C3%A5&y=1"
    assert environ["HTTP_X_A"] == "1,2"
    assert environ["REQUEST_METHOD"] == "GET" and environ["wsgi.url_scheme"] == "http"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_head_gets_the_headers_without_the_body(server, app):
    def respond(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]

    app.respond = respond
    started = time.monotonic()
    response = raw(server, get("/head", method="HEAD"))
    assert time.monotonic() - started < 5
    status, headers, body = split(response)
    assert (status, headers["content-length"], body) == (200, "5", b"")


# Request bodies are read in the loop before a thread is given the request.


class Echo(Recorder):
    """Answers with the length of the body it read and its last bytes; counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.refuse_bodies = False  # answer 413 without reading, as Django's limits do

    def __call__(self, environ, start_response):
        self.calls += 1
        self.environ = environ
        if environ["REQUEST_METHOD"] == "GET":
            start_response("200 OK", [])
            return [b"get"]
        if self.refuse_bodies:
            start_response("413 Payload Too Large", [("Connection", "close")])
            return [b"too large"]
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d:%s" % (len(data), data[-5:])]


@pytest.fixture
def one_thread(monkeypatch):
    """A bridge with one thread for Django, and a body timeout short enough to wait for."""
    monkeypatch.setattr(wsgi_bridge, "BODY_TIMEOUT_SECONDS", 1.0)
    echo = Echo()
    live = LiveAsgi(application=WsgiBridge(echo, workers=1))
    yield live, echo
    live.stop()


def post_head(length: int | None, *, close: bool = True) -> bytes:
    framing = b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
    connection = b"Connection: close\r\n" if close else b""
    return b"POST /echo HTTP/1.1\r\nHost: localhost\r\n%s%s\r\n\r\n" % (connection, framing)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def send_slowly(server: LiveAsgi, pieces: list[bytes], pause: float) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(pause)
        received = b""
        while data := sock.recv(65536):
            received += data
        return received


def test_a_body_sent_slowly_but_steadily_arrives_whole(one_thread):
    server, _ = one_thread
    pieces = [post_head(40)] + [b"0123456789"] * 4
    assert split(send_slowly(server, pieces, pause=0.2))[2] == b"40:56789"


def test_a_body_that_stops_gets_408_and_never_holds_a_thread(one_thread):
    server, echo = one_thread
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        stalled.sendall(post_head(100) + b"only ten b")
        time.sleep(0.1)
        # Meanwhile Django's one thread answers others at once.
        started = time.monotonic()
        assert split(raw(server, get("/other")))[2] == b"get"
        assert time.monotonic() - started < 0.8  # not after the body's 1 s
        received = b""
        while data := stalled.recv(65536):
            received += data
    status, _, body = split(received)
    assert (status, body) == (408, b"The request's body did not arrive in time.")
    assert echo.calls == 1  # the GET only: the stalled POST never reached the application


def test_a_chunked_body_reaches_django_with_its_length(one_thread):
    server, echo = one_thread
    request = post_head(None) + chunk(b"a" * 3000) + chunk(b"tail!") + b"0\r\n\r\n"
    assert split(raw(server, request))[2] == b"3005:tail!"
    assert echo.environ["CONTENT_LENGTH"] == "3005"


def test_a_chunked_body_over_the_limit_gets_413(one_thread, settings):
    server, echo = one_thread
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    request = post_head(None) + chunk(b"a" * 4000) + chunk(b"b" * 100) + b"0\r\n\r\n"
    status, _, body = split(raw(server, request))
    assert (status, body) == (413, b"The request's body is larger than 4096 bytes.")
    assert echo.calls == 0


def test_a_body_declared_over_the_limit_is_left_to_django_unread(one_thread, settings):
    server, echo = one_thread
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    echo.refuse_bodies = True
    # Only the head is sent: the answer does not wait for the 5,000 bytes announced.
    status, _, body = split(raw(server, post_head(5000)))
    assert (status, body, echo.calls) == (413, b"too large", 1)


def test_a_client_gone_before_its_body_ended_never_reaches_the_application(one_thread):
    server, echo = one_thread
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post_head(100) + b"half")
    time.sleep(0.2)
    assert split(raw(server, get("/after")))[2] == b"get"
    assert echo.calls == 1


def test_bodies_held_at_once_stay_within_the_worker_budget(one_thread, settings):
    server, _ = one_thread
    settings.WEB_BODY_BUFFER_BYTES = 10_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        # 8,000 bytes held while the rest is awaited...
        stalled.sendall(post_head(9_000) + b"s" * 8_000)
        time.sleep(0.2)
        # ...so a body declared beyond what is left is refused before it is read,
        busy = split(raw(server, post_head(5_000)))
        # and a chunked one once it grows beyond it.
        chunked = post_head(None) + chunk(b"c" * 1_500) + chunk(b"c" * 1_500) + b"0\r\n\r\n"
        busy_chunked = split(raw(server, chunked))
        # A body that fits is served meanwhile.
        assert split(raw(server, post_head(1_000) + b"f" * 1_000))[2] == b"1000:fffff"
        while stalled.recv(65536):  # the stalled upload ends in 408, and its share is freed
            pass
    status, headers, body = busy
    assert (status, headers["retry-after"]) == (503, "1")
    assert body == b"The server is receiving too much at once; send this again shortly."
    assert busy_chunked[0] == 503
    assert split(raw(server, post_head(5_000) + b"a" * 5_000))[2] == b"5000:aaaaa"
    assert server.application.buffered == 0
