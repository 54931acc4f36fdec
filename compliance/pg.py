"""A psycopg cursor that binds parameters on the server, on Django's connection.

Django's PostgreSQL cursors bind on the client: every parameter is turned into a literal in
the SQL text. For the bulk paths that send whole columns as arrays that means formatting and
quoting thousands of values, and PostgreSQL parsing them again; with server-side binding a
``%b`` parameter travels in binary instead (several times cheaper for a thousand rows).
PostgreSQL only; same connection, same transaction as the ORM.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


@contextmanager
def server_binding_cursor() -> Iterator[psycopg.Cursor]:
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor
