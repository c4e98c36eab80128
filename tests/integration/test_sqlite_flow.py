"""Flow control on SQLite (SPEC §9) where SQLite's own machinery decides: the write lock across processes,
the rescan past full keys, unique keys in a caller's transaction, and the schema's indexes.

Decisions run on the injected ``FakeClock``; the process tests wait for real processes with bounded polling
and check invariants, never durations.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

import taskstore
from taskstore import FakeClock, NewTask, State, Store, errors
from taskstore.backend import RecurringRow
from taskstore.backends.sqlite import SQLiteDriver

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with taskstore.open(f"sqlite:///{tmp_path / 'flow.db'}", clock=clock) as opened:
        yield opened


def _driver(store: Store) -> SQLiteDriver:
    driver = store._driver
    assert isinstance(driver, SQLiteDriver)
    return driver


def _join(procs: Sequence[multiprocessing.process.BaseProcess], timeout: float) -> None:
    """Wait for every process (bounded); one still running then is killed and fails the test."""
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0] * len(procs)


# -- unique keys ------------------------------------------------------------------------------


async def test_a_held_key_returns_the_holder_and_a_lapsed_one_is_released(store: Store, clock: FakeClock) -> None:
    first = await store.create(NewTask("main", "k", args={"n": 1}, unique_key="u", unique_for=10))
    again = await store.create(NewTask("main", "k", args={"n": 2}, unique_key="u", unique_for=10))
    assert again.id == first.id
    assert again.args == {"n": 1}
    clock.advance(10)
    third = await store.create(NewTask("main", "k", args={"n": 3}, unique_key="u"))
    assert third.id != first.id
    old = await store.get(first.id)
    assert old.state is State.QUEUED
    assert old.unique_hold is None
    assert old.version == first.version + 1
    assert await store.count() == 2


async def test_a_batch_repeating_a_key_gets_one_task_and_an_id_collision_stores_nothing(store: Store) -> None:
    a, b, c = await store.create_many(
        [
            NewTask("main", "k", args=1, unique_key="u"),
            NewTask("main", "k", args=2),
            NewTask("main", "k", args=3, unique_key="u"),
        ]
    )
    assert c.id == a.id
    assert c.args == 1
    assert b.id != a.id
    with pytest.raises(errors.AlreadyExists):
        await store.create_many([NewTask("main", "k", unique_key="v"), NewTask("main", "k", id=b.id)])
    assert await store.count() == 2
    assert (await store.create(NewTask("main", "k", unique_key="v"))).unique_key == "v"


async def test_a_unique_create_in_the_callers_transaction(store: Store, tmp_path: Path) -> None:
    held = await store.create(NewTask("main", "k", unique_key="u"))
    conn = sqlite3.connect(tmp_path / "flow.db")
    try:
        got = await store.create(NewTask("main", "k", unique_key="u"), conn=conn)
        new = await store.create(NewTask("main", "k", unique_key="w"), conn=conn)
        assert got.id == held.id
        conn.rollback()
    finally:
        conn.close()
    assert await store.count() == 1
    with pytest.raises(errors.NotFound):
        await store.get(new.id)


def _create_unique(path: str, key: str, n: int, out: str) -> None:
    async def run() -> list[str]:
        async with taskstore.open(f"sqlite:///{path}") as s:
            made = await asyncio.gather(*(s.create(NewTask("main", "k", unique_key=key)) for _ in range(n)))
            return [t.id for t in made]

    Path(out).write_text(json.dumps(asyncio.run(run())))


async def test_two_processes_racing_one_key_get_one_task(store: Store, tmp_path: Path) -> None:
    await store.create(NewTask("main", "warm"))  # the schema exists before the racers start
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"ids{i}.json" for i in range(2)]
    procs = [ctx.Process(target=_create_unique, args=(str(tmp_path / "flow.db"), "race", 25, str(o))) for o in outs]
    for p in procs:
        p.start()
    _join(procs, 120)
    ids = {i for o in outs for i in json.loads(o.read_text())}
    assert len(ids) == 1
    assert await store.count() == 2


# -- pause and expiry -------------------------------------------------------------------------


async def test_pause_is_seen_by_a_second_store_on_the_file(store: Store, tmp_path: Path, clock: FakeClock) -> None:
    task = await store.create(NewTask("q", "k"))
    await store.create(NewTask("r", "k"))
    async with taskstore.open(f"sqlite:///{tmp_path / 'flow.db'}", clock=clock) as other:
        await other.pause_queue("q")
        assert [t.queue for t in await store.claim("w", ["q", "r"], limit=5)] == ["r"]
        assert await store.claim_task(task.id, "w") is None
        assert await store.find_available("q") == []
        assert not await _driver(store).has_claimable(["q"])
        await other.resume_queue("q")
    assert [t.id for t in await store.claim("w", "q", limit=5)] == [task.id]


async def test_an_expired_task_is_never_claimed_and_the_reaper_cancels_it(store: Store, clock: FakeClock) -> None:
    task = await store.create(NewTask("main", "k", expires_at=clock.now() + timedelta(seconds=5)))
    clock.advance(5)
    assert await store.claim("w", limit=5) == []
    assert not await _driver(store).has_claimable([])
    assert await store.claim_task(task.id, "w") is None
    assert await store.reap() == 1
    ended = await store.get(task.id)
    assert ended.state is State.CANCELLED
    assert ended.result is not None
    assert ended.result.failure is not None
    assert ended.result.failure.type == "Expired"


async def test_a_lease_timing_out_past_expiry_ends_cancelled_in_one_reap(store: Store, clock: FakeClock) -> None:
    expires = clock.now() + timedelta(seconds=5)
    task = await store.create(NewTask("main", "k", expires_at=expires, processing_timeout=1, max_attempts=3))
    assert await store.claim("w") != []
    clock.advance(10)
    await _driver(store).reap(100)  # one pass: the lease times out, then the waiting task expires
    assert (await store.get(task.id)).state is State.CANCELLED


# -- per-key limits ---------------------------------------------------------------------------


async def test_a_hot_key_at_the_head_does_not_hide_the_other_keys(store: Store) -> None:
    await store.set_limit("hot", concurrency=1)
    # 300 tasks of the hot key ahead of everything else (higher priority), then 5 of other keys.
    await store.create_many([NewTask("main", "k", priority=5, concurrency_key="hot") for _ in range(300)])
    others = await store.create_many([NewTask("main", "k", concurrency_key=f"k{i}") for i in range(5)])
    claimed = await store.claim("w", limit=100)
    assert [t.concurrency_key for t in claimed].count("hot") == 1
    assert {t.id for t in claimed} >= {t.id for t in others}
    assert len(claimed) == 6
    assert len(await store.find_available(limit=100)) == 0


async def test_a_rate_limit_draws_on_a_durable_bucket(store: Store, tmp_path: Path, clock: FakeClock) -> None:
    await store.set_limit("api", rate=2, per=1.0)
    await store.create_many([NewTask("main", "k", concurrency_key="api") for _ in range(5)])
    assert len(await store.find_available(limit=10)) == 2  # read only: draws nothing
    assert len(await store.claim("w", limit=10)) == 2
    async with taskstore.open(f"sqlite:///{tmp_path / 'flow.db'}", clock=clock) as other:
        assert await other.claim("w2", limit=10) == []
        clock.advance(0.5)
        assert len(await other.claim("w2", limit=10)) == 1
    gate = await _driver(store).key_gate("api")
    assert gate is not None
    assert gate.tokens_at(clock.now()) < 1


async def test_claim_task_honours_the_keys_concurrency(store: Store) -> None:
    await store.set_limit("k", concurrency=1)
    a, b = await store.create_many([NewTask("main", "k", concurrency_key="k") for _ in range(2)])
    assert await store.claim_task(a.id, "w") is not None
    assert await store.claim_task(b.id, "w") is None
    holders = await _driver(store).claimed_with_key("k", 10)
    assert [t.id for t in holders] == [a.id]


def _wait_for(path: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


def _work_one_key(path: str, worker: str, out: str) -> None:
    """Claim and finish tasks until none is left (bounded); record each claim's size and the key's
    claimed count seen while holding a task. Starts when the test says go, so both processes contend."""

    async def run() -> list[int]:
        seen: list[int] = []
        async with taskstore.open(f"sqlite:///{path}") as s:
            Path(f"{out}.ready").touch()
            _wait_for(Path(path).with_name("go"))
            deadline = time.monotonic() + 60
            while await s.count(State.QUEUED) or await s.count(State.CLAIMED):
                if time.monotonic() > deadline:
                    raise TimeoutError("tasks left after 60 s")
                got = await s.claim(worker, limit=10)
                if not got:
                    await asyncio.sleep(0.001)
                    continue
                seen.append(len(got))
                await asyncio.sleep(0.005)  # hold the slot while the other process tries for it
                seen.append(len(await _driver(s).claimed_with_key("one", 10)))
                for task in got:
                    await s.mark_done(task)
        return seen

    Path(out).write_text(json.dumps(asyncio.run(run())))


@pytest.mark.slow
async def test_two_worker_processes_never_overlap_on_a_key_of_concurrency_one(tmp_path: Path) -> None:
    # The real clock: the worker processes run on it.
    path = tmp_path / "workers.db"
    async with taskstore.open(f"sqlite:///{path}") as s:
        await s.set_limit("one", concurrency=1)
        await s.create_many([NewTask("main", "k", concurrency_key="one") for _ in range(40)])
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"seen{i}.json" for i in range(2)]
    procs = [ctx.Process(target=_work_one_key, args=(str(path), f"w{i}", str(o))) for i, o in enumerate(outs)]
    for p in procs:
        p.start()
    try:
        for o in outs:
            _wait_for(Path(f"{o}.ready"))
    finally:
        (tmp_path / "go").touch()
        _join(procs, 90)
    seen = [json.loads(o.read_text()) for o in outs]
    assert all(seen), "both processes claimed"
    assert max(n for s in seen for n in s) == 1
    async with taskstore.open(f"sqlite:///{path}") as s:
        assert await s.count(State.DONE) == 40


# -- queues, limits and schedules as stored ---------------------------------------------------


async def test_list_queues_counts_and_oldest_ready(store: Store, clock: FakeClock) -> None:
    await store.create(NewTask("a", "k"))
    clock.advance(1)
    await store.create(NewTask("a", "k", expires_at=clock.now() + timedelta(seconds=1)))
    await store.create(NewTask("a", "k", run_at=clock.now() + timedelta(hours=1)))
    await store.pause_queue("empty")
    await store.claim("w", "a")
    clock.advance(1)  # the second task has expired: no longer ready
    queues = {q.name: q for q in await store.list_queues()}
    assert set(queues) == {"a", "empty"}
    assert queues["empty"].paused
    assert sum(queues["empty"].counts.values()) == 0
    assert queues["a"].counts[State.QUEUED] == 2
    assert queues["a"].counts[State.CLAIMED] == 1
    assert queues["a"].oldest_ready_at is None


async def test_limits_round_trip_and_a_reset_keeps_the_bucket_capped(store: Store, clock: FakeClock) -> None:
    await store.set_limit("b", rate=10)
    await store.set_limit("a", concurrency=2)
    await store.create_many([NewTask("main", "k", concurrency_key="b") for _ in range(8)])
    assert len(await store.claim("w", limit=10)) == 8
    await store.set_limit("b", rate=5, per=2.0)
    gate = await _driver(store).key_gate("b")
    assert gate is not None
    assert gate.running == 8
    assert gate.tokens == pytest.approx(2.0)
    assert [(x.key, x.concurrency, x.rate, x.per) for x in await store.list_limits()] == [
        ("a", 2, None, 1.0),
        ("b", None, 5, 2.0),
    ]
    assert await store.clear_limit("a")
    assert not await store.clear_limit("a")


async def test_recurring_owner_round_trips(store: Store, clock: FakeClock) -> None:
    driver = _driver(store)
    row = RecurringRow("r1", "@every 1m", "{}", b"null", False, clock.now(), owner="app")
    assert (await driver.put_recurring(row)).owner == "app"
    assert [r.owner for r in await driver.list_recurring()] == ["app"]
    await driver.put_recurring(RecurringRow("r1", "@every 1m", "{}", b"null", False, clock.now()))
    assert [r.owner for r in await driver.list_recurring()] == [None]
