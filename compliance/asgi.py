"""The ASGI application the server runs: ``gunicorn compliance.asgi`` with the worker of
``compliance.gunicorn_conf`` (``compliance/gunicorn_worker.py``: uvicorn's event loop in
each gunicorn worker process).

``GET /api/v1/consent/check``, the hot path, is answered in the worker's event loop
(``consent/hotpath_asgi.py``); every other request goes to Django's WSGI application
(``compliance/wsgi.py``) in a pool of ``WEB_THREADS`` threads per worker. The access log is
written here, with the path and never the query string (query strings may carry
identities) nor the client's address.
"""

import gc
import logging
import os
import time

from compliance.wsgi import application as wsgi_application  # sets Django up first
from consent.hotpath_asgi import ConsentCheckFront

# gunicorn's access log (--access-logfile). Not "uvicorn.access": uvicorn writes its own
# line, query string included, to that logger whenever it has a handler
# (compliance/gunicorn_worker.py leaves it none).
access_logger = logging.getLogger("gunicorn.access")


class AccessLog:
    """One line per HTTP request: ``"METHOD /path" status bytes durationms``. Neither the
    query string nor the client's IP address, both personal data (GDPR Art. 4(1))."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not access_logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status, size = 0, 0

        async def sending(message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            access_logger.info(
                '"%s %s" %s %s %dms',
                scope["method"],
                scope["path"],
                status or 500,
                size,
                (time.monotonic() - started) * 1000,
            )


def build(threads: int) -> AccessLog:
    return AccessLog(ConsentCheckFront(wsgi_application, threads=threads))


application = build(threads=int(os.environ.get("WEB_THREADS", "4")))

# What is loaded by now lives as long as the worker: out of the collector's sight, so that a
# full collection (about 75 ms over the loaded application, on the 2-core machine) never
# stalls the event loop and every request waiting on it.
gc.freeze()
