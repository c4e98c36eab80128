"""Claiming: order, limits, blocking, concurrency, claim_task and find_available (SPEC §2, §8)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest

from taskstore import FakeClock, State, Store, errors
from taskstore.retry import Exponential

from ._base import SHARED, OpenStore, SuiteBase, claim_one, create, new


class ClaimTests(SuiteBase):
    async def test_claim_sets_the_lease(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store, processing_timeout=30)
        claimed = await claim_one(store, "worker-7")
        assert claimed.id == task.id and claimed.state is State.CLAIMED
        assert claimed.attempts == 1 and claimed.version == task.version + 1
        assert claimed.claim is not None
        assert claimed.claim.worker_id == "worker-7" and claimed.claim.task_id == task.id
        assert claimed.claim.claimed_at == clock.now()
        assert claimed.claim.times_out_at == clock.now() + timedelta(seconds=30)
        assert await store.get(task.id) == claimed

    async def test_a_claimed_task_is_the_task_a_read_finds(self, store: Store, clock: FakeClock) -> None:
        """Every field a claim hands back, by either way of claiming, is what a read of the task finds."""
        await store.set_limit("limited", concurrency=5)
        odd = {"s": "\x00é\u2028🙂'\\", "n": [1.5, -2, None, True], "big": 2**62}
        for key in (None, "limited"):  # a key with a limit: the claim goes the limits' way
            options: list[dict[str, Any]] = [
                {},
                {"context": {"trace": "x", "n": 1}, "reference_id": "ref", "priority": 3, "processing_timeout": 12.5},
                {
                    "retry": Exponential(base=3.0),
                    "max_attempts": 7,
                    "unique_key": f"u-{key}",
                    "unique_states": {"queued"},
                },
                {"run_at": clock.now() - timedelta(seconds=5), "expires_at": clock.now() + timedelta(hours=1)},
            ]
            await store.create_many([new(args=odd, concurrency_key=key, **o) for o in options])
            claimed = await store.claim("w", limit=len(options))
            assert len(claimed) == len(options)
            for task in claimed:
                assert task.args == odd
                assert await store.get(task.id) == task

    async def test_each_claim_gets_a_new_token(self, store: Store) -> None:
        await create(store, 5)
        first = [t.claim.token for t in await store.claim("w", limit=3) if t.claim]
        second = [t.claim.token for t in await store.claim("w", limit=2) if t.claim]
        assert len(set(first + second)) == 5  # within one claim and across claims
        assert all(len(token) >= 32 for token in first + second)  # long enough not to be guessed

    async def test_priority_first(self, store: Store) -> None:
        await store.create_many([new(id="low", priority=0), new(id="high", priority=5), new(id="mid", priority=2)])
        assert [t.id for t in await store.claim("w", limit=3)] == ["high", "mid", "low"]

    async def test_then_run_at(self, store: Store, clock: FakeClock) -> None:
        now = clock.now()
        await store.create_many(
            [new(id="later", run_at=now - timedelta(seconds=1)), new(id="earlier", run_at=now - timedelta(seconds=5))]
        )
        assert [t.id for t in await store.claim("w", limit=2)] == ["earlier", "later"]

    async def test_then_enqueue_order(self, store: Store) -> None:
        tasks = await create(store, 20)
        got = await store.claim("w", limit=20)
        assert [t.id for t in got] == [t.id for t in tasks]

    async def test_future_run_at_is_not_claimable_until_due(self, store: Store, clock: FakeClock) -> None:
        await store.create(new(run_at=clock.now() + timedelta(seconds=10)))
        assert await store.claim("w", limit=5) == []
        clock.advance(10)
        assert len(await store.claim("w", limit=5)) == 1

    async def test_limit_is_respected(self, store: Store) -> None:
        await create(store, 10)
        assert len(await store.claim("w", limit=4)) == 4
        assert len(await store.claim("w", limit=100)) == 6
        assert await store.claim("w", limit=1) == []

    async def test_queue_filter(self, store: Store) -> None:
        await store.create_many([new("mail", id="m"), new("sms", id="s"), new("push", id="p")])
        got = await store.claim("w", ["mail", "push"], limit=10)
        assert sorted(t.id for t in got) == ["m", "p"]
        assert (await store.get("s")).state is State.QUEUED

    async def test_order_holds_across_queues(self, store: Store) -> None:
        await store.create_many([new("a", id="a0"), new("b", id="b9", priority=9), new("a", id="a5", priority=5)])
        assert [t.id for t in await store.claim("w", ["a", "b"], limit=3)] == ["b9", "a5", "a0"]

    async def test_no_queues_means_every_queue(self, store: Store) -> None:
        await store.create_many([new("a"), new("b"), new("c")])
        assert len(await store.claim("w", [], limit=10)) == 3

    async def test_a_claimed_task_is_not_claimed_again(self, store: Store) -> None:
        await create(store, 1)
        await claim_one(store, "w1")
        assert await store.claim("w2", limit=1) == []

    async def test_claim_validates_its_input(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.claim("", limit=1)
        with pytest.raises(errors.InvalidTask):
            await store.claim("w", limit=0)
        with pytest.raises(errors.InvalidTask):
            await store.claim("w", ["Bad Queue"], limit=1)

    async def test_block_for_zero_returns_what_is_claimable_now(self, store: Store) -> None:
        await create(store, 2)
        start = time.monotonic()
        got = await store.claim("w", limit=10, block_for=0)
        assert len(got) == 2
        assert time.monotonic() - start < 1.0

    async def test_block_for_waits_then_returns_empty(self, store: Store) -> None:
        start = time.monotonic()
        assert await store.claim("w", limit=1, block_for=0.3) == []
        assert time.monotonic() - start >= 0.29

    async def test_block_for_returns_once_limit_is_reached(self, store: Store) -> None:
        await create(store, 3)
        start = time.monotonic()
        assert len(await store.claim("w", limit=3, block_for=5)) == 3
        assert time.monotonic() - start < 2.0

    async def test_block_for_wakes_at_once_on_a_new_task(self, store: Store) -> None:
        async def enqueue_later() -> None:
            await asyncio.sleep(0.2)
            await store.create(new(id="late"))

        start = time.monotonic()
        producer = asyncio.create_task(enqueue_later())
        got = await store.claim("w", limit=1, block_for=10)
        await producer
        assert [t.id for t in got] == ["late"]
        assert time.monotonic() - start < 2.0

    async def test_block_for_is_woken_by_another_store_on_the_same_database(self, open_store: OpenStore) -> None:
        self.need(SHARED)
        consumer, producer = await open_store(), await open_store()

        async def enqueue_later() -> None:
            await asyncio.sleep(0.2)
            await producer.create(new(id="from-other-handle"))

        start = time.monotonic()
        feeding = asyncio.create_task(enqueue_later())
        got = await consumer.claim("w", limit=1, block_for=10)
        await feeding
        assert [t.id for t in got] == ["from-other-handle"]
        assert time.monotonic() - start < 2.0

    async def test_block_for_collects_tasks_up_to_the_limit(self, store: Store) -> None:
        async def trickle() -> None:
            for i in range(3):
                await asyncio.sleep(0.05)
                await store.create(new(id=f"t{i}"))

        feeding = asyncio.create_task(trickle())
        got = await store.claim("w", limit=3, block_for=10)
        await feeding
        assert sorted(t.id for t in got) == ["t0", "t1", "t2"]

    async def test_concurrent_claimers_never_share_a_task(self, store: Store) -> None:
        await create(store, 300)
        seen: list[str] = []

        async def claimer(worker: str) -> None:
            while batch := await store.claim(worker, limit=7):
                seen.extend(t.id for t in batch)

        await asyncio.gather(*(claimer(f"w{i}") for i in range(10)))
        assert len(seen) == 300 and len(set(seen)) == 300

    async def test_concurrent_claimers_on_separate_handles_never_share(self, open_store: OpenStore) -> None:
        self.need(SHARED)
        stores = [await open_store() for _ in range(4)]
        await create(stores[0], 200)
        seen: list[str] = []

        async def claimer(store: Store, worker: str) -> None:
            while batch := await store.claim(worker, limit=5):
                seen.extend(t.id for t in batch)

        await asyncio.gather(*(claimer(s, f"w{i}") for i, s in enumerate(stores)))
        assert len(seen) == 200 and len(set(seen)) == 200

    # -- claim_task (claim one specific task) ---------------------------------------------------

    async def test_claim_task_claims_that_task_with_its_ttl(self, store: Store, clock: FakeClock) -> None:
        a, b = await create(store, 2)
        got = await store.claim_task(b.id, "w1", ttl=12.5)
        assert got is not None and got.id == b.id and got.state is State.CLAIMED and got.attempts == 1
        assert got.claim is not None and got.claim.times_out_at == clock.now() + timedelta(seconds=12.5)
        assert (await store.get(a.id)).state is State.QUEUED

    async def test_claim_task_lease_defaults_to_processing_timeout(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store, processing_timeout=45)
        got = await store.claim_task(task.id, "w1")
        assert got is not None and got.claim is not None
        assert got.claim.times_out_at == clock.now() + timedelta(seconds=45)

    async def test_claim_task_is_none_while_a_live_claim_exists(self, store: Store) -> None:
        (task,) = await create(store)
        first = await store.claim_task(task.id, "w1", ttl=30)
        assert first is not None
        assert await store.claim_task(task.id, "w2", ttl=30) is None
        assert await store.claim_task(task.id, "w1", ttl=30) is None  # not re-entrant
        assert await store.get(task.id) == first

    async def test_claim_task_takes_over_an_expired_claim(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store)
        first = await store.claim_task(task.id, "w1", ttl=5)
        assert first is not None and first.claim is not None
        clock.advance(5)
        second = await store.claim_task(task.id, "w2", ttl=5)
        assert second is not None and second.claim is not None
        assert second.claim.worker_id == "w2" and second.attempts == 2
        with pytest.raises(errors.NotOwned):
            await store.mark_done(first.claim)

    async def test_claim_task_on_expired_last_attempt_goes_dead(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store, max_attempts=1)
        assert await store.claim_task(task.id, "w1", ttl=5) is not None
        clock.advance(6)
        assert await store.claim_task(task.id, "w2", ttl=5) is None
        assert (await store.get(task.id)).state is State.DEAD

    async def test_claim_task_missing_is_not_found(self, store: Store) -> None:
        with pytest.raises(errors.NotFound):
            await store.claim_task("missing", "w1")

    async def test_claim_task_not_claimable_is_none(self, store: Store, clock: FakeClock) -> None:
        future = await store.create(new(run_at=clock.now() + timedelta(hours=1)))
        assert await store.claim_task(future.id, "w1") is None
        (done,) = await create(store)
        claimed = await store.claim_task(done.id, "w1")
        assert claimed is not None and claimed.claim is not None
        await store.mark_done(claimed.claim)
        assert await store.claim_task(done.id, "w1") is None

    # -- find_available -------------------------------------------------------------------------

    async def test_find_available_claims_nothing(self, store: Store) -> None:
        tasks = await store.create_many([new(id="x", priority=1), new(id="y", priority=3), new(id="z", priority=2)])
        found = await store.find_available(limit=10)
        assert [t.id for t in found] == ["y", "z", "x"]
        for task in tasks:
            assert (await store.get(task.id)) == task

    async def test_find_available_skips_future_and_claimed_and_honours_limit(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.create(new(id="future", run_at=clock.now() + timedelta(seconds=30)))
        await create(store, 5)
        await claim_one(store)
        found = await store.find_available(["q"], limit=3)
        assert len(found) == 3
        assert all(t.state is State.QUEUED and t.id != "future" for t in found)
        assert len(await store.find_available(limit=10)) == 4
