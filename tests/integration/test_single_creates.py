"""Single creates on every SQL backend: those that arrive while a write is on its way go together (group commit
in the client, ``backends/_coalesce.py``), and each caller still gets its own answer. Each backend's own cases
are in test_sqlite_single_creates.py and test_postgres_single_creates.py."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import taskstore
from taskstore import NewTask, errors


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        from ..postgres_server import new_schema, with_schema

        return with_schema(request.getfixturevalue("postgres_db"), new_schema())
    return f"sqlite:///{tmp_path / 'tasks.db'}"


def _coalescer(store: taskstore.Store) -> Any:
    return store._driver._coalescer  # type: ignore[attr-defined]


def test_a_create_made_as_soon_as_the_last_one_returns_is_sent(url: str) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            for i in range(3):  # no await between one create's answer and the next create
                await store.create(NewTask("q", "k", {"n": i}))
            assert await store.count() == 3

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_store_closed_and_opened_again_creates_again(url: str) -> None:
    async def scenario() -> None:
        store = taskstore.open(url)
        for _ in range(2):
            async with store:
                await asyncio.gather(*(store.create(NewTask("q", "k")) for _ in range(5)))
        async with store:
            assert await store.count() == 10

    asyncio.run(scenario())


def test_creates_queued_when_the_store_closes_are_written_before_it_closes(url: str) -> None:
    async def scenario() -> None:
        store = taskstore.open(url)
        async with store:
            creates = [asyncio.ensure_future(store.create(NewTask("q", "k", {"n": i}))) for i in range(2000)]
            await asyncio.sleep(0)  # they are queued, the first batch is on its way
        got = await asyncio.wait_for(asyncio.gather(*creates, return_exceptions=True), 5)
        assert all(isinstance(g, taskstore.Task) for g in got), got
        async with store:
            assert await store.count() == 2000

    asyncio.run(scenario())


def test_a_taken_id_fails_only_its_own_create_in_a_batch(url: str) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            await store.create(NewTask("q", "k", id="taken"))
            news = [NewTask("q", "k", id=f"t{i}") for i in range(50)]
            news[20] = NewTask("q", "k", id="taken")
            news[30] = NewTask("q", "k", id="t5")  # the same id twice among concurrent creates: one wins
            before = _coalescer(store).batches
            got = await asyncio.gather(*(store.create(n) for n in news), return_exceptions=True)
            assert _coalescer(store).batches - before < 10  # they did go together
            failed = {i: g for i, g in enumerate(got) if isinstance(g, BaseException)}
            assert set(failed) in ({20, 30}, {20, 5})  # either of the two creates of t5 may be first
            assert all(isinstance(e, errors.AlreadyExists) for e in failed.values())
            assert "taken" in str(failed[20])
            assert "t5" in str(failed[30 if 30 in failed else 5])
            assert await store.count() == 1 + 48
            with pytest.raises(errors.AlreadyExists):  # as a create alone says it
                await store.create(NewTask("q", "k", id="taken"))

    asyncio.run(scenario())


async def _create_in_a_rolled_back_transaction(store: taskstore.Store, url: str, new: NewTask, pg: str | None) -> None:
    """``store.create(new, conn=...)`` in a transaction of the caller's own, which it then rolls back."""
    if pg is None:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            await store.create(new, conn=conn)
            conn.rollback()
        finally:
            conn.close()
        return
    import psycopg

    async with await psycopg.AsyncConnection.connect(pg) as pg_conn, pg_conn.transaction():
        await store.create(new, conn=pg_conn)
        raise psycopg.Rollback()


def test_unique_and_joined_creates_keep_their_own_semantics(url: str, request: pytest.FixtureRequest) -> None:
    pg = request.getfixturevalue("postgres_db") if url.startswith("postgres") else None

    async def scenario() -> None:
        async with taskstore.open(url) as store:
            same = [NewTask("q", "k", {"n": i}, unique_key="one") for i in range(20)]
            got = await asyncio.gather(*(store.create(n) for n in same))
            assert len({t.id for t in got}) == 1  # every create returns the one task holding the key
            assert await store.count() == 1
            rows_before = _coalescer(store).rows
            # the caller's transaction decides, so the task goes with it
            await _create_in_a_rolled_back_transaction(store, url, NewTask("q", "k", id="joined"), pg)
            assert _coalescer(store).rows == rows_before  # neither went through the coalescer
            with pytest.raises(errors.NotFound):
                await store.get("joined")

    asyncio.run(scenario())
