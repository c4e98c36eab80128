"""The conformance suite against the SQLite backend."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskstore.testing import JOIN_TRANSACTION, MULTIPROCESS, SHARED, ConformanceSuite


class _Transaction:
    def __init__(self, path: Path) -> None:
        self.conn: Any = sqlite3.connect(path)  # the standard library's default: implicit transactions
        self.conn.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT)")
        self.conn.commit()
        self.conn.execute("INSERT INTO orders (item) VALUES ('book')")  # opens the business transaction

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()


class TestSQLite(ConformanceSuite):
    capabilities = frozenset({SHARED, MULTIPROCESS, JOIN_TRANSACTION})

    @pytest.fixture
    def db_path(self, tmp_path: Path) -> Path:
        return tmp_path / "tasks.db"

    @pytest.fixture
    def store_url(self, db_path: Path) -> str:
        return f"sqlite:///{db_path}"

    @pytest.fixture
    def caller_transaction(self, db_path: Path, store: Any) -> Iterator[_Transaction]:
        # ``store`` first: the schema exists before the application's connection opens.
        tx = _Transaction(db_path)
        yield tx
        tx.conn.close()
