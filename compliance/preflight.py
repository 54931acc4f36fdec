"""Check that the test services answer before the suite starts; say which one and how to
start it instead of failing with a traceback. Run as ``python -m compliance.preflight``."""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

HINTS = {
    "PostgreSQL": "start it with: pg_ctlcluster --skip-systemctl-redirect "
    "$(ls /etc/postgresql) main start   (or set DATABASE_URL)",
    "Redis": "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
    "--save '' --appendonly no   (or set REDIS_URL / CELERY_BROKER_URL)",
}


def _reachable(url: str, default_port: int) -> tuple[bool, str]:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return True, f"{host}:{port}"
    except OSError:
        return False, f"{host}:{port}"


def main() -> int:
    checks = [
        ("PostgreSQL", os.environ.get("DATABASE_URL", ""), 5432),
        ("Redis", os.environ.get("CELERY_BROKER_URL", ""), 6379),
    ]
    failed = False
    for name, url, port in checks:
        if not url:
            print(f"{name}: no URL set for the test run.", file=sys.stderr)
            failed = True
            continue
        ok, where = _reachable(url, port)
        if not ok:
            print(f"{name} is not answering at {where}; {HINTS[name]}", file=sys.stderr)
            failed = True
    if not failed:
        try:
            import psycopg

            psycopg.connect(_admin_dsn(os.environ["DATABASE_URL"]), connect_timeout=3).close()
        except Exception as exc:
            print(
                f"PostgreSQL answers but refuses the connection ({exc.__class__.__name__}: "
                f"{str(exc).strip().splitlines()[0]}).",
                file=sys.stderr,
            )
            failed = True
    return 1 if failed else 0


def _admin_dsn(url: str) -> str:
    # Connect to the maintenance database: the test database may not exist yet.
    parsed = urlparse(url)
    return parsed._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)


if __name__ == "__main__":
    sys.exit(main())
