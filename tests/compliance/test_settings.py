"""Start-up configuration, tested the way an operator meets it: ``manage.py`` started in a
fresh process with nothing but the environment it is given.

Production mode (``DATABASE_URL`` set) must refuse to start without a secret key, allowed
hosts or a usable database URL, with one line that names the variable and no traceback;
the embedded mode must start with nothing set and keep the secret key it generated.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
# Never connected to: `check` does not open a database connection.
PRODUCTION_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/settings_check_never_created"


def _env(tmp_path: Path, **variables: str | None) -> dict[str, str]:
    """A clean environment: none of the test run's variables leak into the child."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "COMPLIANCE_VAR_DIR": str(tmp_path / "var"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update({name: value for name, value in variables.items() if value is not None})
    return env


def _production(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    variables: dict[str, str | None] = {
        "DATABASE_URL": PRODUCTION_DATABASE_URL,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "privacy.example.com",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    variables.update(overrides)
    return _env(tmp_path, **variables)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _manage_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run(env, "manage.py", "check", "--deploy")


def _settings(env: dict[str, str], *names: str) -> dict:
    """Read settings in a child process that starts Django as manage.py does."""
    script = (
        "import json, os, sys, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'compliance.settings')\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "print(json.dumps({n: getattr(settings, n, None) for n in sys.argv[1:]}, default=str))\n"
    )
    result = _run(env, "-c", script, *names)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_refused_naming(result: subprocess.CompletedProcess[str], variable: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    return lines[0]


# --- Production mode refuses to start -------------------------------------------------------


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = _manage_check(_production(tmp_path, SECRET_KEY=None))

    _assert_refused_naming(result, "SECRET_KEY")


def test_production_treats_an_empty_secret_key_as_missing(tmp_path):
    result = _manage_check(_production(tmp_path, SECRET_KEY=""))

    _assert_refused_naming(result, "SECRET_KEY")


@pytest.mark.parametrize("hosts", [None, "", " , ,"], ids=["unset", "empty", "only-commas"])
def test_production_refuses_to_start_without_allowed_hosts(tmp_path, hosts):
    result = _manage_check(_production(tmp_path, ALLOWED_HOSTS=hosts))

    _assert_refused_naming(result, "ALLOWED_HOSTS")


@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        "postgres://",
        "postgres://db.internal:5432",
        "postgres://db.internal:notaport/compliance",
        "postgres://db.internal:99999999/compliance",
        "mysql://db.internal/compliance",
        "sqlite://",
    ],
)
def test_production_refuses_a_malformed_database_url(tmp_path, url):
    result = _manage_check(_production(tmp_path, DATABASE_URL=url))

    _assert_refused_naming(result, "DATABASE_URL")


def test_the_database_url_error_never_repeats_the_password(tmp_path):
    url = "postgres://compliance:hunter2-not-for-logs@db.internal:notaport/compliance"

    line = _assert_refused_naming(
        _manage_check(_production(tmp_path, DATABASE_URL=url)), "DATABASE_URL"
    )

    assert "hunter2" not in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SECURE_SSL_REDIRECT", "maybe"),
        ("SECURE_HSTS_SECONDS", "a year"),
        ("DEBUG", "yes please"),
        ("WEB_BODY_BUFFER_BYTES", "lots"),
        ("WEB_BODY_BUFFER_BYTES", "4096"),  # less than one API body may be
    ],
)
def test_production_refuses_a_malformed_flag_naming_it(tmp_path, variable, value):
    result = _manage_check(_production(tmp_path, **{variable: value}))

    _assert_refused_naming(result, variable)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CONSENT_RECEIPT_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\\nc2VjcmV0\\n"),
        ("CONSENT_RECEIPT_RETIRED_KEYS", "c2VjcmV0 not a key"),
    ],
)
def test_production_refuses_a_malformed_receipt_key_without_quoting_it(tmp_path, variable, value):
    result = _manage_check(_production(tmp_path, **{variable: value}))

    line = _assert_refused_naming(result, variable)
    assert "c2VjcmV0" not in line


def test_production_starts_with_a_receipt_key_and_retired_ones(tmp_path):
    current, retired = (rsa.generate_private_key(65537, 2048) for _ in range(2))
    private = current.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = retired.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    env = _production(
        tmp_path,
        # As an environment variable usually carries it: one line, with \n escapes.
        CONSENT_RECEIPT_PRIVATE_KEY=private.replace("\n", "\\n"),
        CONSENT_RECEIPT_RETIRED_KEYS=public.decode().replace("\n", "\\n"),
    )
    result = _manage_check(env)

    assert result.returncode == 0, result.stdout + result.stderr


# --- Production mode, configured: secure by default ----------------------------------------


def test_production_passes_the_deployment_checklist(tmp_path):
    result = _manage_check(_production(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    # Only the HSTS preload list stays the operator's choice: submitting a domain to the
    # browsers' preload list cannot be undone quickly, so it is not on by default.
    output = result.stdout + result.stderr
    issues = set(re.findall(r"^\S*: \(([\w.]+)\)", output, flags=re.MULTILINE))
    assert issues <= {"security.W021"}, output


def test_production_turns_on_secure_cookies_hsts_and_the_https_redirect(tmp_path):
    values = _settings(
        _production(tmp_path),
        "DEBUG",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_PROXY_SSL_HEADER",
        "SECURE_CONTENT_TYPE_NOSNIFF",
        "X_FRAME_OPTIONS",
        "ALLOWED_HOSTS",
    )

    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert values["ALLOWED_HOSTS"] == ["privacy.example.com"]


def test_production_answers_with_security_headers_and_redirects_plain_http(tmp_path):
    # Requests through Django's test client in a production-configured process; neither
    # path touches the database.
    script = (
        "import json, os, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'compliance.settings')\n"
        "django.setup()\n"
        "from django.test import Client\n"
        "c = Client(HTTP_HOST='privacy.example.com')\n"
        "secure = c.get('/healthz', headers={'X-Forwarded-Proto': 'https'})\n"
        "plain_admin = c.get('/admin/login/')\n"
        "plain_probe = c.get('/healthz')\n"
        "print(json.dumps({\n"
        "  'secure_status': secure.status_code, 'secure_headers': dict(secure.headers),\n"
        "  'admin_status': plain_admin.status_code,\n"
        "  'admin_location': plain_admin.headers.get('Location', ''),\n"
        "  'probe_status': plain_probe.status_code,\n"
        "}))\n"
    )
    result = _run(_production(tmp_path), "-c", script)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    headers = {k.lower(): v for k, v in seen["secure_headers"].items()}
    assert seen["secure_status"] == 200
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert seen["admin_status"] == 301
    assert seen["admin_location"].startswith("https://privacy.example.com/")
    # Probes from the orchestrator speak plain HTTP inside the network: no redirect for them.
    assert seen["probe_status"] == 200


# --- Embedded mode -------------------------------------------------------------------------


def test_embedded_mode_starts_with_nothing_set(tmp_path):
    result = _manage_check(_env(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_embedded_mode_generates_the_secret_key_once_and_keeps_it(tmp_path):
    key_file = tmp_path / "var" / "secret_key"
    assert not key_file.exists()

    first = _settings(_env(tmp_path), "SECRET_KEY", "DEBUG", "DATABASES")
    generated = key_file.read_text().strip()
    second = _settings(_env(tmp_path), "SECRET_KEY")

    assert len(generated) >= 50
    assert first["SECRET_KEY"] == generated
    assert second["SECRET_KEY"] == generated
    assert key_file.read_text().strip() == generated
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first["DEBUG"] is False
    assert first["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert str(tmp_path / "var") in first["DATABASES"]["default"]["NAME"]


def test_two_embedded_installations_get_different_secret_keys(tmp_path):
    one = _settings(_env(tmp_path / "one"), "SECRET_KEY")["SECRET_KEY"]
    two = _settings(_env(tmp_path / "two"), "SECRET_KEY")["SECRET_KEY"]

    assert one != two


def test_the_local_demo_on_postgresql_needs_no_secret_key_or_host_names(tmp_path):
    # What `make run` sets when DATABASE_URL is given: plain HTTP on localhost.
    env = _production(tmp_path, SECRET_KEY=None, ALLOWED_HOSTS=None, COMPLIANCE_LOCAL_DEMO="true")
    values = _settings(env, "EMBEDDED", "ALLOWED_HOSTS", "SESSION_COOKIE_SECURE", "SECRET_KEY")
    assert values["EMBEDDED"] is False
    assert "localhost" in values["ALLOWED_HOSTS"]
    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["SECRET_KEY"] == (tmp_path / "var" / "secret_key").read_text().strip()
    # Without the demo switch the same environment is production and refuses to start.
    env.pop("COMPLIANCE_LOCAL_DEMO")
    _assert_refused_naming(_manage_check(env), "SECRET_KEY")
