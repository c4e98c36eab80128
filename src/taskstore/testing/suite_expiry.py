"""Expiry (SPEC §9): never claimed at or after ``expires_at``; the reaper cancels it with failure type ``Expired``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskstore import FakeClock, NewTask, State, StatusState, Store, errors

from ._base import SuiteBase, claim_one, new


class ExpiryTests(SuiteBase):
    async def test_an_expired_task_is_never_claimed(self, store: Store, clock: FakeClock) -> None:
        expires = clock.now() + timedelta(seconds=10)
        task = await store.create(new(id="e", expires_at=expires))
        assert task.expires_at == expires and (await store.get("e")).expires_at == expires
        clock.advance(9.999)
        assert [t.id for t in await store.find_available(limit=5)] == ["e"]
        clock.advance(0.001)  # at expires_at: already expired
        assert await store.find_available(limit=5) == []
        assert await store.claim("w", limit=5) == []
        assert await store.claim_task("e", "w") is None
        assert (await store.get("e")).state is State.QUEUED

    async def test_claimed_in_time_it_runs(self, store: Store, clock: FakeClock) -> None:
        await store.create(new(id="e", expires_at=clock.now() + timedelta(seconds=10), processing_timeout=600))
        await store.create(new(id="after"))
        task = await claim_one(store)
        assert task.id == "e"
        clock.advance(60)
        assert await store.reap() == 0
        task = await store.report_in(task)
        done = await store.mark_done(task, "ok")
        assert done.state is State.DONE and done.result is not None and done.result.value == "ok"

    async def test_reap_cancels_expired_waiting_tasks(self, store: Store, clock: FakeClock) -> None:
        expires = clock.now() + timedelta(seconds=10)
        await store.create_many([new(id="e1", expires_at=expires), new(id="e2", expires_at=expires), new(id="keep")])
        await store.create(new(id="later", expires_at=expires + timedelta(seconds=100)))
        clock.advance(10)
        assert await store.reap() == 2
        for task_id in ("e1", "e2"):
            task = await store.get(task_id)
            assert task.state is State.CANCELLED and task.finished_at == clock.now()
            assert task.result is not None and task.result.failure is not None
            assert task.result.failure.type == "Expired"
        assert (await store.get("later")).state is State.QUEUED
        assert await store.reap() == 0
        assert sorted(t.id for t in await store.claim("w", limit=5)) == ["keep", "later"]

    async def test_reap_honours_its_limit(self, store: Store, clock: FakeClock) -> None:
        expires = clock.now() + timedelta(seconds=1)
        await store.create_many([new(expires_at=expires) for _ in range(5)])
        clock.advance(2)
        assert await store.reap(limit=3) == 3
        assert await store.reap() == 2
        assert await store.count(state=State.CANCELLED) == 5

    async def test_a_failed_retry_past_expiry_is_cancelled(self, store: Store, clock: FakeClock) -> None:
        await store.create(new(id="e", expires_at=clock.now() + timedelta(seconds=30), max_attempts=3))
        await store.mark_failed(await claim_one(store), RuntimeError("boom"))
        clock.advance(30)
        assert await store.claim("w", limit=5) == []
        assert await store.reap() == 1
        task = await store.get("e")
        assert task.state is State.CANCELLED and task.attempts == 1

    async def test_a_lease_timing_out_past_expiry_ends_cancelled_by_the_reaper(
        self, store: Store, clock: FakeClock
    ) -> None:
        await store.create(
            new(id="e", expires_at=clock.now() + timedelta(seconds=5), processing_timeout=10, max_attempts=3)
        )
        await claim_one(store)
        clock.advance(3600)
        reaped = 0
        for _ in range(3):
            reaped += await store.reap()
        assert reaped == 2  # the lease times out (failed), then the waiting retry expires
        assert (await store.get("e")).state is State.CANCELLED

    async def test_an_expired_member_is_recorded_in_its_group(self, store: Store, clock: FakeClock) -> None:
        member = NewTask(
            "q", "member", {"args": [0], "kwargs": {}}, id="g:0", expires_at=clock.now() + timedelta(seconds=5)
        )
        callback = NewTask("q", "total", {"args": [], "kwargs": {}})
        await store.create_group("g", [member, new(id="g:1")], callback=callback)
        other = await store.claim_task("g:1", "w")
        assert other is not None
        await store.mark_done(other)
        clock.advance(5)
        assert await store.reap() == 1
        group = await store.get_group("g")
        assert group is not None and group.results["g:0"].state is StatusState.CANCELLED
        with pytest.raises(errors.NotFound):
            await store.get("g:callback")

    async def test_retry_of_an_expired_task_stays_unclaimable(self, store: Store, clock: FakeClock) -> None:
        await store.create(new(id="e", expires_at=clock.now() + timedelta(seconds=1)))
        clock.advance(1)
        await store.reap()
        retried = await store.retry("e")
        assert retried.state is State.QUEUED
        assert await store.claim("w", limit=1) == []

    async def test_expires_at_in_the_past_is_refused(self, store: Store, clock: FakeClock) -> None:
        for at in (clock.now(), clock.now() - timedelta(seconds=1)):
            with pytest.raises(errors.InvalidTask):
                await store.create(new(expires_at=at))
            with pytest.raises(errors.InvalidTask):
                await store.create_many([new(), new(expires_at=at)])
        assert await store.count() == 0

    async def test_expires_at_must_be_aware(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.create(new(expires_at=datetime(2999, 1, 1)))  # naive on purpose
        with pytest.raises(errors.InvalidTask):
            await store.create(new(expires_at="2999-01-01T00:00:00Z"))
        aware = await store.create(new(expires_at=datetime(2999, 1, 1, tzinfo=UTC)))
        assert aware.expires_at == datetime(2999, 1, 1, tzinfo=UTC)
