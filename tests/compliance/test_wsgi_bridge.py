"""``compliance.wsgi_bridge.WsgiBridge``, the way every request but the consent check's hot
path reaches Django in the deployed server: WSGI applications of the test's own behind the
bridge, served by uvicorn with the gunicorn worker's settings over real sockets. Whole
bodies, streamed ones (sent before the application has finished), request bodies, the
legacy ``write()``, errors, ``close()`` and the environ."""

from __future__ import annotations

import socket
import threading
import time

import pytest

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
