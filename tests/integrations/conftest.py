"""A real HTTP receiver for webhooks, on 127.0.0.1 in a thread."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        receiver: Receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, location = receiver.answer
        if status == 0:  # "hang": answer later than any client waits
            time.sleep(3)
            status = 200
        with receiver.lock:
            receiver.requests.append(
                {
                    "path": self.path,
                    "headers": {k: v for k, v in self.headers.items()},
                    "body": body,
                    "json": json.loads(body) if body else None,
                    "answered": status,
                }
            )
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        reply = b"receiver says: not today" if status >= 300 else b"ok"
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format, *args):
        pass


class Receiver:
    """Records every request; ``answer`` is (status, Location header) for the next ones."""

    def __init__(self, port: int | None = None):
        self.port = port or _free_port()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.answer: tuple[int, str] = (200, "")
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        server.daemon_threads = True
        server.receiver = self
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if 200 <= r["answered"] < 300]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def receiver():
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def stopped_receiver():
    """A receiver whose port answers nothing until the test calls ``.start()``."""
    waiting = Receiver()
    yield waiting
    waiting.stop()
