"""Pausing queues and listing them (SPEC §9): claims skip a paused queue; running tasks finish."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest

from taskstore import Failure, FakeClock, State, Store, WorkerHeartbeat, errors

from ._base import SHARED, OpenStore, SuiteBase, claim_one, new


class PauseTests(SuiteBase):
    async def test_a_paused_queue_is_not_claimed(self, store: Store) -> None:
        await store.create_many([new("a", id="a1"), new("b", id="b1"), new("a", id="a2", priority=9)])
        await store.pause_queue("a")
        assert [t.id for t in await store.claim("w", limit=10)] == ["b1"]
        assert await store.claim("w", ["a"], limit=10) == []
        assert await store.find_available(limit=10) == []
        assert await store.claim_task("a1", "w") is None
        assert (await store.get("a1")).state is State.QUEUED

    async def test_resume_makes_it_claimable_again(self, store: Store) -> None:
        await store.create_many([new("a", id="a1"), new("a", id="a2")])
        await store.pause_queue("a")
        assert await store.claim("w", limit=10) == []
        await store.resume_queue("a")
        assert [t.id for t in await store.find_available(limit=10)] == ["a1", "a2"]
        claimed = await store.claim_task("a2", "w")
        assert claimed is not None and claimed.id == "a2"
        assert [t.id for t in await store.claim("w", limit=10)] == ["a1"]

    async def test_pause_and_resume_are_idempotent(self, store: Store) -> None:
        await store.create(new("a", id="a1"))
        await store.pause_queue("a")
        await store.pause_queue("a")
        assert await store.claim("w", limit=1) == []
        await store.resume_queue("a")
        await store.resume_queue("a")
        await store.resume_queue("never-paused")
        assert len(await store.claim("w", limit=1)) == 1

    async def test_running_tasks_finish_in_a_paused_queue(self, store: Store) -> None:
        await store.create_many([new("a", id="a1"), new("a", id="a2")])
        task = await claim_one(store)
        await store.pause_queue("a")
        task = await store.report_in(task)
        done = await store.mark_done(task)
        assert done.state is State.DONE
        assert await store.claim("w", limit=10) == []

    async def test_a_failed_retry_waits_while_paused(self, store: Store, clock: FakeClock) -> None:
        await store.create(new("a", id="a1", max_attempts=3))
        await store.mark_failed(await claim_one(store), RuntimeError("boom"))
        await store.pause_queue("a")
        clock.advance(3600)
        assert await store.claim("w", limit=1) == []
        await store.resume_queue("a")
        assert [t.id for t in await store.claim("w", limit=1)] == ["a1"]

    async def test_a_blocked_claim_wakes_on_resume(self, open_store: OpenStore) -> None:
        store = await open_store(poll_interval=60)  # woken, not found by polling
        await store.create(new("a", id="a1"))
        await store.pause_queue("a")
        waiting = asyncio.create_task(store.claim("w", ["a"], limit=1, block_for=30))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await store.resume_queue("a")
        assert [t.id for t in await asyncio.wait_for(waiting, timeout=10)] == ["a1"]

    async def test_pause_is_durable_across_stores(self, open_store: OpenStore) -> None:
        self.need(SHARED)
        one, two = await open_store(), await open_store()
        await one.create_many([new("a", id="a1"), new("b", id="b1")])
        await one.pause_queue("a")
        assert [t.id for t in await two.claim("w", limit=10)] == ["b1"]
        assert [q.name for q in await two.list_queues() if q.paused] == ["a"]
        await two.resume_queue("a")
        assert [t.id for t in await one.claim("w", limit=10)] == ["a1"]

    # -- list_queues ----------------------------------------------------------------------------

    async def test_list_queues_counts_every_state(self, store: Store, clock: FakeClock) -> None:
        start = clock.now()
        await store.create_many(
            [new("a", id=f"a{i}", max_attempts=1) for i in range(5)] + [new("b", id="b1"), new("b", id="b2")]
        )
        clock.advance(10)
        await store.create(new("b", id="b-later", run_at=clock.now() + timedelta(seconds=60)))
        a0 = await store.claim_task("a0", "w")
        a1 = await store.claim_task("a1", "w")
        a2 = await store.claim_task("a2", "w")
        assert a0 is not None and a1 is not None and a2 is not None
        await store.mark_done(a0)
        await store.mark_failed(a1, RuntimeError("boom"))
        await store.cancel("a3")
        queues = {q.name: q for q in await store.list_queues()}
        assert list(queues) == ["a", "b"]
        a, b = queues["a"], queues["b"]
        assert set(a.counts) == set(State)
        assert a.counts[State.DONE] == 1 and a.counts[State.DEAD] == 1 and a.counts[State.CLAIMED] == 1
        assert a.counts[State.CANCELLED] == 1 and a.counts[State.QUEUED] == 1 and a.counts[State.FAILED] == 0
        assert b.counts[State.QUEUED] == 3 and sum(b.counts.values()) == 3
        assert not a.paused and not b.paused
        assert a.oldest_ready_at == start and b.oldest_ready_at == start

    async def test_oldest_ready_at_ignores_future_and_claimed_tasks(self, store: Store, clock: FakeClock) -> None:
        first = clock.now()
        await store.create(new("a", id="a1"))
        clock.advance(5)
        second = clock.now()
        await store.create(new("a", id="a2"))
        await store.create(new("a", id="a3", run_at=clock.now() + timedelta(seconds=100)))
        (queue,) = await store.list_queues()
        assert queue.oldest_ready_at == first
        await store.claim_task("a1", "w")
        (queue,) = await store.list_queues()
        assert queue.oldest_ready_at == second
        await store.claim_task("a2", "w")
        (queue,) = await store.list_queues()
        assert queue.oldest_ready_at is None and queue.counts[State.QUEUED] == 1

    async def test_oldest_ready_at_looks_past_priorities(self, store: Store, clock: FakeClock) -> None:
        first = clock.now()
        await store.create(new("a", id="low", priority=-3))
        clock.advance(5)
        second = clock.now()
        await store.create(new("a", id="high", priority=5))
        await store.create(new("a", id="high-later", priority=5, run_at=clock.now() + timedelta(seconds=100)))
        await store.create(new("a", id="top-later", priority=9, run_at=clock.now() + timedelta(seconds=100)))
        (queue,) = await store.list_queues()
        assert queue.oldest_ready_at == first  # the lowest priority waits longest
        assert (await store.claim_task("low", "w")) is not None
        (queue,) = await store.list_queues()
        assert queue.oldest_ready_at == second
        assert (await store.claim_task("high", "w")) is not None
        (queue,) = await store.list_queues()
        assert queue.oldest_ready_at is None and queue.counts[State.QUEUED] == 2

    async def test_kept_counts_match_a_census_after_every_kind_of_change(self, store: Store, clock: FakeClock) -> None:
        rng = random.Random(9)
        await store.create_many([new(rng.choice("abc"), max_attempts=2, processing_timeout=20) for _ in range(60)])
        for step in range(120):
            op = rng.randrange(9)
            clock.advance(rng.choice((0, 1, 30)))
            if op == 0:
                await store.create_many(
                    [new(rng.choice("abc"), max_attempts=2, processing_timeout=20) for _ in range(rng.randrange(1, 5))]
                )
            elif op in (1, 2):
                for task in await store.claim(f"w{step}", [], limit=rng.randrange(1, 4)):
                    pick = rng.randrange(4)
                    if pick == 0:
                        await store.mark_done(task, result=step)
                    elif pick == 1:
                        await store.mark_failed(task, Failure("Boom"))
                    elif pick == 2:
                        await store.unclaim(task)
            elif op == 3:
                page = await store.list(state=rng.choice([State.QUEUED, State.CLAIMED, State.FAILED]), limit=3)
                for task in page.items:
                    await store.cancel(task.id)
            elif op == 4:
                for task in (await store.list(state=rng.choice([State.DEAD, State.CANCELLED]), limit=3)).items:
                    await store.retry(task.id)
            elif op == 5:
                await store.reap()
            elif op == 6:
                await store.archive(older_than=rng.choice((0, 40)))
            elif op == 7:
                await store.fold_counts()
            else:
                await store.create(new("u", unique_key="k", max_attempts=1))
            if step % 10 == 9 or op == 7:
                await self._census(store)
        await store.fold_counts()
        await self._census(store)

    @staticmethod
    async def _census(store: Store) -> None:
        kept = {q.name: q.counts for q in await store.list_queues()}
        for name, counts in kept.items():
            for state in State:
                assert counts[state] == await store.count(state, name), (name, state)
        assert sum(sum(c.values()) for c in kept.values()) == await store.count()

    async def test_oldest_ready_at_ignores_expired_tasks(self, store: Store, clock: FakeClock) -> None:
        await store.create(new("a", id="a1", expires_at=clock.now() + timedelta(seconds=5)))
        clock.advance(3)
        later = clock.now()
        await store.create(new("a", id="a2"))
        clock.advance(3)
        (queue,) = await store.list_queues()
        assert queue.oldest_ready_at == later

    async def test_a_paused_queue_without_tasks_is_listed(self, store: Store) -> None:
        await store.pause_queue("empty")
        (queue,) = await store.list_queues()
        assert queue.name == "empty" and queue.paused
        assert sum(queue.counts.values()) == 0 and queue.oldest_ready_at is None and queue.workers == 0
        await store.create(new("b"))
        assert [(q.name, q.paused) for q in await store.list_queues()] == [("b", False), ("empty", True)]

    async def test_archived_tasks_are_not_counted(self, store: Store, clock: FakeClock) -> None:
        await store.create_many([new("a", id="a1"), new("a", id="a2")])
        await store.mark_done(await claim_one(store))
        clock.advance(1)
        await store.archive(older_than=0)
        (queue,) = await store.list_queues()
        assert queue.counts[State.DONE] == 0 and queue.counts[State.QUEUED] == 1

    async def test_list_queues_counts_live_workers(self, store: Store, clock: FakeClock) -> None:
        await store.create_many([new("a"), new("b"), new("c")])
        await store.set_worker_heartbeat(WorkerHeartbeat("wa", queues=("a",)))
        await store.set_worker_heartbeat(WorkerHeartbeat("wab", queues=("a", "b")))
        await store.set_worker_heartbeat(WorkerHeartbeat("all", queues=()))
        workers = {q.name: q.workers for q in await store.list_queues()}
        assert workers == {"a": 3, "b": 2, "c": 1}
        clock.advance(store.heartbeat_retention + 1)
        await store.set_worker_heartbeat(WorkerHeartbeat("wa", queues=("a",)))
        workers = {q.name: q.workers for q in await store.list_queues()}
        assert workers == {"a": 1, "b": 0, "c": 0}

    @pytest.mark.parametrize("name", ["", "x" * 300, "nul\x00"])
    async def test_bad_queue_names_are_refused(self, store: Store, name: str) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.pause_queue(name)
        with pytest.raises(errors.InvalidTask):
            await store.resume_queue(name)
        assert await store.list_queues() == []
