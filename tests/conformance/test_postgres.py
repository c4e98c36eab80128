"""The conformance suite against the PostgreSQL backend (a real server; see tests/postgres_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskstore.testing import JOIN_TRANSACTION, MULTIPROCESS, SHARED, ConformanceSuite

from ..postgres_server import new_schema, with_schema


class _Transaction:
    def __init__(self, url: str, schema: str) -> None:
        self.conn: Any = psycopg.connect(url)  # not autocommit: the first statement opens a transaction
        self.conn.execute(
            sql.SQL("CREATE TABLE {}.orders (id serial PRIMARY KEY, item text)").format(sql.Identifier(schema))
        )
        self.conn.commit()
        self.conn.execute(sql.SQL("INSERT INTO {}.orders (item) VALUES ('book')").format(sql.Identifier(schema)))

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()


class TestPostgres(ConformanceSuite):
    capabilities = frozenset({SHARED, MULTIPROCESS, JOIN_TRANSACTION})

    @pytest.fixture
    def schema(self) -> str:
        return new_schema()

    @pytest.fixture
    def store_url(self, postgres_db: str, schema: str) -> str:
        return with_schema(postgres_db, schema)

    @pytest.fixture
    def caller_transaction(self, postgres_db: str, schema: str, store: Any) -> Iterator[_Transaction]:
        tx = _Transaction(postgres_db, schema)
        yield tx
        tx.conn.close()
