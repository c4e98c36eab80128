"""The conformance suite against the PostgreSQL backend (a real server; see tests/postgres_server.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from taskstore.testing import JOIN_TRANSACTION, MULTIPROCESS, SHARED, ConformanceSuite

from ..postgres_server import new_schema, with_schema


class _Caller:
    """An application's own psycopg connection (sync or async), with an ``orders`` table for its writes."""

    def __init__(self, conn: Any, url: str, schema: str) -> None:
        self.conn = conn
        self.url = url
        self.orders_table = sql.Identifier(schema, "orders")

    async def _run(self, result: Any) -> Any:
        return await result if isinstance(self.conn, psycopg.AsyncConnection) else result

    async def write(self) -> None:
        await self._run(self.conn.execute(sql.SQL("INSERT INTO {} (item) VALUES ('book')").format(self.orders_table)))

    async def commit(self) -> None:
        await self._run(self.conn.commit())

    async def rollback(self) -> None:
        await self._run(self.conn.rollback())

    async def close(self) -> None:
        await self._run(self.conn.close())

    async def orders(self) -> int:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as other:
            cur = await other.execute(sql.SQL("SELECT count(*) FROM {}").format(self.orders_table))
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])


class _Callers:
    """Connections as psycopg hands them out, sync or async (the flavor)."""

    def __init__(self, url: str, schema: str, flavor: str) -> None:
        self.url = url
        self.schema = schema
        self.flavor = flavor
        self.opened: list[_Caller] = []

    async def _open(self, url: str | None = None, **options: Any) -> _Caller:
        url = url or self.url
        if self.flavor == "async":
            conn: Any = await psycopg.AsyncConnection.connect(url, **options)
        else:
            conn = psycopg.connect(url, **options)
        caller = _Caller(conn, self.url, self.schema)
        self.opened.append(caller)
        return caller

    async def fresh(self) -> _Caller:
        return await self._open()  # not autocommit: psycopg begins a transaction before the first statement

    async def autocommit(self, *, begun: bool) -> _Caller:
        caller = await self._open(autocommit=True)
        if begun:
            await caller._run(caller.conn.execute("BEGIN"))
        return caller

    async def aborted(self) -> _Caller:
        caller = await self._open()
        with contextlib.suppress(psycopg.errors.DivisionByZero):
            await caller._run(caller.conn.execute("SELECT 1/0"))
        return caller

    async def elsewhere(self) -> _Caller:
        return await self._open(psycopg.conninfo.make_conninfo(self.url, dbname="postgres"))

    async def close(self) -> None:
        for caller in self.opened:
            await caller.close()


class TestPostgres(ConformanceSuite):
    capabilities = frozenset({SHARED, MULTIPROCESS, JOIN_TRANSACTION})

    @pytest.fixture
    def schema(self) -> str:
        return new_schema()

    @pytest.fixture
    def store_url(self, postgres_db: str, schema: str) -> str:
        return with_schema(postgres_db, schema)

    @pytest_asyncio.fixture(params=["sync", "async"])
    async def caller_connections(
        self, request: pytest.FixtureRequest, postgres_db: str, schema: str, store: Any
    ) -> AsyncIterator[_Callers]:
        # ``store`` first: the schema exists before the application's connections open.
        async with await psycopg.AsyncConnection.connect(postgres_db, autocommit=True) as setup:
            await setup.execute(
                sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, item text)").format(sql.Identifier(schema, "orders"))
            )
        callers = _Callers(postgres_db, schema, request.param)
        yield callers
        await callers.close()
