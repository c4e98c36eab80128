"""Unique tasks (SPEC §9): a held ``(queue, unique_key)`` gives back the existing task, never a second one."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from typing import Any

import pytest

from taskstore import FakeClock, State, Store, SystemClock, errors

from ._base import MULTIPROCESS, SHARED, OpenStore, SuiteBase, claim_one, new

# A creator process: creates the key "race" in queue "u" many times at once, prints the ids it got back.
_CREATOR = """
import asyncio, json, sys
import taskstore

async def main(url, n):
    async with taskstore.open(url) as store:
        tasks = await asyncio.gather(
            *(store.create(taskstore.NewTask("u", "k", {"i": i}, unique_key="race")) for i in range(n))
        )
    print(json.dumps(sorted({t.id for t in tasks})))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _python(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


class UniqueTests(SuiteBase):
    async def test_a_held_key_returns_the_existing_task(self, store: Store) -> None:
        first = await store.create(new(args={"n": 1}, unique_key="report-42"))
        assert first.unique_key == "report-42"
        again = await store.create(new(args={"n": 2}, unique_key="report-42"))
        assert again.id == first.id and again.version == first.version
        assert again.args == {"n": 1}  # the stored task, its own payload decoded
        assert again.unique_key == "report-42"
        assert await store.count() == 1
        assert (await store.get(first.id)).unique_key == "report-42"

    async def test_the_same_id_and_key_again_is_the_existing_task(self, store: Store) -> None:
        first = await store.create(new(id="job-1", unique_key="k1"))
        again = await store.create(new(id="job-1", args={"n": 2}, unique_key="k1"))
        assert again.id == "job-1" and again.version == first.version
        assert again.args is None  # the holder's payload, decoded
        assert await store.count() == 1

    async def test_claimed_and_failed_tasks_still_hold_the_key(self, store: Store) -> None:
        first = await store.create(new(unique_key="k", max_attempts=3))
        claimed = await claim_one(store)
        assert (await store.create(new(unique_key="k"))).id == first.id
        await store.mark_failed(claimed, RuntimeError("boom"))
        assert (await store.get(first.id)).state is State.FAILED
        assert (await store.create(new(unique_key="k"))).id == first.id
        assert await store.count() == 1

    @pytest.mark.parametrize("end", ["done", "dead", "cancelled"])
    async def test_a_finished_task_releases_the_key(self, store: Store, end: str) -> None:
        first = await store.create(new(unique_key="k", max_attempts=1))
        if end == "cancelled":
            await store.cancel(first.id)
        else:
            claimed = await claim_one(store)
            if end == "done":
                await store.mark_done(claimed)
            else:
                await store.mark_failed(claimed, RuntimeError("boom"))
        assert (await store.get(first.id)).state is State(end)
        second = await store.create(new(unique_key="k"))
        assert second.id != first.id and second.state is State.QUEUED
        assert (await store.create(new(unique_key="k"))).id == second.id
        assert await store.count() == 2

    async def test_a_retried_task_does_not_take_its_key_back(self, store: Store) -> None:
        first = await store.create(new(unique_key="k", max_attempts=1))
        await store.mark_failed(await claim_one(store), RuntimeError("boom"))
        second = await store.create(new(unique_key="k"))
        await store.retry(first.id)  # released for good: now two live tasks share the key
        third = await store.create(new(unique_key="k"))
        assert third.id == second.id

    async def test_unique_states_queued_only(self, store: Store) -> None:
        first = await store.create(new(unique_key="k", unique_states={"queued"}))
        assert (await store.create(new(unique_key="k", unique_states={"queued"}))).id == first.id
        await claim_one(store)
        second = await store.create(new(unique_key="k", unique_states={"queued"}))
        assert second.id != first.id
        assert await store.count() == 2

    async def test_unique_states_with_done_holds_until_archived(self, store: Store, clock: FakeClock) -> None:
        states = {State.QUEUED, State.CLAIMED, State.DONE}
        first = await store.create(new(unique_key="k", unique_states=states))
        await store.mark_done(await claim_one(store))
        assert (await store.create(new(unique_key="k", unique_states=states))).id == first.id
        clock.advance(1)
        assert await store.archive(older_than=0) == 1
        second = await store.create(new(unique_key="k", unique_states=states))
        assert second.id != first.id

    async def test_unique_states_without_failed_lets_a_retry_wait_aside(self, store: Store) -> None:
        states = {State.QUEUED, State.CLAIMED}
        first = await store.create(new(unique_key="k", unique_states=states, max_attempts=3))
        await store.mark_failed(await claim_one(store), RuntimeError("boom"))
        second = await store.create(new(unique_key="k", unique_states=states))
        assert second.id != first.id

    async def test_unique_for_holds_only_within_the_window(self, store: Store, clock: FakeClock) -> None:
        first = await store.create(new(unique_key="k", unique_for=60))
        clock.advance(59)
        assert (await store.create(new(unique_key="k", unique_for=60))).id == first.id
        clock.advance(1)
        second = await store.create(new(unique_key="k", unique_for=60))
        assert second.id != first.id
        old = await store.get(first.id)
        assert old.state is State.QUEUED  # the old task keeps going, it only gave its key up
        assert old.version == first.version + 1
        assert (await store.create(new(unique_key="k", unique_for=60))).id == second.id
        assert len(await store.claim("w", limit=5)) == 2

    async def test_unique_for_accepts_a_timedelta(self, store: Store, clock: FakeClock) -> None:
        first = await store.create(new(unique_key="k", unique_for=timedelta(minutes=1)))
        clock.advance(30)
        assert (await store.create(new(unique_key="k"))).id == first.id
        clock.advance(30)
        assert (await store.create(new(unique_key="k"))).id != first.id

    async def test_keys_are_per_queue(self, store: Store) -> None:
        a = await store.create(new("a", unique_key="k"))
        b = await store.create(new("b", unique_key="k"))
        assert a.id != b.id
        assert (await store.create(new("b", unique_key="k"))).id == b.id
        assert await store.count() == 2

    async def test_create_many_dedupes_per_item(self, store: Store) -> None:
        held = await store.create(new(args="held", unique_key="k1"))
        got = await store.create_many(
            [
                new(args="plain"),
                new(args="dup", unique_key="k1"),
                new(args="fresh", unique_key="k2"),
                new(args="fresh-again", unique_key="k2"),
            ]
        )
        assert got[1].id == held.id and got[1].args == "held"
        assert got[2].args == "fresh" and got[3].id == got[2].id and got[3].args == "fresh"
        assert got[0].id not in {held.id, got[2].id}
        assert await store.count() == 3

    async def test_create_many_with_a_taken_id_stores_nothing(self, store: Store) -> None:
        await store.create(new(id="taken"))
        held = await store.create(new(unique_key="k1"))
        with pytest.raises(errors.AlreadyExists):
            await store.create_many([new(unique_key="k1"), new(unique_key="k2"), new(id="taken")])
        assert await store.count() == 2
        assert (await store.create(new(unique_key="k2"))).id not in {held.id, "taken"}
        assert (await store.create(new(unique_key="k1"))).id == held.id

    async def test_a_returned_holder_does_not_wake_or_duplicate_claims(self, store: Store) -> None:
        await store.create(new(unique_key="k"))
        await store.create_many([new(unique_key="k") for _ in range(5)])
        assert len(await store.claim("w", limit=10)) == 1

    async def test_fifty_concurrent_creates_make_one_task(self, store: Store) -> None:
        got = await asyncio.gather(*(store.create(new(args={"i": i}, unique_key="race")) for i in range(50)))
        assert len({t.id for t in got}) == 1
        assert await store.count() == 1

    async def test_two_stores_racing_make_one_task(self, open_store: OpenStore) -> None:
        self.need(SHARED)
        one, two = await open_store(), await open_store()
        got = await asyncio.gather(
            *(s.create(new(args={"i": i}, unique_key="race")) for i in range(25) for s in (one, two))
        )
        assert len({t.id for t in got}) == 1
        assert await one.count() == 1

    async def test_processes_racing_make_one_task(self, open_store: OpenStore, store_url: str) -> None:
        self.need(MULTIPROCESS)
        store = await open_store(clock=SystemClock())
        outputs = await asyncio.gather(*(_python(_CREATOR, store_url, "20") for _ in range(3)))
        ids = {task_id for out in outputs for task_id in json.loads(out)}
        assert len(ids) == 1
        assert await store.count() == 1

    async def test_a_unique_create_joins_the_callers_transaction(self, store: Store, caller_connections: Any) -> None:
        held = await store.create(new(unique_key="k1"))
        caller = await caller_connections.fresh()
        got = await store.create_many([new(unique_key="k1"), new(id="joined", unique_key="k2")], conn=caller.conn)
        assert got[0].id == held.id and got[1].id == "joined"
        await caller.commit()
        assert await store.count() == 2
        assert (await store.create(new(unique_key="k2"))).id == "joined"

    async def test_a_rolled_back_unique_create_leaves_the_key_free(self, store: Store, caller_connections: Any) -> None:
        caller = await caller_connections.fresh()
        await store.create(new(id="rolled-back", unique_key="k"), conn=caller.conn)
        await caller.rollback()
        assert (await store.create(new(id="kept", unique_key="k"))).id == "kept"

    async def test_group_members_cannot_be_unique(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create_group("g", [new(), new(unique_key="k")])
        assert await store.count() == 0
        assert await store.get_group("g") is None

    @pytest.mark.parametrize(
        "options",
        [
            {"unique_key": ""},
            {"unique_key": "x" * 300},
            {"unique_key": 7},
            {"unique_for": 10},
            {"unique_states": {"queued"}},
            {"unique_key": "k", "unique_states": {"claimed"}},
            {"unique_key": "k", "unique_states": {"nope"}},
            {"unique_key": "k", "unique_states": "queued"},
            {"unique_key": "k", "unique_for": float("nan")},
            {"unique_key": "k", "unique_for": -1},
            {"unique_key": "k", "unique_for": 0},
        ],
    )
    async def test_bad_unique_options_are_refused(self, store: Store, options: dict[str, Any]) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create(new(**options))
        assert await store.count() == 0
