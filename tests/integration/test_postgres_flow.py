"""Flow control on PostgreSQL across processes and connections (SPEC §9): what one process cannot show.

Unique keys are decided by the database's index, and key limits by the limit rows a claim locks, so
two processes racing must still get one task per key and never exceed a key's concurrency.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
import pytest

import taskstore
from taskstore import NewTask, State

from ..postgres_server import new_schema, with_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(postgres_db: str) -> str:
    return with_schema(postgres_db, new_schema())


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.integration.flow_procs", *args], cwd=ROOT)


def _wait(procs: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    for proc in procs:
        assert proc.wait(timeout=timeout) == 0


async def _ready(url: str) -> None:
    async with taskstore.open(url):
        pass  # migrated once here, not raced by the processes


def test_two_processes_racing_one_unique_key_get_one_task(url: str, tmp_path: Path) -> None:
    asyncio.run(_ready(url))
    start = time.time() + 2.0  # both processes are connected by then and fire together
    outs = [tmp_path / f"ids{i}" for i in range(2)]
    _wait([_spawn("create", url, "one-key", "25", str(start), str(out)) for out in outs])
    ids = {line for out in outs for line in out.read_text().split()}

    async def stored() -> Sequence[taskstore.Task]:
        async with taskstore.open(url) as store:
            return (await store.list(queue="race", limit=100)).items

    tasks = asyncio.run(stored())
    assert len(tasks) == 1
    assert ids == {tasks[0].id}
    assert tasks[0].unique_key == "one-key"


def test_two_worker_processes_never_overlap_on_a_key_limited_to_one(url: str, tmp_path: Path) -> None:
    async def setup() -> None:
        async with taskstore.open(url) as store:
            await store.set_limit("one", concurrency=1)
            news = [NewTask(queue="flow", kind="k", concurrency_key="one") for _ in range(30)]
            news += [NewTask(queue="flow", kind="k", concurrency_key="free") for _ in range(30)]
            await store.create_many(news)

    asyncio.run(setup())
    outs = [tmp_path / f"log{i}" for i in range(2)]
    _wait([_spawn("work", url, "60", str(out)) for out in outs], timeout=120)
    runs = [json.loads(line) for out in outs for line in out.read_text().splitlines()]
    assert len(runs) == 60  # every task ran once: the limit held tasks back, it lost none
    one = sorted((r["start"], r["end"]) for r in runs if r["key"] == "one")
    assert len(one) == 30
    for (_, end), (start, _) in itertools.pairwise(one):
        assert start >= end, "two tasks of key 'one' ran at once"
    free = sorted((r["start"], r["end"]) for r in runs if r["key"] == "free")
    overlapping = sum(1 for (_, end), (start, _) in itertools.pairwise(free) if start < end)
    assert overlapping > 0  # the unlimited key did run side by side: the workers could overlap


def test_concurrent_claimers_on_separate_connections_take_exactly_the_keys_slots(url: str) -> None:
    async def scenario() -> list[int]:
        async with taskstore.open(url) as store:
            await store.set_limit("hot", concurrency=3)
            await store.create_many([NewTask(queue="flow", kind="k", concurrency_key="hot") for _ in range(40)])
            await store.create_many([NewTask(queue="flow", kind="k") for _ in range(40)])
            others = [taskstore.open(url) for _ in range(8)]
            for other in others:
                await other.__aenter__()
            try:
                for _ in range(3):  # several rounds: each claimer's second claim races the others' first
                    got = await asyncio.gather(*(o.claim(f"c{i}", "flow", limit=10) for i, o in enumerate(others)))
                    assert all(len(g) <= 10 for g in got)
                counts = [
                    await store.count(state=State.CLAIMED),
                    len([t for t in (await store.list(state=State.CLAIMED, limit=200)).items if t.concurrency_key]),
                ]
            finally:
                for other in others:
                    await other.__aexit__(None, None, None)
            return counts

    claimed, hot = asyncio.run(scenario())
    assert hot == 3
    assert claimed == 43  # the unlimited tasks all went, past the held-back ones


def test_a_unique_create_waits_for_an_open_transaction_holding_the_key_and_gets_its_task(url: str) -> None:
    async def scenario() -> tuple[str, str, int]:
        async with taskstore.open(url) as store:
            caller = await psycopg.AsyncConnection.connect(url.split("?")[0])
            try:
                mine = await store.create(NewTask(queue="q", kind="k", unique_key="order-1"), conn=caller)
                # Another connection creating the same key while the caller's transaction is open: the index
                # makes it wait for that transaction, then it gets the caller's task.
                other = asyncio.ensure_future(store.create(NewTask(queue="q", kind="k", unique_key="order-1")))
                await asyncio.sleep(0.2)  # let it reach the database (either way it must not make a second task)
                await caller.commit()
                theirs = await asyncio.wait_for(other, 30)
            finally:
                await caller.close()
            return mine.id, theirs.id, await store.count(queue="q")

    mine, theirs, stored = asyncio.run(scenario())
    assert theirs == mine
    assert stored == 1


def test_a_claim_scans_past_a_hot_key_that_fills_within_the_claim(url: str) -> None:
    async def scenario() -> list[taskstore.Task]:
        async with taskstore.open(url) as store:
            await store.set_limit("hot", concurrency=2)
            # The hot key's 200 tasks come first in claim order; its slots fill within the first scan.
            await store.create_many([NewTask(queue="q", kind="k", concurrency_key="hot") for _ in range(200)])
            await store.create_many([NewTask(queue="q", kind="k", concurrency_key=f"k{i}") for i in range(50)])
            return await store.claim("w", "q", limit=100)

    claimed = asyncio.run(scenario())
    assert sum(1 for t in claimed if t.concurrency_key == "hot") == 2
    assert len(claimed) == 52


def test_a_recurring_schedules_owner_round_trips(url: str) -> None:
    from datetime import UTC, datetime

    from taskstore.backend import RecurringRow
    from taskstore.backends.postgres import PostgresDriver

    async def scenario() -> list[RecurringRow]:
        driver = PostgresDriver(url.split("?")[0], None, schema=url.split("schema=")[1])
        await driver.open()
        try:
            at = datetime(2030, 1, 1, tzinfo=UTC)
            row = RecurringRow("r1", "* * * * *", '{"queue": "q"}', b"null", False, at, owner="billing-app")
            stored = await driver.put_recurring(row)
            assert stored.owner == "billing-app"
            await driver.put_recurring(RecurringRow("r2", "* * * * *", '{"queue": "q"}', b"null", False, at))
            await driver.put_recurring(RecurringRow("r1", "* * * * *", '{"queue": "q"}', b"null", False, at, "x"))
            return await driver.list_recurring()
        finally:
            await driver.close()

    assert [(r.id, r.owner) for r in asyncio.run(scenario())] == [("r1", "x"), ("r2", None)]


@pytest.mark.parametrize(("n", "rounds"), [(30, 5), (1200, 4)], ids=["30-keys", "1200-keys-all-locks"])
def test_unique_batches_with_the_same_keys_in_opposite_orders_do_not_deadlock(url: str, n: int, rounds: int) -> None:
    """30 keys take the locks their keys hash to; 1,200 take all 64 (lock_all_unique_keys) and go by COPY first."""
    keys = [f"key-{i:04d}" for i in range(n)]

    async def scenario() -> int:
        async with taskstore.open(url) as a, taskstore.open(url) as b:
            for _ in range(rounds):
                forward = [NewTask(queue="q", kind="k", unique_key=k) for k in keys]
                backward = [NewTask(queue="q", kind="k", unique_key=k) for k in reversed(keys)]
                got = await asyncio.gather(a.create_many(forward), b.create_many(backward))
                assert {t.id for t in got[0]} == {t.id for t in got[1]}  # one task per key, both see it
                for task in got[0]:
                    await a.cancel(task.id)  # frees the keys for the next round
            return await a.count(queue="q")

    assert asyncio.run(scenario()) == rounds * len(keys)
