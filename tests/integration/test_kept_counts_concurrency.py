"""The kept counts stay exact while many stores write and fold at once: on PostgreSQL every claim and finish
appends a delta that several processes' stores race to fold (under a tried advisory lock), and readers add the
unfolded ones; on SQLite several connections take turns at the triggers. At the end, and at every read on the
way, the kept counts equal a census of the tasks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

import taskstore
from taskstore import Failure, NewTask, State, Store

from ..postgres_server import new_schema, with_schema

pytestmark = pytest.mark.asyncio

QUEUES = ("a", "b", "c")


async def _census(store: Store) -> dict[tuple[str, State], int]:
    return {(q, s): n for q in QUEUES for s in State if (n := await store.count(s, q))}


def _kept(queues: list[taskstore.QueueInfo]) -> dict[tuple[str, State], int]:
    return {(q.name, s): n for q in queues for s, n in q.counts.items() if n}


async def _churn(url: str) -> None:
    stores = [await taskstore.open(url).connect() for _ in range(4)]
    try:
        await stores[0].create_many(NewTask(QUEUES[i % 3], "k", max_attempts=2) for i in range(600))
        stop = asyncio.Event()

        async def worker(store: Store, n: int) -> None:
            turn = 0
            while claimed := await store.claim(f"w{n}", limit=7):
                turn += 1
                if turn % 3 == 0:
                    for task in claimed:
                        await store.mark_failed(task, Failure("Boom"))
                else:
                    await store.acknowledge_many(claimed)
                if turn % 5 == 0:
                    await store.create_many(NewTask(QUEUES[turn % 3], "k", max_attempts=1) for _ in range(5))

        async def folder(store: Store) -> None:
            while not stop.is_set():
                await store.fold_counts()
                queues = await store.list_queues()
                total = sum(sum(q.counts.values()) for q in queues)
                assert total >= 600  # tasks are only added: a fold never loses or doubles a delta
                await asyncio.sleep(0)

        folders = [asyncio.create_task(folder(s)) for s in stores[2:]]
        await asyncio.gather(worker(stores[0], 0), worker(stores[1], 1))
        stop.set()
        await asyncio.gather(*folders)
        census = await _census(stores[0])
        assert sum(census.values()) == await stores[0].count()
        for store in stores:
            assert _kept(await store.list_queues()) == census
        await stores[3].fold_counts()
        assert _kept(await stores[2].list_queues()) == census
    finally:
        for store in stores:
            await store.close()


async def test_postgres_counts_stay_exact_under_concurrent_folds(postgres_db: str) -> None:
    await _churn(with_schema(postgres_db, new_schema()))


async def test_sqlite_counts_stay_exact_with_several_connections(tmp_path: Path) -> None:
    await _churn(f"sqlite:///{tmp_path / 'counts.db'}")


async def test_postgres_readers_add_the_deltas_a_busy_folder_has_not_folded(postgres_db: str) -> None:
    schema = new_schema()
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        await store.create_many(NewTask("a", "k") for _ in range(5))
        with psycopg.connect(postgres_db) as holder:  # another folder, mid-fold: it holds the fold lock
            holder.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"taskstore-fold:{schema}",))
            await store.acknowledge_many(await store.claim("w", limit=2))
            assert await store.fold_counts() == 0  # the lock is taken: nothing folded, nothing waited for
            (queue,) = await store.list_queues()
            assert (queue.counts[State.QUEUED], queue.counts[State.DONE]) == (3, 2)
            (slot,) = await store.activity(window=60, bucket=60)
            assert slot.done == 2
        assert await store.fold_counts() > 0
        (queue,) = await store.list_queues()
        assert (queue.counts[State.QUEUED], queue.counts[State.DONE]) == (3, 2)
