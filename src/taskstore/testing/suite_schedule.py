"""Recurring schedules, worker heartbeats and the poll stream (SPEC §2, §4, §5, §8)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from taskstore import FakeClock, NewTask, RecurringTask, State, Store, WorkerHeartbeat, errors
from taskstore.retry import Polynomial

from ._base import SHARED, OpenStore, SuiteBase, create


def every(seconds: int, rid: str = "tick", **options: object) -> RecurringTask:
    return RecurringTask(rid, f"@every {seconds}s", NewTask("cron", "tick", {"n": 1}), **options)  # type: ignore[arg-type]


class ScheduleTests(SuiteBase):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock(datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC))  # on a slot boundary

    # -- recurring ------------------------------------------------------------------------------

    async def test_add_recurring_waits_for_the_next_slot(self, store: Store, clock: FakeClock) -> None:
        stored = await store.add_recurring(every(10))
        assert stored.next_at == clock.now() + timedelta(seconds=10)
        assert await store.enqueue_due_recurring() == 0
        assert [r.id for r in await store.list_recurring()] == ["tick"]

    async def test_a_due_slot_creates_one_task_from_the_template(self, store: Store, clock: FakeClock) -> None:
        template = NewTask(
            "cron", "report", {"day": 1}, priority=3, max_attempts=2, retry=Polynomial(), context={"team": "ops"}
        )
        await store.add_recurring(RecurringTask("nightly", "@every 60s", template))
        clock.advance(61)
        assert await store.enqueue_due_recurring() == 1
        assert await store.enqueue_due_recurring() == 0
        (task,) = (await store.list()).items
        slot = datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
        assert (task.recurring_id, task.run_at, task.kind, task.args) == ("nightly", slot, "report", {"day": 1})
        assert (task.priority, task.max_attempts, task.retry, task.context) == (3, 2, Polynomial(), {"team": "ops"})
        assert "nightly" in task.id

    async def test_missed_slots_fire_once(self, store: Store, clock: FakeClock) -> None:
        await store.add_recurring(every(10))
        clock.advance(95)
        assert await store.enqueue_due_recurring() == 1
        (task,) = (await store.list()).items
        assert task.run_at == datetime(2030, 1, 1, 0, 1, 30, tzinfo=UTC)
        clock.advance(5)
        assert await store.enqueue_due_recurring() == 1

    async def test_skip_if_outstanding(self, store: Store, clock: FakeClock) -> None:
        await store.add_recurring(every(10, skip_if_outstanding=True))
        clock.advance(10)
        assert await store.enqueue_due_recurring() == 1
        clock.advance(10)
        assert await store.enqueue_due_recurring() == 0  # the first is still queued
        assert await store.outstanding_count("tick") == 1
        (task,) = await store.claim("w", ["cron"], limit=1)
        await store.mark_done(task)
        clock.advance(10)
        assert await store.enqueue_due_recurring() == 1

    async def test_concurrent_schedulers_fire_each_slot_once(self, open_store: OpenStore, clock: FakeClock) -> None:
        self.need(SHARED)
        stores = [await open_store() for _ in range(3)]
        await stores[0].add_recurring(every(1))
        for _ in range(5):
            clock.advance(1)
            await asyncio.gather(*(s.enqueue_due_recurring() for s in stores))
        tasks = (await stores[0].list()).items
        assert len(tasks) == 5
        assert len({t.run_at for t in tasks}) == 5

    async def test_concurrent_calls_on_one_store_fire_each_slot_once(self, store: Store, clock: FakeClock) -> None:
        await store.add_recurring(every(1))
        clock.advance(1)
        counts = await asyncio.gather(*(store.enqueue_due_recurring() for _ in range(5)))
        assert sum(counts) == 1
        assert await store.count() == 1

    async def test_re_adding_keeps_the_slot_unless_the_schedule_changes(self, store: Store, clock: FakeClock) -> None:
        await store.add_recurring(every(60))
        clock.advance(30)
        again = await store.add_recurring(every(60))
        assert again.next_at == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
        changed = await store.add_recurring(every(15))
        assert changed.next_at == datetime(2030, 1, 1, 0, 0, 45, tzinfo=UTC)

    async def test_remove_recurring(self, store: Store, clock: FakeClock) -> None:
        await store.add_recurring(every(1))
        assert await store.remove_recurring("tick") is True
        assert await store.remove_recurring("tick") is False
        clock.advance(5)
        assert await store.enqueue_due_recurring() == 0
        assert await store.list_recurring() == []

    async def test_cron_schedules(self, store: Store, clock: FakeClock) -> None:
        await store.add_recurring(RecurringTask("five", "*/5 * * * *", NewTask("cron", "tick")))
        clock.advance(timedelta(minutes=4))
        assert await store.enqueue_due_recurring() == 0
        clock.advance(timedelta(minutes=1))
        assert await store.enqueue_due_recurring() == 1
        (task,) = (await store.list()).items
        assert task.run_at == datetime(2030, 1, 1, 0, 5, tzinfo=UTC)

    @pytest.mark.parametrize("schedule", ["", "every day", "@every", "@every soon", "61 * * * *"])
    async def test_bad_schedules_are_invalid(self, schedule: str) -> None:
        with pytest.raises(errors.InvalidTask):
            RecurringTask("r", schedule, NewTask("cron", "tick"))

    async def test_templates_take_no_id(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.add_recurring(RecurringTask("r", "@every 1s", NewTask("cron", "tick", id="fixed")))

    # -- worker heartbeats ----------------------------------------------------------------------

    async def test_heartbeats_upsert_and_are_stamped_by_the_store(self, store: Store, clock: FakeClock) -> None:
        beat = WorkerHeartbeat(
            "w1",
            queues=("mail",),
            inflight=3,
            host="h",
            pid=42,
            version="1",
            started_at=clock.now(),
            extras={"rss": 10},
        )
        stored = await store.set_worker_heartbeat(beat)
        assert stored.timestamp == clock.now()
        clock.advance(5)
        await store.set_worker_heartbeat(WorkerHeartbeat("w1", queues=("mail", "sms"), inflight=1))
        got = await store.get_worker_heartbeat("w1")
        assert got is not None
        assert (tuple(got.queues), got.inflight, got.timestamp) == (("mail", "sms"), 1, clock.now())
        assert await store.get_worker_heartbeat("w2") is None

    async def test_heartbeats_expire_after_the_retention_window(self, store: Store, clock: FakeClock) -> None:
        await store.set_worker_heartbeat(WorkerHeartbeat("old"))
        clock.advance(30)
        await store.set_worker_heartbeat(WorkerHeartbeat("new", extras={"k": "v"}))
        assert [h.worker_id for h in await store.list_worker_heartbeats()] == ["new", "old"]
        clock.advance(31)
        assert await store.get_worker_heartbeat("old") is None
        live = await store.list_worker_heartbeats()
        assert [h.worker_id for h in live] == ["new"]
        assert live[0].extras == {"k": "v"}
        assert await store.purge_worker_heartbeats() == 1

    # -- poll -----------------------------------------------------------------------------------

    async def test_poll_yields_claimed_tasks_in_order(self, store: Store) -> None:
        tasks = await create(store, 5)
        seen = []
        async for task in store.poll("w1", ["q"], batch=2, block_for=0.05):
            assert task.state is State.CLAIMED
            seen.append(task.id)
            if len(seen) == 5:
                break
        assert seen == [t.id for t in tasks]

    async def test_poll_releases_what_it_did_not_hand_out(self, store: Store) -> None:
        await create(store, 5)
        stream = store.poll("w1", batch=5)
        first = await anext(stream)
        await stream.aclose()
        assert (await store.get(first.id)).state is State.CLAIMED
        assert await store.count(state=State.QUEUED) == 4
        assert all(t.attempts == 0 for t in (await store.list(state=State.QUEUED)).items)

    async def test_poll_idles_until_work_arrives(self, store: Store) -> None:
        async def later() -> None:
            await asyncio.sleep(0.2)
            await store.create(NewTask("q", "k", id="late"))

        feeding = asyncio.create_task(later())
        stream = store.poll("w1", block_for=5)
        task = await asyncio.wait_for(anext(stream), 5)
        await stream.aclose()
        await feeding
        assert task.id == "late"

    async def test_poll_renews_a_buffered_lease_and_skips_a_lost_one(self, store: Store, clock: FakeClock) -> None:
        await create(store, 3, processing_timeout=10)
        stream = store.poll("w1", batch=3)
        first = await anext(stream)
        clock.advance(5)  # the other two waited half their lease in the buffer
        second = await anext(stream)
        assert second.claim is not None
        assert second.claim.times_out_at == clock.now() + timedelta(seconds=10)  # renewed on hand-out
        third_id = (await store.list(state=State.CLAIMED)).items[-1].id
        clock.advance(6)
        assert await store.reap() == 2  # the first (handed out, not renewed) and the third (still buffered)
        await create(store, 1)
        fourth = await anext(stream)  # the third's lease is gone: it is skipped, the next claim is served
        assert fourth.id != third_id
        await stream.aclose()
        assert first.id != second.id

    async def test_a_claim_cancelled_while_waiting_gives_its_tasks_back(self, store: Store) -> None:
        await create(store, 2)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.claim("w", limit=5, block_for=5), 0.3)
        await asyncio.sleep(0.1)
        assert await store.count(state=State.QUEUED) == 2
        assert all(t.attempts == 0 for t in (await store.list()).items)


class RecurringOwnerTests(SuiteBase):
    """The driver stores a schedule's ``owner`` (the App that declared it) and reads it back (SPEC §9 stage)."""

    async def test_the_owner_round_trips(self, store: Store) -> None:
        from taskstore import _recurring

        driver = await store._ready()
        at = store.now() + timedelta(minutes=1)
        base = _recurring.to_row(RecurringTask("by-hand", "* * * * *", NewTask("q", "k")), store.codec, at)
        rows = [dataclasses.replace(base, id="by-app", owner="my-app"), base]
        for row in rows:
            await driver.put_recurring(row)
        owners = {r.id: r.owner for r in await driver.list_recurring()}
        assert owners == {"by-app": "my-app", "by-hand": None}
        await driver.put_recurring(dataclasses.replace(base, owner="other-app"))
        owners = {r.id: r.owner for r in await driver.list_recurring()}
        assert owners == {"by-app": "my-app", "by-hand": "other-app"}
