"""The reaper and the archiver: idempotent, guarded, atomic (SPEC §2, §8)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from taskstore import Failure, FakeClock, NewTask, State, Store, errors

from ._base import SHARED, OpenStore, SuiteBase, claim_one, create, new


class MaintenanceTests(SuiteBase):
    # -- reap -----------------------------------------------------------------------------------

    async def test_reap_fails_timed_out_claims_spending_the_attempt(self, store: Store, clock: FakeClock) -> None:
        await create(store, processing_timeout=10, max_attempts=3)
        task = await claim_one(store, "sleepy")
        clock.advance(10)
        assert await store.reap() == 1
        reaped = await store.get(task.id)
        assert reaped.state is State.FAILED and reaped.attempts == 1 and reaped.claim is None
        assert reaped.result is not None and reaped.result.failure is not None
        assert reaped.result.failure.type == "timed_out"
        assert reaped.run_at == task.run_at <= clock.now()  # a lost lease: due again at once, in its place

    async def test_reap_on_the_last_attempt_is_dead(self, store: Store, clock: FakeClock) -> None:
        await create(store, processing_timeout=10, max_attempts=1)
        task = await claim_one(store)
        clock.advance(11)
        assert await store.reap() == 1
        assert (await store.get(task.id)).state is State.DEAD

    async def test_reap_leaves_live_leases_alone(self, store: Store, clock: FakeClock) -> None:
        await create(store, 2, processing_timeout=10)
        a, b = await store.claim("w", limit=2)
        clock.advance(9)
        await store.report_in(b)
        clock.advance(2)
        assert await store.reap() == 1
        assert (await store.get(a.id)).state is State.FAILED
        assert (await store.get(b.id)).state is State.CLAIMED

    async def test_reap_is_idempotent(self, store: Store, clock: FakeClock) -> None:
        await create(store, 3, processing_timeout=1)
        await store.claim("w", limit=3)
        clock.advance(2)
        assert await store.reap() == 3
        assert await store.reap() == 0

    async def test_a_reaped_lease_is_refused(self, store: Store, clock: FakeClock) -> None:
        await create(store, processing_timeout=1)
        task = await claim_one(store)
        clock.advance(2)
        await store.reap()
        before = await store.get(task.id)
        for write in (
            store.mark_done(task),
            store.report_in(task),
            store.unclaim(task),
            store.mark_failed(task, Failure("x")),
        ):
            with pytest.raises(errors.NotClaimed):
                await write
        assert await store.get(task.id) == before

    async def test_reap_never_reverts_a_completed_task(self, store: Store, clock: FakeClock) -> None:
        await create(store, processing_timeout=1)
        task = await claim_one(store)
        clock.advance(5)  # timed out, but not reaped yet: the holder may still finish
        done = await store.mark_done(task, result="made it")
        assert await store.reap() == 0
        assert await store.get(task.id) == done

    async def test_reap_and_completion_race_leaves_one_outcome(self, store: Store, clock: FakeClock) -> None:
        tasks = await create(store, 40, processing_timeout=1)
        claimed = await store.claim("w", limit=40)
        clock.advance(2)

        async def complete() -> list[bool]:
            accepted = []
            for t in claimed:
                try:
                    await store.mark_done(t, result="ok")
                    accepted.append(True)
                except errors.NotClaimed:
                    accepted.append(False)
            return accepted

        async def reap() -> int:
            total = 0
            for _ in range(10):
                total += await store.reap(limit=3)
                await asyncio.sleep(0)
            return total

        accepted, _ = await asyncio.gather(complete(), reap())
        for t, ok in zip(claimed, accepted, strict=True):
            final = await store.get(t.id)
            assert final.state is (State.DONE if ok else State.FAILED)
        assert len(tasks) == 40

    async def test_concurrent_reapers_reap_each_task_once(self, open_store: OpenStore, clock: FakeClock) -> None:
        self.need(SHARED)
        stores = [await open_store() for _ in range(3)]
        await create(stores[0], 30, processing_timeout=1, max_attempts=5)
        await stores[0].claim("w", limit=30)
        clock.advance(2)
        counts = await asyncio.gather(*(s.reap() for s in stores))
        assert sum(counts) == 30
        assert all(t.attempts == 1 for t in (await stores[0].list(limit=50)).items)

    # -- archive --------------------------------------------------------------------------------

    async def _finish_three(self, store: Store) -> list[str]:
        await create(store, 4, max_attempts=1)
        a, b, c = await store.claim("w", limit=3)
        await store.mark_done(a, result="A")
        await store.mark_failed(b, Failure("Boom"))
        queued = (await store.list(state=State.QUEUED)).items[0]
        await store.cancel(queued.id)
        return [a.id, b.id, queued.id, c.id]

    async def test_archive_moves_finished_tasks(self, store: Store, clock: FakeClock) -> None:
        done, dead, cancelled, running = await self._finish_three(store)
        clock.advance(3600)
        assert await store.archive(before=clock.now()) == 3
        for task_id in (done, dead, cancelled):
            with pytest.raises(errors.NotFound):
                await store.get(task_id)
        archived = await store.get_archived(done)
        assert archived.state is State.DONE and archived.result is not None and archived.result.value == "A"
        assert (await store.get(running)).state is State.CLAIMED

    async def test_archive_respects_the_cutoff(self, store: Store, clock: FakeClock) -> None:
        await self._finish_three(store)
        cutoff = clock.now() - timedelta(seconds=1)
        assert await store.archive(before=cutoff) == 0
        assert await store.archive(before=clock.now()) == 3  # finished_at <= before is inclusive

    async def test_archive_older_than(self, store: Store, clock: FakeClock) -> None:
        await self._finish_three(store)
        assert await store.archive(older_than=timedelta(hours=1)) == 0
        clock.advance(timedelta(hours=1))
        assert await store.archive(older_than=3600) == 3

    async def test_archive_needs_one_cutoff(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.archive()

    async def test_archive_tasks_moves_only_the_finished_ones(self, store: Store, clock: FakeClock) -> None:
        done, dead, cancelled, running = await self._finish_three(store)
        (waiting,) = await create(store)
        moved = await store.archive_tasks([done, dead, cancelled, running, waiting.id, "no-such-task", dead])
        assert moved == 3  # no cutoff: finished a moment ago is enough; a repeated id counts once
        for task_id in (done, dead, cancelled):
            with pytest.raises(errors.NotFound):
                await store.get(task_id)
        assert (await store.get_archived(dead)).state is State.DEAD
        assert (await store.get(running)).state is State.CLAIMED
        assert (await store.get(waiting.id)).state is State.QUEUED
        archived = await store.list(archived=True, state=State.DEAD)
        assert [t.id for t in archived.items] == [dead]
        assert await store.archive_tasks([done, "no-such-task"]) == 0  # already archived, unknown: ignored
        assert await store.archive_tasks([]) == 0

    async def test_archive_tasks_leaves_a_retried_task(self, store: Store) -> None:
        _, dead, _, _ = await self._finish_three(store)
        await store.retry(dead)
        assert await store.archive_tasks([dead]) == 0
        assert (await store.get(dead)).state is State.QUEUED

    async def test_archive_tasks_of_a_group_keeps_the_group_whole(self, store: Store, clock: FakeClock) -> None:
        members = await store.create_group("g", [new(args={"i": i}) for i in range(2)])
        first = await claim_one(store)
        await store.mark_done(first, result="one")
        assert await store.archive_tasks([m.id for m in members]) == 1  # the unfinished member stays
        await store.mark_done(await claim_one(store), result="two")
        group = await store.get_group("g")  # the archived member still counts, as after archive(before)
        assert group is not None and group.completed == 2 and set(group.results) == {m.id for m in members}

    async def test_archive_tasks_takes_ids_not_one_id(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.archive_tasks("abc")

    async def test_archived_tasks_are_listed_and_counted_only_when_asked(self, store: Store, clock: FakeClock) -> None:
        ids = await self._finish_three(store)
        await store.archive(before=clock.now())
        assert await store.count() == 1 and await store.count(archived=True) == 3
        assert await store.count(state=State.DEAD, archived=True) == 1
        page = await store.list(archived=True)
        assert sorted(t.id for t in page.items) == sorted(ids[:3])
        assert [t.id for t in (await store.list()).items] == [ids[3]]

    async def test_archive_keeps_every_task_exactly_once(self, store: Store, clock: FakeClock) -> None:
        await create(store, 60, max_attempts=1)
        for t in await store.claim("w", limit=45):
            await store.mark_done(t)
        assert await store.archive(before=clock.now()) == 45
        assert await store.count() + await store.count(archived=True) == 60

    async def test_an_archived_id_can_be_used_again(self, store: Store, clock: FakeClock) -> None:
        await store.create_many([create_new("reused")])
        await store.mark_done(await claim_one(store), result="first")
        await store.archive(before=clock.now())
        again = await store.create(create_new("reused"))
        assert again.state is State.QUEUED
        assert (await store.get_archived("reused")).state is State.DONE

    async def test_get_archived_of_a_live_task_is_not_found(self, store: Store) -> None:
        (task,) = await create(store)
        with pytest.raises(errors.NotFound):
            await store.get_archived(task.id)


def create_new(task_id: str) -> NewTask:
    return NewTask("q", "k", id=task_id)
