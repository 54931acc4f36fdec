"""Each benchmark's own PostgreSQL database: created on the server of ``DATABASE_URL`` (only
host, port, user and password are used), dropped at the end, so a benchmark never touches a
real database or a test run's."""

from __future__ import annotations

import sys
from urllib.parse import urlparse

import psycopg
from psycopg import sql


def dsn(url: str, dbname: str) -> str:
    """``url``'s server with ``dbname`` as the database, as a postgresql:// URL."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        sys.exit(f"DATABASE_URL must name a PostgreSQL server, not {parsed.scheme or url!r}.")
    return parsed._replace(scheme="postgresql", path=f"/{dbname}").geturl()


def admin(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn(url, "postgres"), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        sys.exit(f"Cannot reach PostgreSQL for the benchmark ({first}); see `make test`'s hint.")


def create_database(url: str, name: str) -> None:
    with admin(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str, name: str) -> None:
    with admin(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
