"""Stores as an older taskstore left them: the schema up to a given SQLite version or PostgreSQL migration,
for the upgrade tests to fill with rows and open with the taskstore of today."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
from psycopg import sql

from taskstore.backends._sql import load_script
from taskstore.backends.postgres.driver import _migrations
from taskstore.backends.sqlite.driver import _MIGRATIONS, _statements


def sqlite_at(path: Path, version: int) -> sqlite3.Connection:
    """A new SQLite file at schema ``version``, open in autocommit mode."""
    conn = sqlite3.connect(path, isolation_level=None)
    for step in range(1, version + 1):
        for statement in _statements(load_script("taskstore.backends.sqlite", _MIGRATIONS[step])):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={int(version)}")
    return conn


def postgres_at(conn: psycopg.Connection, schema: str, version: int) -> None:
    """Create ``schema`` with the migrations up to ``version`` applied and recorded, as the driver records them."""
    ident = sql.Identifier(schema)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {}.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL "
            "DEFAULT now())"
        ).format(ident)
    )
    for step, script in _migrations():
        if step <= version:
            conn.execute(sql.SQL(script).format(schema=ident))
            conn.execute(sql.SQL("INSERT INTO {}.schema_migrations VALUES (%s)").format(ident), (step,))
