"""gunicorn settings: ``gunicorn compliance.asgi --config python:compliance.gunicorn_conf``.

Each worker process runs an event loop (compliance/gunicorn_worker.py) that answers the
consent check's hot path itself and hands every other request to Django in a pool of
``WEB_THREADS`` threads (compliance/asgi.py). The access log shows the path without the
query string (compliance.asgi.AccessLog): query strings may carry identities, which must
never reach a log."""

import os

# For a 2-core machine: a worker per core; a thread of Django waiting on PostgreSQL lets
# another one of its worker run. Measured in bench/README.md (consent_check).
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "compliance.gunicorn_worker.Worker"
timeout = 60
accesslog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
