"""``fn.options(conn=…)``: the enqueue joins the caller's transaction, whatever library holds it.

SQLAlchemy (sync and asyncio), raw sqlite3 and psycopg connections, on SQLite and PostgreSQL: the task exists if
and only if the caller's transaction commits, and the insert runs on the caller's connection in the caller's
thread. (Django's connection: tests/integration/test_django_app.py.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from taskstore import App, TaskFunction, errors
from taskstore._joins import resolve


@dataclass
class Setup:
    app: App
    echo: TaskFunction[[int], int]
    sa_url: str  # the same database, for SQLAlchemy
    async_sa_url: str
    raw: str  # "sqlite" or "postgres"
    dsn: str  # for a raw driver connection

    def exists(self, task_id: str) -> bool:
        async def look() -> bool:
            store = await self.app.store()
            try:
                await store.get(task_id)
            except errors.NotFound:
                return False
            return True

        return self.app.run_sync(look())


@pytest.fixture(params=["sqlite", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    if request.param == "sqlite":
        path = tmp_path / "app.db"
        url, sa, asa, dsn = f"sqlite:///{path}", f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}", str(path)
    else:
        from ..postgres_server import new_schema, with_schema

        base = request.getfixturevalue("postgres_db")
        url = with_schema(base, new_schema())
        sa = base.replace("postgresql://", "postgresql+psycopg://", 1)
        url, asa, dsn = url, sa, base
    app = App(url, name="joins")

    @app.task(queue="q")
    def echo(x: int) -> int:
        return x

    setup = Setup(app, echo, sa, asa, request.param, dsn)
    yield setup
    app.close()


@pytest.fixture
def engine(setup: Setup) -> Iterator[Engine]:
    eng = create_engine(setup.sa_url)
    yield eng
    eng.dispose()


@pytest_asyncio.fixture
async def async_engine(setup: Setup) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(setup.async_sa_url)
    yield eng
    await eng.dispose()


def test_a_session_that_commits_keeps_the_task_and_one_that_rolls_back_never_had_it(
    setup: Setup, engine: Engine
) -> None:
    with Session(engine) as session, session.begin():
        session.execute(text("SELECT 1"))
        kept = setup.echo.options(conn=session).enqueue_sync(1)
    with Session(engine) as session:
        session.begin()
        dropped = setup.echo.options(conn=session).enqueue_sync(2)
        assert dropped.task is not None
        assert dropped.task.queue == "q"
        session.rollback()
    assert setup.exists(kept.id)
    assert not setup.exists(dropped.id)


def test_a_connection_outside_a_transaction_begins_one_the_caller_commits(setup: Setup, engine: Engine) -> None:
    with engine.connect() as conn:
        handle = setup.echo.options(conn=conn).enqueue_sync(1)
        assert conn.in_transaction()
        assert not setup.exists(handle.id)  # not committed yet: nobody else sees it
        conn.commit()
    assert setup.exists(handle.id)


@pytest.mark.asyncio
async def test_an_async_session_joins_on_the_callers_loop(setup: Setup, async_engine: AsyncEngine) -> None:
    async with AsyncSession(async_engine) as session, session.begin():
        kept = await setup.echo.options(conn=session).enqueue(1)
    async with AsyncSession(async_engine) as session:
        await session.begin()
        dropped = await setup.echo.options(conn=session).enqueue(2)
        await session.rollback()
    store = await setup.app.store()
    assert (await store.get(kept.id)).args == {"args": [1], "kwargs": {}}
    with pytest.raises(errors.NotFound):
        await store.get(dropped.id)


def test_a_raw_connection_of_the_callers_thread_is_used_in_that_thread(setup: Setup) -> None:
    # sqlite3's check_same_thread: only this thread may use it.
    raw: Any = sqlite3.connect(setup.dsn) if setup.raw == "sqlite" else psycopg.connect(setup.dsn)
    try:
        handle = setup.echo.options(conn=raw).enqueue_sync(5)
        raw.commit()
    finally:
        raw.close()
    assert setup.exists(handle.id)


@pytest.mark.asyncio
async def test_an_async_connection_given_to_a_sync_enqueue_is_refused(setup: Setup) -> None:
    if setup.raw == "sqlite":
        pytest.skip("sqlite3 has no async connection")
    async with await psycopg.AsyncConnection.connect(setup.dsn) as conn:
        with pytest.raises(errors.ConfigError, match="async connection"):
            setup.echo.options(conn=conn).enqueue_sync(1)


def test_something_that_is_no_connection_is_refused_with_what_is_accepted(setup: Setup) -> None:
    for bad in (object(), "postgresql://x", 42):
        with pytest.raises(errors.ConfigError, match="conn= must be"):
            setup.echo.options(conn=bad).enqueue_sync(1)


def test_sqlalchemy_commit_hooks_fire_once_on_commit_and_never_on_rollback(engine: Engine) -> None:
    fired: list[str] = []
    with Session(engine) as session:
        session.begin()
        assert resolve(session).on_commit(lambda: fired.append("rolled back"))
        session.rollback()
        session.begin()
        assert resolve(session).on_commit(lambda: fired.append("committed"))
        session.commit()
        session.begin()  # a later transaction: the hooks of the earlier ones are gone
        session.commit()
    assert fired == ["committed"]
    assert not resolve(sqlite3.connect(":memory:")).on_commit(lambda: None)  # a raw connection has no hook
