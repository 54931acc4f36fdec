"""The README's first command, as a newcomer runs it: the embedded demo (SQLite, the
filesystem broker, demo data) set up and served by ``manage.py serve`` (gunicorn with the
deployed worker, a Celery worker and beat) in fresh processes with nothing configured, then
used over HTTP with the demo key it wrote. The only test of the request paths on SQLite:
ingest through the ORM, the consent guard's refusal count written after the transaction,
the consent check without a shared cache, a receipt verified with the published keys."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Demo:
    def __init__(self, var: Path, port: int) -> None:
        self.var, self.base = var, f"http://127.0.0.1:{port}"
        self.key = ""

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    var = tmp_path_factory.mktemp("embedded") / "var"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(var.parent),
        "COMPLIANCE_VAR_DIR": str(var),
        "COMPLIANCE_LOCAL_DEMO": "false",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    manage = [sys.executable, "manage.py"]
    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v", "0"]):
        subprocess.run([*manage, *step], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run(
        [*manage, "seed_demo"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600
    )
    port = free_port()
    log = (var / "serve.log").open("w")
    server = subprocess.Popen(
        [*manage, "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = Demo(var, port)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (var / "serve.log").read_text()
            try:
                with urllib.request.urlopen(running.base + "/readyz", timeout=2):  # noqa: S310
                    break
            except (OSError, urllib.error.URLError):
                assert time.monotonic() < deadline, "the demo did not become ready"
                time.sleep(0.3)
        running.key = (var / "demo_api_key").read_text().strip()
        yield running
    finally:
        server.send_signal(signal.SIGTERM)  # serve stops gunicorn, the worker and beat
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    assert server.returncode == 0, (var / "serve.log").read_text()


def conversation(conversation_id: str, customer_id: str) -> dict:
    return {
        "system": "shop-assistant",
        "conversation_id": conversation_id,
        "subject": {"customer_id": customer_id},
        "messages": [
            {
                "sequence": n,
                "role": "customer" if n % 2 == 0 else "assistant",
                "text": f"message {n}",
                "sent_at": f"2026-11-27T09:00:0{n}Z",
            }
            for n in range(3)
        ],
    }


def test_the_demo_serves_the_consent_check_from_its_demo_data(demo):
    status, answer = demo.call(
        "GET", "/api/v1/consent/check?subject=customer_id:DEMO-0001&purpose=marketing"
    )
    assert status == 200
    assert set(answer) == {"allowed", "reason", "state_since"}
    assert answer["reason"] != "unknown_subject_default"  # the seeded customer is known


def test_conversations_are_stored_and_a_withdrawal_stops_them(demo):
    status, stored = demo.call(
        "POST", "/api/v1/conversations/", {"conversations": [conversation("smoke-1", "SMOKE-1")]}
    )
    assert status == 201, stored
    assert stored["messages_created"] == 3
    again = demo.call(
        "POST", "/api/v1/conversations/", {"conversations": [conversation("smoke-1", "SMOKE-1")]}
    )
    assert again[1]["messages_skipped"] == 3  # the same batch again stores nothing

    subject = {"subject": "customer_id:SMOKE-1", "purpose": "conversation-logging"}
    status, event = demo.call("POST", "/api/v1/consent/events/", {**subject, "action": "object"})
    assert status == 201, event
    status, refused = demo.call(
        "POST", "/api/v1/conversations/", {"conversations": [conversation("smoke-2", "SMOKE-1")]}
    )
    assert status == 409, refused
    assert "objected" in refused["error"]["message"]
    check = demo.call(
        "GET", "/api/v1/consent/check?subject=customer_id:SMOKE-1&purpose=conversation-logging"
    )[1]
    assert (check["allowed"], check["reason"]) == (False, "objected")

    status, receipt = demo.call("GET", f"/api/v1/consent/receipts/{event['receipt_id']}")
    assert status == 200
    with urllib.request.urlopen(demo.base + "/.well-known/jwks.json", timeout=10) as published:  # noqa: S310
        keys = {key["kid"]: key for key in json.loads(published.read())["keys"]}
    kid = jwt.get_unverified_header(receipt["jwt"])["kid"]
    claims = jwt.decode(receipt["jwt"], jwt.PyJWK(keys[kid]).key, algorithms=["RS256"])
    assert claims["consentReceiptID"] == event["receipt_id"]
