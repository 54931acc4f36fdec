"""Fixtures of the fault tests: real workers (from the DSAR tests) and a Redis server of
our own, which the tests stop and start. The shared Redis on 6379 is never touched."""

from __future__ import annotations

import socket
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.dsar.fixtures import estate, external_db, workers  # noqa: F401 - fixtures
from tests.dsar.support import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_until(answers, timeout=10, what="our Redis to start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def own_redis():
    server = RedisServer(port=free_port())
    server.start()
    yield server
    server.stop()


@contextmanager
def publishing_to(url: str):
    """Point this test process's Celery producer at another broker for the block."""
    from kombu import pools

    from compliance.celery import app

    def drop_connections() -> None:
        # kombu keeps connection and producer pools per broker URL in a global registry;
        # start from an empty one on both sides of the switch.
        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    names = ("broker_url", "broker_write_url", "broker_read_url")
    previous = {name: app.conf[name] for name in names}
    drop_connections()
    app.conf.update({name: url for name in names})
    try:
        yield
    finally:
        drop_connections()
        app.conf.update(previous)
