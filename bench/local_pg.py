"""The PostgreSQL the small latency scripts measure on, in a schema of their own that is dropped afterwards.

``--postgres`` / $TASKSTORE_BENCH_POSTGRES_URL, else a server answering on 127.0.0.1:5432, else none (the
script says so and skips PostgreSQL).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import socket
from collections.abc import Iterator


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--postgres URL`` and ``--sqlite-only`` / ``--postgres-only``, as every script measuring both takes them."""
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL (default: a server on 127.0.0.1:5432)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--sqlite-only", action="store_true")
    only.add_argument("--postgres-only", action="store_true")


@contextlib.contextmanager
def pg_schema(given: str | None, prefix: str) -> Iterator[str | None]:
    """A URL with a fresh schema ``<prefix>_<random>`` (dropped at exit), or None when no server can be had."""
    pg = given
    if pg is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            pg = "postgresql://postgres@127.0.0.1:5432/postgres"
    if pg is None:
        print("PostgreSQL: skipped (no server; set TASKSTORE_BENCH_POSTGRES_URL)")
        yield None
        return
    schema = f"{prefix}_{secrets.token_hex(3)}"
    try:
        yield f"{pg}{'&' if '?' in pg else '?'}schema={schema}"
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
