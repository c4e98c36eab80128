"""memory:// with conn=: tasks are recorded when the caller's transaction commits (where its library has a
commit hook), never on rollback, and at once where there is no hook (a raw sqlite3/psycopg connection)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from taskstore import App, FakeClock, NewTask, State, Store, errors
from taskstore.backend import NewRow
from taskstore.backends.memory import MemoryDriver
from taskstore.testing import drain_sync, run_until_complete


class HookedJoin:
    """What ``_joins`` hands a driver for a library with a commit hook: callbacks kept until the commit."""

    def __init__(self, hook: bool = True) -> None:
        self.hook = hook
        self.callbacks: list[Callable[[], None]] = []

    def on_commit(self, callback: Callable[[], None]) -> bool:
        if not self.hook:
            return False
        self.callbacks.append(callback)
        return True

    def commit(self) -> None:
        for callback in self.callbacks:
            callback()
        self.callbacks.clear()

    def rollback(self) -> None:
        self.callbacks.clear()


def rows(*ids: str) -> list[NewRow]:
    return [NewRow(NewTask("q", "k", id=i), i, b"null") for i in ids]


@pytest.mark.asyncio
async def test_recorded_at_commit_and_never_on_rollback() -> None:
    driver = MemoryDriver(FakeClock())
    async with Store(driver) as store:
        join = HookedJoin()
        returned = await driver.insert(rows("a", "b"), join)
        assert [t.id for t in returned] == ["a", "b"]  # the ids are known at enqueue
        assert await store.count() == 0
        join.commit()
        assert [t.id for t in (await store.list()).items] == ["a", "b"]

        await driver.insert(rows("c"), join)
        join.rollback()
        join.commit()  # a later transaction on the same session does not bring it back
        assert await store.count() == 2
        with pytest.raises(errors.NotFound):
            await store.get("c")


@pytest.mark.asyncio
async def test_a_commit_on_another_thread_wakes_a_blocked_claimer() -> None:
    driver = MemoryDriver(FakeClock())
    async with Store(driver, poll_interval=3600) as store:  # no poll finds it: only the wake-up can
        join = HookedJoin()
        await driver.insert(rows("a"), join)
        claim = asyncio.ensure_future(store.claim("w", ["q"], block_for=60))
        await asyncio.sleep(0.05)  # let it find nothing and wait (were it later, it would find the task: still a pass)
        committer = threading.Thread(target=join.commit)
        committer.start()
        claimed = await asyncio.wait_for(claim, timeout=30)
        committer.join()
        assert [t.id for t in claimed] == ["a"]


@pytest.mark.asyncio
async def test_without_a_commit_hook_the_tasks_are_recorded_at_once() -> None:
    driver = MemoryDriver(FakeClock())
    async with Store(driver) as store:
        await driver.insert(rows("a"), HookedJoin(hook=False))
        assert (await store.get("a")).id == "a"


@pytest.mark.asyncio
async def test_a_taken_id_is_refused_at_enqueue_and_nothing_is_kept() -> None:
    driver = MemoryDriver(FakeClock())
    async with Store(driver) as store:
        await store.create(NewTask("q", "k", id="a"))
        join = HookedJoin()
        with pytest.raises(errors.AlreadyExists):
            await driver.insert(rows("b", "a"), join)
        with pytest.raises(errors.AlreadyExists):
            await driver.insert(rows("c", "c"), join)
        join.commit()
        assert await store.count() == 1


def sqlalchemy_session() -> Any:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
    return Session(engine), text


def test_sqlalchemy_session_records_at_commit_never_on_rollback() -> None:
    app = App("memory://", clock=FakeClock())

    @app.task
    def ship(order: int) -> int:
        return order

    session, text = sqlalchemy_session()
    try:
        session.execute(text("INSERT INTO orders (id) VALUES (1)"))
        committed = ship.options(conn=session).enqueue_sync(1)
        assert app.run_sync(app.on_home(lambda store: store.count())) == 0  # not before the commit
        session.commit()
        assert app.run_sync(committed.get()).state is State.QUEUED

        session.execute(text("INSERT INTO orders (id) VALUES (2)"))
        rolled_back = ship.options(conn=session).enqueue_sync(2)
        session.rollback()
        session.execute(text("INSERT INTO orders (id) VALUES (3)"))
        session.commit()  # the next transaction's commit does not bring it back
        with pytest.raises(errors.NotFound):
            app.run_sync(rolled_back.get())
        assert drain_sync(app) == 1
        assert committed.result_sync(timeout=0) == 1
    finally:
        session.close()
        app.close()


@pytest.mark.asyncio
async def test_async_enqueue_with_a_sqlalchemy_session_on_memory() -> None:
    app = App("memory://", clock=FakeClock())

    @app.task
    async def ship(order: int) -> int:
        return order

    session, text = sqlalchemy_session()
    try:
        session.execute(text("INSERT INTO orders (id) VALUES (1)"))
        handle = await ship.options(conn=session).enqueue(1)
        with pytest.raises(errors.NotFound):
            await handle.get()
        session.commit()
        assert await run_until_complete(app, handle) == 1
    finally:
        session.close()
        await app.aclose()


def test_sqlalchemy_connection_records_at_commit_never_on_rollback() -> None:
    from sqlalchemy import create_engine

    app = App("memory://", clock=FakeClock())

    @app.task
    def ship(order: int) -> int:
        return order

    engine = create_engine("sqlite://")
    try:
        with engine.connect() as conn:
            rolled_back = ship.options(conn=conn).enqueue_sync(1)
            conn.rollback()
            committed = ship.options(conn=conn).enqueue_sync(2)
            assert app.run_sync(app.on_home(lambda store: store.count())) == 0
            conn.commit()
        assert app.run_sync(committed.get()).state is State.QUEUED
        with pytest.raises(errors.NotFound):
            app.run_sync(rolled_back.get())
    finally:
        engine.dispose()
        app.close()


@pytest.mark.asyncio
async def test_sqlalchemy_async_session_records_at_commit_never_on_rollback() -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    app = App("memory://", clock=FakeClock())

    @app.task
    async def ship(order: int) -> int:
        return order

    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        async with AsyncSession(engine) as session:
            rolled_back = await ship.options(conn=session).enqueue(1)
            await session.rollback()
            committed = await ship.options(conn=session).enqueue(2)
            with pytest.raises(errors.NotFound):
                await committed.get()
            await session.commit()
        assert await run_until_complete(app, committed) == 2
        with pytest.raises(errors.NotFound):
            await rolled_back.get()
    finally:
        await engine.dispose()
        await app.aclose()
