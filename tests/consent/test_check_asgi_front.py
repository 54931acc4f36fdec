"""The deployed server's consent check (``consent/hotpath_asgi.py``, in ``compliance.asgi``):
over real HTTP, uvicorn with the gunicorn worker's settings, it answers what the full view
answers, with the same headers; a check it cannot answer from the cache is settled in a
thread (never in the event loop) and counted once; everything else reaches Django, request
bodies and errors included; the access log has no query string. The tests commit for real.

The last test starts gunicorn itself with ``compliance.gunicorn_conf``, as deployed."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import caches
from django.db import connection

import compliance.asgi
from compliance.models import Jurisdiction
from compliance.services import api_client_create, api_key_issue
from consent import hotpath, hotpath_asgi
from consent.models import SALE_SHARING, ConsentEvent, ConsentSource
from integrations import throttling
from tests.consent.asgi_support import LiveAsgi
from tests.consent.test_check_hot_path import fresh_window, record
from tests.factories import SubjectFactory

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/consent/check"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    live = LiveAsgi()
    yield live
    live.stop()


@pytest.fixture
def key(make_api) -> str:
    return make_api("consent:read").raw_key


@pytest.fixture
def paths(monkeypatch) -> dict[str, int]:
    """How the front answered: in the event loop, in a thread, or not (the full view)."""
    seen = {"loop": 0, "thread": 0, "handed over": 0}
    settle, in_thread = hotpath.settle, hotpath_asgi._settle_in_thread
    worker_thread = {"now": False}

    def counted_settle(planned, reply, lifecycle):
        body = settle(planned, reply, lifecycle)  # NeedsDatabase propagates, uncounted
        where = "thread" if worker_thread["now"] else "loop"
        seen[where if body is not None else "handed over"] += 1
        return body

    def counted_in_thread(*args):
        worker_thread["now"] = True
        try:
            return in_thread(*args)
        finally:
            worker_thread["now"] = False

    monkeypatch.setattr(hotpath, "settle", counted_settle)
    monkeypatch.setattr(hotpath_asgi, "_settle_in_thread", counted_in_thread)
    return seen


def bearer(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


def test_the_deployed_application_is_the_front_with_the_shortcut_s_checks():
    front = compliance.asgi.application.app
    assert isinstance(front, hotpath_asgi.ConsentCheckFront)
    assert isinstance(front.shortcut, hotpath.ConsentCheckShortcut)
    assert front.shortcut.active


def test_the_front_reads_the_request_as_django_s_bridge_does():
    from a2wsgi.wsgi import build_environ

    scope = {
        "type": "http",
        "method": "GET",
        "path": URL,
        "root_path": "",
        "query_string": b"subject=customer_id%3AEU-1&purpose=marketing",
        "http_version": "1.1",
        "scheme": "https",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"privacy.example"),
            (b"authorization", b"Bearer one"),
            (b"authorization", b"Bearer two"),  # repeated: joined, and then refused
            (b"x-forwarded-host", b"elsewhere.example"),
            (b"content-length", b"0"),
            (b"sec-gpc", b"1"),
            (b"x-caf\xe9", b"caf\xe9"),
        ],
    }
    lean = hotpath_asgi._environ(scope)
    full = build_environ(scope, None)
    assert lean.items() <= full.items()
    assert {k for k in full if k.startswith("HTTP_") or k.startswith("CONTENT_")} <= set(lean)


def test_the_front_answers_what_the_full_view_answers(
    server, settings, key, purposes, eu_customer, ca_customer, paths
):
    record("grant", eu_customer, purposes["marketing"])
    record("withdraw", eu_customer, purposes["ai-improvement"])
    record("opt_out", ca_customer, purposes[SALE_SHARING])
    cases = [
        ("customer_id:EU-1", "marketing"),
        ("customer_id:EU-1", "ai-improvement"),
        ("customer_id:EU-1", "analytics"),
        ("email:carl@example.com", SALE_SHARING),
        ("email:carl@example.com", "marketing"),
        ("customer_id:NOBODY", "marketing"),
    ]
    server.get(URL, {"subject": "customer_id:EU-1", "purpose": "marketing"}, bearer(key))
    reasons = set()
    for subject, slug in cases:
        query = {"subject": subject, "purpose": slug}
        answers = [server.get(URL, query, bearer(key)) for _ in range(3)]
        settings.CONSENT_CHECK_HOT_PATH = False
        full = server.get(URL, query, bearer(key))
        settings.CONSENT_CHECK_HOT_PATH = True
        assert full.status == 200, full.body
        for answer in answers:
            assert answer.comparable() == full.comparable(), query
        reasons.add(full.json()["reason"])
    assert reasons == {
        "explicit_grant",
        "withdrawn",
        "default",
        "opted_out",
        "unknown_subject_default",
    }
    # Each known identity's first answer read the database in a thread; every later one,
    # for any purpose, came from the cache in the loop. An unknown identity is never
    # cached: each answer for it is settled in a thread.
    assert (paths["loop"], paths["thread"]) == (2 + 3 + 3 + 2 + 3, 1 + 1 + 3)


def test_what_the_front_does_not_answer_reaches_django_unchanged(
    server, settings, make_api, key, purposes, eu_customer
):
    query = {"subject": "customer_id:EU-1", "purpose": "marketing"}
    for _ in range(2):
        server.get(URL, query, bearer(key))
    refused = server.get(URL, query, bearer("not-a-key"))
    assert refused.status == 401
    assert refused.headers["www-authenticate"] == 'Bearer realm="api"'
    assert server.get(URL, {**query, "purpose": "nope"}, bearer(key)).status == 404
    malformed = server.get(URL, {**query, "subject": "email:not-an-email"}, bearer(key))
    assert malformed.status == 400
    assert "not-an-email" not in malformed.body.decode()
    scoped = make_api("consent:write").raw_key
    assert server.get(URL, query, bearer(scoped)).status == 403
    # A body goes through to Django: the batch check.
    batch = server.request(
        "POST",
        URL,
        headers={**bearer(key), "Content-Type": "application/json"},
        body=json.dumps({"checks": [query, {**query, "purpose": "analytics"}]}).encode(),
    )
    assert batch.status == 200, batch.body
    assert [r["reason"] for r in batch.json()["results"]] == ["default", "default"]
    # Sec-GPC: the full view records the opt-out (CCPA regulations §7025).
    gpc = server.get(URL, {**query, "purpose": SALE_SHARING}, {**bearer(key), "Sec-GPC": "1"})
    assert gpc.status == 200
    assert ConsentEvent.objects.filter(subject=eu_customer, source=ConsentSource.GPC).exists()
    assert server.get("/healthz").status == 200


def test_the_front_spends_the_same_budget_and_a_429_comes_from_the_view(
    server, settings, make_api, purposes, eu_customer, paths
):
    settings.API_RATE_PER_MINUTE = 4
    fresh_window()
    api = make_api("consent:read")
    query = {"subject": "customer_id:EU-1", "purpose": "marketing"}
    statuses = [server.get(URL, query, bearer(api.raw_key)).status for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    window = int(time.time() // throttling.WINDOW_SECONDS)
    # The refused request is counted once more by the view, as on the WSGI path.
    assert caches["default"].get(throttling.counter_key(api.api_client.pk, window)) == 6
    assert paths["loop"] >= 1


def test_a_check_settled_in_a_thread_is_counted_once(
    server, settings, make_api, purposes, paths
):
    settings.API_RATE_PER_MINUTE = 1000
    fresh_window()
    api = make_api("consent:read")
    query = {"subject": "customer_id:NEW-1", "purpose": "marketing"}
    server.get(URL, query, bearer(api.raw_key))  # caches the key
    SubjectFactory(external_id="NEW-1", jurisdiction=Jurisdiction.EU)
    answer = server.get(URL, query, bearer(api.raw_key))  # not cached yet: a thread
    assert answer.json()["reason"] == "default"
    assert paths == {"loop": 0, "thread": 1, "handed over": 1}
    window = int(time.time() // throttling.WINDOW_SECONDS)
    assert caches["default"].get(throttling.counter_key(api.api_client.pk, window)) == 2


def test_the_access_log_has_the_path_and_never_the_query(server, key, purposes, eu_customer):
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    # gunicorn's access log (the last test checks that uvicorn's own stays silent there).
    logger = logging.getLogger("gunicorn.access")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        query = {"subject": "email:eva@example.de", "purpose": "marketing"}
        for _ in range(3):
            server.get(URL, query, bearer(key))
        server.get(URL, {"subject": "customer_id:EU-1", "purpose": "nope"}, bearer(key))
        # The line is written once the application returns, just after the answer.
        deadline = time.monotonic() + 5
        while len(lines) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert len(lines) == 4
    assert all(f'"GET {URL}" ' in line for line in lines), lines
    assert [line.split('" ')[1].split()[0] for line in lines] == ["200", "200", "200", "404"]
    assert not [line for line in lines if "eva" in line or "EU-1" in line or "?" in line]
    assert not [line for line in lines if "127.0.0.1" in line]  # nor the client's address


@pytest.mark.slow
def test_gunicorn_with_the_deployed_settings_serves_the_front(key, purposes, eu_customer, tmp_path):
    """gunicorn, compliance.gunicorn_conf and compliance.asgi as deployed: the check (from
    the cache after the first answers), a batch with a body, the access log."""
    client = api_client_create(name="gunicorn", scopes=["consent:read"], actor="test")
    _, raw = api_key_issue(client=client, actor="test")
    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}"
        f"/{database['NAME']}",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "2",
        "COMPLIANCE_TESTING": "true",  # a cache key prefix of its own
    }
    env.pop("TEST_DATABASE_NAME", None)
    log = tmp_path / "access.log"
    from tests.faults.conftest import free_port

    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "compliance.asgi",
            "--config",
            "python:compliance.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--access-logfile",
            str(log),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        import http.client

        def get(path, headers=None, method="GET", body=None):
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request(method, path, body=body, headers=headers or {})
                    response = conn.getresponse()
                    return response.status, dict(response.getheaders()), response.read()
                except ConnectionRefusedError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.2)

        assert get("/healthz")[0] == 200
        target = f"{URL}?subject=customer_id:EU-1&purpose=marketing"
        answers = [get(target, bearer(raw)) for _ in range(4)]
        assert [status for status, _, _ in answers] == [200] * 4
        assert {body for _, _, body in answers} == {
            b'{"allowed":false,"reason":"default","state_since":null}'
        }
        headers = {name.lower() for name in answers[-1][1]}
        assert "server" not in headers
        assert {"x-content-type-options", "x-frame-options", "allow"} <= headers
        status, _, body = get(
            URL,
            {**bearer(raw), "Content-Type": "application/json"},
            "POST",
            json.dumps({"checks": [{"subject": "customer_id:EU-1", "purpose": "marketing"}]}),
        )
        assert status == 200, body
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    written = log.read_text()
    assert written.count(f'"GET {URL}" 200') == 4, written
    assert f'"POST {URL}" 200' in written
    assert "EU-1" not in written and "subject" not in written
