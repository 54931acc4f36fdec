"""Requests to a WSGI application as gunicorn hands them over: called in the test's thread
(so its database queries are counted) or served over real HTTP by a server thread."""

from __future__ import annotations

import http.client
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory

# Added by the HTTP server, not by the application: left out of comparisons.
SERVER_HEADERS = {"date", "server", "connection"}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    def comparable(self) -> tuple:
        """Status, the application's headers (names case-folded) and the body."""
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() not in SERVER_HEADERS}
        return self.status, headers, self.body


@contextmanager
def _connection_kept():
    # Django closes "old" connections when a request starts and ends; in the test's own
    # thread that would end the test's connection (Django's test client does the same).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def call_wsgi(application, path: str, query: dict | None = None, **meta) -> Answer:
    """GET through ``application`` in this thread. ``meta`` are WSGI environ entries
    (``HTTP_AUTHORIZATION=...``); the Host header is ``testserver`` unless given."""
    meta.setdefault("HTTP_HOST", "testserver")
    environ = RequestFactory().get(path, query or {}, **meta).environ
    started: dict = {}

    def start_response(status, headers, exc_info=None):
        started.update(status=status, headers=headers)

    with _connection_kept():
        result = application(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
    return Answer(int(started["status"].split()[0]), dict(started["headers"]), body)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


class LiveWsgi:
    """``application`` served over HTTP on 127.0.0.1 by a thread per request, each with its
    own database connection (closed after the request), as in a real server."""

    def __init__(self, application):
        self.server = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler)
        self.server.set_app(application)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def get(self, path: str, query: dict | None = None, headers: dict | None = None) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            target = f"{path}?{urlencode(query)}" if query else path
            connection.request("GET", target, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
