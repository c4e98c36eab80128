"""Why is it not running? (SPEC §9): every gate holding a task back, named with its facts.

The wording is checked loosely: the key facts (a worker, a holder, an instant, a queue) must be there.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskstore import FakeClock, Store, WorkerHeartbeat, errors

from ._base import SuiteBase, claim_one, new


def _one(reasons: list[str], *words: str) -> str:
    """The one reason that mentions every word (case-insensitive)."""
    found = [r for r in reasons if all(w.lower() in r.lower() for w in words)]
    assert len(found) == 1, f"expected one reason with {words} in {reasons}"
    return found[0]


class WhyTests(SuiteBase):
    async def _live_worker(self, store: Store, *queues: str) -> None:
        await store.set_worker_heartbeat(WorkerHeartbeat("live-worker", queues=queues))

    async def test_a_claimable_task_with_a_live_worker_has_no_reasons(self, store: Store) -> None:
        task = await store.create(new())
        await self._live_worker(store, "q")
        assert await store.why(task.id) == []

    async def test_a_worker_on_every_queue_counts(self, store: Store) -> None:
        task = await store.create(new("mail"))
        await self._live_worker(store)
        assert await store.why(task.id) == []

    async def test_no_live_worker(self, store: Store, clock: FakeClock) -> None:
        task = await store.create(new("mail"))
        assert _one(await store.why(task.id), "worker", "mail")
        await store.set_worker_heartbeat(WorkerHeartbeat("elsewhere", queues=("sms",)))
        assert _one(await store.why(task.id), "worker", "mail")
        await self._live_worker(store, "mail")
        assert await store.why(task.id) == []
        clock.advance(store.heartbeat_retention + 1)
        assert _one(await store.why(task.id), "worker", "mail")

    async def test_scheduled_in_the_future(self, store: Store, clock: FakeClock) -> None:
        at = clock.now() + timedelta(hours=2)
        task = await store.create(new(run_at=at))
        await self._live_worker(store)
        assert _one(await store.why(task.id), at.isoformat())
        clock.set(at)
        await self._live_worker(store)  # two hours on: a fresh heartbeat
        assert await store.why(task.id) == []

    async def test_waiting_to_retry(self, store: Store) -> None:
        await store.create(new(max_attempts=3))
        failed = await store.mark_failed(await claim_one(store), RuntimeError("boom"))
        await self._live_worker(store)
        assert _one(await store.why(failed.id), "retry", failed.run_at.isoformat())

    async def test_paused_queue(self, store: Store) -> None:
        task = await store.create(new("mail"))
        await self._live_worker(store)
        await store.pause_queue("mail")
        assert _one(await store.why(task.id), "paused", "mail")
        await store.resume_queue("mail")
        assert await store.why(task.id) == []

    async def test_concurrency_limit_names_the_holder(self, store: Store) -> None:
        await store.set_limit("K", concurrency=1)
        await store.create_many([new(id="first", concurrency_key="K"), new(id="second", concurrency_key="K")])
        await self._live_worker(store)
        assert await store.why("second") == []  # the key has room
        await store.claim("holder-worker", limit=5)
        reason = _one(await store.why("second"), "concurrency", "K")
        assert "first" in reason and "holder-worker" in reason and "1" in reason

    async def test_rate_limit_names_the_refill(self, store: Store, clock: FakeClock) -> None:
        await store.set_limit("K", rate=1, per=10)
        await store.create_many([new(id="a", concurrency_key="K"), new(id="b", concurrency_key="K")])
        await self._live_worker(store)
        await claim_one(store)
        refill = clock.now() + timedelta(seconds=10)
        assert _one(await store.why("b"), "rate", "K", refill.isoformat())
        clock.advance(10)
        assert await store.why("b") == []

    async def test_rate_zero_never_refills(self, store: Store) -> None:
        await store.set_limit("K", rate=0)
        task = await store.create(new(concurrency_key="K"))
        await self._live_worker(store)
        assert _one(await store.why(task.id), "rate", "K")

    async def test_expired(self, store: Store, clock: FakeClock) -> None:
        expires = clock.now() + timedelta(seconds=5)
        task = await store.create(new(expires_at=expires))
        await self._live_worker(store)
        clock.advance(5)
        assert _one(await store.why(task.id), "expired", expires.isoformat())
        await store.reap()
        assert _one(await store.why(task.id), "expired", "cancelled")

    async def test_claimed_by_a_worker_until_its_lease_ends(self, store: Store, clock: FakeClock) -> None:
        await store.create(new(processing_timeout=30))
        task = await claim_one(store, "busy-worker")
        assert task.claim is not None
        (reason,) = await store.why(task.id)
        assert "busy-worker" in reason and task.claim.times_out_at.isoformat() in reason

    @pytest.mark.parametrize("end", ["done", "dead", "cancelled"])
    async def test_finished_tasks_say_so(self, store: Store, end: str) -> None:
        await store.create(new(id="t", max_attempts=1))
        if end == "cancelled":
            await store.cancel("t")
        else:
            claimed = await claim_one(store)
            await (store.mark_done(claimed) if end == "done" else store.mark_failed(claimed, RuntimeError("boom")))
        (reason,) = await store.why("t")
        assert end in reason

    async def test_archived_tasks_are_found(self, store: Store, clock: FakeClock) -> None:
        await store.create(new(id="t"))
        await store.mark_done(await claim_one(store))
        clock.advance(1)
        await store.archive(older_than=0)
        (reason,) = await store.why("t")
        assert "done" in reason

    async def test_every_gate_at_once(self, store: Store, clock: FakeClock) -> None:
        await store.set_limit("K", concurrency=0)
        task = await store.create(new("mail", concurrency_key="K", run_at=clock.now() + timedelta(seconds=60)))
        await store.pause_queue("mail")
        reasons = await store.why(task.id)
        assert len(reasons) == 4
        _one(reasons, "paused")
        _one(reasons, "concurrency")
        _one(reasons, "worker")

    async def test_unknown_ids_are_not_found(self, store: Store) -> None:
        with pytest.raises(errors.NotFound):
            await store.why("nope")
        with pytest.raises(errors.InvalidTask):
            await store.why("")
