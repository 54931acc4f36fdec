"""gunicorn's worker for ``compliance.asgi``: uvicorn's server in each worker process, on
uvloop with the httptools parser.

uvicorn's access log is off (its logger keeps no handler): it writes the query string,
which may carry identities; ``compliance.asgi.AccessLog`` writes gunicorn's access log
instead. No ``Server`` header. Proxy headers are believed only from the addresses in
``forwarded_allow_ips``: ``X-Forwarded-Proto`` for the scheme (as gunicorn's own workers
did) and, unlike them, ``X-Forwarded-For`` for the client's address (``REMOTE_ADDR``, which
the portal's per-address limits use).
"""

from uvicorn_worker import UvicornWorker

from compliance.http_limits import HttpProtocol


class Worker(UvicornWorker):
    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": HttpProtocol,  # httptools, with limits on the request's head
        "lifespan": "off",
        "access_log": False,
        "server_header": False,
    }
