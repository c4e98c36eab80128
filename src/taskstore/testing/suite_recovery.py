"""Recovery within a lease: a claim takes over the leases that have ended (SPEC §2), fenced as a reap is.

A worker that crashed or froze holds its tasks only until its lease ends: the next claim in their queues reaps
them (a timed-out attempt, spent) and claims them again at once, in their old place in claim order, without
waiting for a reaper pass. A policy's ``lost_lease_delay`` can ask for a pause; ``max_attempts`` still ends a
task that keeps killing its workers.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from taskstore import BinaryExponential, Exponential, FakeClock, Polynomial, State, Store, errors

from ._base import SHARED, OpenStore, SuiteBase, claim_one, create


class RecoveryTests(SuiteBase):
    async def test_a_claim_takes_over_a_lease_that_ended(self, store: Store, clock: FakeClock) -> None:
        [created] = await create(store, processing_timeout=10, max_attempts=3)
        lost = await claim_one(store, "crashed")
        clock.advance(10)
        again = await claim_one(store, "w2")
        assert again.id == created.id and again.attempts == 2
        assert again.claim is not None and lost.claim is not None
        assert again.claim.worker_id == "w2" and again.claim.token != lost.claim.token
        [record] = again.failures
        assert (record.attempt, record.worker_id, record.failure.type) == (1, "crashed", "timed_out")
        assert record.ended_at == clock.now()
        with pytest.raises(errors.NotOwned):
            await store.mark_done(lost, result="late")  # the crashed worker's write is refused
        await store.mark_done(again, result="ok")
        assert (await store.get(created.id)).result.value == "ok"  # type: ignore[union-attr]

    async def test_a_lease_still_running_is_not_taken(self, store: Store, clock: FakeClock) -> None:
        await create(store, processing_timeout=10)
        held = await claim_one(store, "w1")
        clock.advance(9)
        await store.report_in(held)
        clock.advance(9)
        assert await store.claim("w2", limit=5) == []
        clock.advance(1)
        assert [t.id for t in await store.claim("w2", limit=5)] == [held.id]

    async def test_recovered_tasks_keep_their_place_in_claim_order(self, store: Store, clock: FakeClock) -> None:
        [first] = await create(store, processing_timeout=10)
        await claim_one(store, "crashed")
        clock.advance(5)
        later = await create(store, 3)
        clock.advance(5)
        got = await store.claim("w2", limit=2)
        assert [t.id for t in got] == [first.id, later[0].id]

    async def test_a_claim_recovers_only_its_own_queues(self, store: Store, clock: FakeClock) -> None:
        [a] = await create(store, queue="a", processing_timeout=10)
        await claim_one(store, "crashed", ["a"])
        clock.advance(10)
        assert await store.claim("w2", ["b"], limit=5) == []
        assert (await store.get(a.id)).state is State.CLAIMED
        assert [t.id for t in await store.claim("w2", ["a"], limit=5)] == [a.id]

    async def test_a_task_that_keeps_killing_its_workers_goes_dead(self, store: Store, clock: FakeClock) -> None:
        [created] = await create(store, processing_timeout=10, max_attempts=2)
        for attempt in (1, 2):
            claimed = await claim_one(store, f"crashed-{attempt}")
            assert claimed.attempts == attempt
            clock.advance(10)
        assert await store.claim("w", limit=5) == []  # the last attempt's lease ended: dead, not claimed
        dead = await store.get(created.id)
        assert dead.state is State.DEAD and dead.attempts == 2
        assert [f.failure.type for f in dead.failures] == ["timed_out", "timed_out"]

    async def test_a_cancel_requested_while_it_was_lost_ends_it(self, store: Store, clock: FakeClock) -> None:
        [created] = await create(store, processing_timeout=10, max_attempts=3)
        await claim_one(store, "crashed")
        await store.cancel(created.id)
        clock.advance(10)
        assert await store.claim("w", limit=5) == []
        assert (await store.get(created.id)).state is State.CANCELLED

    @pytest.mark.parametrize(
        ("policy", "pause"),
        [
            (Exponential(base=4.0, jitter=0.0, lost_lease_delay=1.5), 1.5),  # capped by lost_lease_delay
            (BinaryExponential(base=0.5, lost_lease_delay=10.0), 0.5),  # never longer than the first delay
            (Polynomial(lost_lease_delay=3.0), 3.0),
        ],
    )
    async def test_a_policy_may_ask_for_a_pause_after_a_lost_lease(
        self, store: Store, clock: FakeClock, policy: object, pause: float
    ) -> None:
        [created] = await create(store, processing_timeout=10, retry=policy)
        await claim_one(store, "crashed")
        clock.advance(10)
        assert await store.claim("w", limit=5) == []
        waiting = await store.get(created.id)
        assert waiting.state is State.FAILED and waiting.run_at == clock.now() + timedelta(seconds=pause)
        clock.advance(pause)
        assert [t.id for t in await store.claim("w", limit=5)] == [created.id]

    async def test_the_reaper_makes_a_lost_task_due_at_once_too(self, store: Store, clock: FakeClock) -> None:
        [created] = await create(store, processing_timeout=10, max_attempts=3)
        await claim_one(store, "crashed")
        clock.advance(10)
        assert await store.reap() == 1
        reaped = await store.get(created.id)
        assert reaped.state is State.FAILED and reaped.run_at == created.run_at

    async def test_a_claim_in_another_store_recovers_the_lease(self, open_store: OpenStore, clock: FakeClock) -> None:
        self.need(SHARED)
        one, two = await open_store(), await open_store()
        assert await two.claim("w2", limit=5) == []  # two has read when the first lease ends: none yet
        [created] = await create(one, processing_timeout=10)
        await claim_one(one, "crashed")
        clock.advance(10)
        # two learns of the lease one handed out when it next reads the lease ends (at most LEASE_END_CHECK
        # after its last read), so a claim made after that recovers it.
        deadline = asyncio.get_running_loop().time() + 5
        got = await two.claim("w2", limit=5)
        while not got and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            got = await two.claim("w2", limit=5)
        assert [t.id for t in got] == [created.id]

    async def test_a_blocked_claim_wakes_when_a_lease_ends(self, store: Store, clock: FakeClock) -> None:
        [created] = await create(store, processing_timeout=10)
        await claim_one(store, "crashed")
        waiting = asyncio.ensure_future(store.claim("w2", limit=1, block_for=30))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        clock.advance(10)
        got = await asyncio.wait_for(waiting, 10)
        assert [t.id for t in got] == [created.id]
