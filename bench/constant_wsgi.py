"""A WSGI application that answers every request with the same small JSON body and does
nothing else: ``bench/consent_check.py --floor`` serves it with the project's gunicorn
settings to show the best latency the machine gives at the benchmark's concurrency."""

BODY = b'{"status":"ok"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
