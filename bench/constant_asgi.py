"""An ASGI application that answers every request with the same small JSON body and does
nothing else: ``bench/consent_check.py --floor`` serves it with the project's gunicorn
settings (the same worker class and count) to show the best latency the machine gives at
the benchmark's concurrency."""

BODY = b'{"status":"ok"}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
}
MESSAGE = {"type": "http.response.body", "body": BODY}


async def application(scope, receive, send):
    if scope["type"] == "http":
        await send(START)
        await send(MESSAGE)
