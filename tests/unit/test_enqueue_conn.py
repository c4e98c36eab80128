"""``fn.options(conn=sqlite3_connection)``: the typed enqueue inside the caller's transaction, on SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskstore
from taskstore import errors


@pytest.fixture
def app(tmp_path: Path) -> Iterator[taskstore.App]:
    app = taskstore.App(f"sqlite:///{tmp_path / 'app.db'}", name="conn_tests")
    yield app
    app.close()


def _send(app: taskstore.App) -> taskstore.TaskFunction[[int], None]:
    @app.task(queue="mail", kind="conn_tests.send")
    def send(order_id: int) -> None: ...

    return send


def _ids(path: Path) -> list[str]:
    async def read() -> list[str]:
        async with taskstore.open(f"sqlite:///{path}") as store:
            return [t.id for t in (await store.list()).items]

    return asyncio.run(read())


def test_a_first_enqueue_into_a_file_without_the_store_is_refused_at_once(app: taskstore.App, tmp_path: Path) -> None:
    """Creating the store's tables needs the write lock the caller's transaction holds: refused at once, with
    the way out, instead of both waiting for each other until the busy timeout (30 s) runs out."""
    send = _send(app)
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    started = time.monotonic()
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("INSERT INTO orders (id) VALUES (1)")
        with pytest.raises(errors.ConfigError, match=r"open the store before the transaction"):
            send.options(conn=db).enqueue_sync(1)
        db.execute("INSERT INTO orders (id) VALUES (2)")  # the caller's transaction goes on
    assert time.monotonic() - started < 5
    app.run_sync(app.store())  # opened before the transaction, as the message says
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("INSERT INTO orders (id) VALUES (3)")
        handle = send.options(conn=db).enqueue_sync(3)
    assert _ids(tmp_path / "app.db") == [handle.id]
    with sqlite3.connect(tmp_path / "app.db") as db:
        assert [r[0] for r in db.execute("SELECT id FROM orders ORDER BY id")] == [1, 2, 3]


def test_a_first_enqueue_into_an_existing_store_opens_it_and_joins(app: taskstore.App, tmp_path: Path) -> None:
    send = _send(app)
    asyncio.run(taskstore.open(f"sqlite:///{tmp_path / 'app.db'}").connect())  # the store exists; this App is new
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO orders (id) VALUES (1)")
        kept = send.options(conn=db).enqueue_sync(1)
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("INSERT INTO orders (id) VALUES (2)")
        send.options(conn=db).enqueue_sync(2)
        db.rollback()
    assert _ids(tmp_path / "app.db") == [kept.id]


@pytest.mark.asyncio
async def test_the_async_enqueue_refuses_the_same_at_once(tmp_path: Path) -> None:
    app = taskstore.App(f"sqlite:///{tmp_path / 'app.db'}", name="conn_tests_async")
    send = _send(app)
    try:
        with sqlite3.connect(tmp_path / "app.db") as db:
            db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
            db.execute("INSERT INTO orders (id) VALUES (1)")
            with pytest.raises(errors.ConfigError, match=r"open the store before the transaction"):
                await send.options(conn=db).enqueue(1)
        store = await app.store()
        with sqlite3.connect(tmp_path / "app.db") as db:
            db.execute("INSERT INTO orders (id) VALUES (2)")
            handle = await send.options(conn=db).enqueue(2)
        assert [t.id for t in (await store.list()).items] == [handle.id]
    finally:
        await app.aclose()
