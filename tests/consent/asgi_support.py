"""The deployed ASGI application (``compliance.asgi``) served over real HTTP by uvicorn,
with the settings of the gunicorn worker (``compliance.gunicorn_worker``), in a thread of
the test process: the server's threads use the test database and settings. Each server has
an application of its own, whose threads' database connections it closes when it stops."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from urllib.parse import urlencode

import uvicorn
from django.db import connections

import compliance.asgi
from compliance.gunicorn_worker import Worker
from tests.consent.wsgi_support import Answer


class LiveAsgi:
    def __init__(self, threads: int = 4, *, application=None, **config):
        """``compliance.asgi``'s application, or ``application`` (a ``WsgiBridge``);
        ``config``: more of uvicorn's settings (``forwarded_allow_ips``)."""
        if application is None:
            application = compliance.asgi.build(threads=threads)
            self.executor = application.app.django.executor
        else:
            self.executor = application.executor
        self.application = application
        config = uvicorn.Config(
            self.application,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            **{**Worker.CONFIG_KWARGS, **config},
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def _run(self) -> None:
        loop_factory = self.server.config.get_loop_factory() or asyncio.new_event_loop
        loop = loop_factory()
        try:
            loop.run_until_complete(self.server.serve())
        finally:
            loop.close()

    def request(
        self,
        method: str,
        path: str,
        query: dict | None = None,
        headers: dict | None = None,
        body: bytes | None = None,
    ) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            target = f"{path}?{urlencode(query)}" if query else path
            connection.request(method, target, body=body, headers=headers or {})
            response = connection.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def get(self, path: str, query: dict | None = None, headers: dict | None = None) -> Answer:
        return self.request("GET", path, query, headers)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        # Django's threads keep their connections (CONN_MAX_AGE): close each one's in it.
        executor = self.executor
        started = len(executor._threads)
        if started:
            barrier = threading.Barrier(started, timeout=10)

            def close_in_this_thread() -> None:
                connections.close_all()
                barrier.wait()  # so that every thread runs one

            for future in [executor.submit(close_in_this_thread) for _ in range(started)]:
                future.result()
        executor.shutdown(wait=True)


def count_hot_answers(monkeypatch, *, front: str) -> list[bool]:
    """Whether each check the hot path tried, it answered itself (it still does all the work
    either way): counted at ``answer()`` for the WSGI ways in (``front="wsgi"``), at
    ``settle()`` for the ASGI front (``front="asgi"``), which runs the script itself."""
    from consent import hotpath

    answered: list[bool] = []
    name = "settle" if front == "asgi" else "answer"
    hot_path = getattr(hotpath, name)

    def counted(*args, **kwargs):
        body = hot_path(*args, **kwargs)
        answered.append(body is not None)
        return body

    monkeypatch.setattr(hotpath, name, counted)
    return answered
