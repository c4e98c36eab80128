"""Cancel, manual retry, the outbox compare-and-set, listing and counting (SPEC §2, §3, §8)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskstore import Failure, FakeClock, State, Store, errors

from ._base import SuiteBase, claim_one, create, new


class AdminTests(SuiteBase):
    # -- cancel ---------------------------------------------------------------------------------

    async def test_cancel_a_queued_task(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store)
        cancelled = await store.cancel(task.id)
        assert cancelled.state is State.CANCELLED and cancelled.finished_at == clock.now()
        assert await store.claim("w", limit=1) == []

    async def test_cancel_a_failed_task_waiting_to_retry(self, store: Store) -> None:
        await create(store)
        failed = await store.mark_failed(await claim_one(store), Failure("Flaky"))
        assert failed.state is State.FAILED
        assert (await store.cancel(failed.id)).state is State.CANCELLED

    async def test_cancel_a_claimed_task_is_a_request(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        requested = await store.cancel(task.id)
        assert requested.state is State.CLAIMED and requested.cancel_requested
        assert requested.claim == task.claim
        # the worker may still finish it; the request does not fence it out
        assert (await store.mark_done(task)).state is State.DONE

    async def test_cancel_missing_is_not_found(self, store: Store) -> None:
        with pytest.raises(errors.NotFound):
            await store.cancel("missing")

    async def test_cancel_a_finished_task_changes_nothing(self, store: Store) -> None:
        await create(store)
        done = await store.mark_done(await claim_one(store), result=1)
        assert await store.cancel(done.id) == done

    # -- retry ----------------------------------------------------------------------------------

    async def test_retry_a_dead_task_gives_a_fresh_budget(self, store: Store, clock: FakeClock) -> None:
        await create(store, max_attempts=1)
        dead = await store.mark_failed(await claim_one(store), Failure("Boom"))
        assert dead.state is State.DEAD
        clock.advance(100)
        again = await store.retry(dead.id)
        assert again.state is State.QUEUED and again.attempts == 0 and again.run_at == clock.now()
        assert again.finished_at is None
        assert (await claim_one(store)).attempts == 1

    async def test_retry_a_cancelled_task(self, store: Store) -> None:
        (task,) = await create(store)
        await store.cancel(task.id)
        assert (await store.retry(task.id)).state is State.QUEUED

    async def test_retry_of_a_waiting_task_runs_it_now(self, store: Store, clock: FakeClock) -> None:
        task = await store.create(new(run_at=clock.now() + timedelta(hours=2)))
        again = await store.retry(task.id)
        assert again.state is State.QUEUED and again.run_at == clock.now()
        assert len(await store.claim("w", limit=1)) == 1

    async def test_retry_leaves_running_and_done_tasks_alone(self, store: Store) -> None:
        await create(store, 2)
        running = await claim_one(store)
        assert await store.retry(running.id) == running
        done = await store.mark_done(await claim_one(store))
        assert await store.retry(done.id) == done

    async def test_retry_missing_is_not_found(self, store: Store) -> None:
        with pytest.raises(errors.NotFound):
            await store.retry("missing")

    # -- update (version compare-and-set) -------------------------------------------------------

    async def test_update_writes_mutable_fields_and_bumps_version(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store)
        later = clock.now() + timedelta(minutes=3)
        updated = await store.update(task.replace(attempts=2, run_at=later, state=State.FAILED))
        assert (updated.state, updated.attempts, updated.run_at) == (State.FAILED, 2, later)
        assert updated.version == task.version + 1
        assert await store.get(task.id) == updated

    async def test_update_ignores_immutable_fields(self, store: Store) -> None:
        (task,) = await create(store)
        updated = await store.update(task.replace(kind="other", queue="elsewhere", args={"changed": True}))
        assert (updated.kind, updated.queue, updated.args) == (task.kind, task.queue, task.args)

    async def test_update_with_a_stale_version_changes_nothing(self, store: Store) -> None:
        (task,) = await create(store)
        fresh = await store.update(task.replace(attempts=1))
        with pytest.raises(errors.StaleVersion):
            await store.update(task.replace(attempts=5))
        assert await store.get(task.id) == fresh

    async def test_update_a_missing_id_is_not_found(self, store: Store) -> None:
        (task,) = await create(store)
        with pytest.raises(errors.NotFound):
            await store.update(task.replace(id="never-stored"))

    async def test_update_cannot_claim(self, store: Store) -> None:
        (task,) = await create(store)
        with pytest.raises(errors.InvalidTask):
            await store.update(task.replace(state=State.CLAIMED))

    async def test_update_to_a_terminal_state_finishes_the_task(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store)
        done = await store.update(task.replace(state=State.DONE))
        assert done.finished_at == clock.now()

    async def test_update_releasing_a_claim_fences_the_old_lease(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        assert task.claim is not None
        requeued = await store.update(task.replace(state=State.QUEUED))
        assert requeued.claim is None
        with pytest.raises(errors.NotClaimed):
            await store.mark_done(task.claim)

    # -- list -----------------------------------------------------------------------------------

    async def test_list_pages_forward_with_a_keyset_cursor(self, store: Store) -> None:
        tasks = await create(store, 25)
        seen, cursor, pages = [], None, 0
        while True:
            page = await store.list(cursor=cursor, limit=10)
            seen += [t.id for t in page.items]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [t.id for t in tasks] and pages == 3

    async def test_list_pages_backward(self, store: Store) -> None:
        tasks = await create(store, 7)
        first = await store.list(limit=4, descending=True)
        second = await store.list(limit=4, descending=True, cursor=first.next_cursor)
        assert [t.id for t in [*first.items, *second.items]] == [t.id for t in reversed(tasks)]
        assert second.next_cursor is None

    async def test_list_exact_last_page_has_no_cursor(self, store: Store) -> None:
        await create(store, 4)
        page = await store.list(limit=4)
        assert len(page.items) == 4 and page.next_cursor is None

    async def test_list_filters_by_state_and_queue(self, store: Store) -> None:
        await store.create_many([new("a", id="a1"), new("a", id="a2"), new("b", id="b1")])
        await store.claim("w", ["a"], limit=1)
        assert [t.id for t in (await store.list(state=State.QUEUED, queue="a")).items] == ["a2"]
        assert [t.id for t in (await store.list(state="claimed")).items] == ["a1"]
        assert [t.id for t in (await store.list(queue="b")).items] == ["b1"]

    async def test_list_filters_by_kind(self, store: Store) -> None:
        await store.create_many(
            [new("a", "send", id="s1"), new("a", "bill", id="b1"), new("b", "send", id="s2"), new("a", "send", id="s3")]
        )
        await store.claim("w", ["a"], limit=1)  # s1
        assert [t.id for t in (await store.list(kind="send")).items] == ["s1", "s2", "s3"]
        assert [t.id for t in (await store.list(kind="send", queue="a", state=State.QUEUED)).items] == ["s3"]
        assert [t.id for t in (await store.list(kind="send", queue="a", descending=True)).items] == ["s3", "s1"]
        first = await store.list(kind="send", limit=2)
        rest = await store.list(kind="send", limit=2, cursor=first.next_cursor)
        assert [t.id for t in [*first.items, *rest.items]] == ["s1", "s2", "s3"] and rest.next_cursor is None
        assert (await store.list(kind="nothing-of-this-kind")).items == []

    async def test_list_rejects_a_bad_kind(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.list(kind="")

    async def test_list_ready_as_of_is_inclusive(self, store: Store, clock: FakeClock) -> None:
        now = clock.now()
        await store.create_many([new(id=f"t{i}", run_at=now + timedelta(seconds=i)) for i in range(5)])
        page = await store.list(state=State.QUEUED, ready_as_of=now + timedelta(seconds=2))
        assert [t.id for t in page.items] == ["t0", "t1", "t2"]

    async def test_list_with_no_match_is_an_empty_page(self, store: Store) -> None:
        await create(store, 2)
        page = await store.list(state=State.DEAD)
        assert list(page.items) == [] and page.next_cursor is None

    async def test_list_rejects_a_bad_cursor(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.list(cursor="not-a-cursor")

    # -- counts ---------------------------------------------------------------------------------

    async def test_count_of_an_empty_store_is_zero(self, store: Store) -> None:
        assert await store.count() == 0 and await store.count(state=State.DONE) == 0

    async def test_count_by_state_and_queue_ready_or_not(self, store: Store, clock: FakeClock) -> None:
        await store.create_many([new("a"), new("a", run_at=clock.now() + timedelta(days=1)), new("b"), new("b")])
        await store.claim("w", ["b"], limit=1)
        assert await store.count() == 4
        assert await store.count(state=State.QUEUED) == 3
        assert await store.count(state=State.QUEUED, queue="a") == 2
        assert await store.count(queue="b") == 2
        assert await store.count(state=State.CLAIMED, queue="a") == 0

    async def test_outstanding_count_of_a_recurring_id(self, store: Store) -> None:
        await store.create_many(
            [
                new(recurring_id="nightly"),
                new(recurring_id="nightly"),
                new(recurring_id="nightly"),
                new(recurring_id="hourly"),
                new(),
            ]
        )
        first, second = await store.claim("w", limit=2)
        await store.mark_done(first)
        await store.mark_failed(second, Failure("Flaky"))
        assert await store.outstanding_count("nightly") == 2  # one failed (waiting) + one queued
        assert await store.outstanding_count("hourly") == 1
        assert await store.outstanding_count("never") == 0

    # -- a cancel requested while running is never lost -----------------------------------------

    async def test_a_requested_cancel_survives_a_reap(self, store: Store, clock: FakeClock) -> None:
        await create(store, processing_timeout=5)
        task = await claim_one(store)
        await store.cancel(task.id)
        clock.advance(6)
        assert await store.reap() == 1
        assert (await store.get(task.id)).state is State.CANCELLED
        assert await store.claim("w2", limit=1) == []

    async def test_a_requested_cancel_survives_a_release(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        await store.cancel(task.id)
        released = await store.unclaim(task)
        assert released.state is State.CANCELLED
        assert await store.claim("w2", limit=1) == []

    async def test_a_requested_cancel_wins_over_a_retry(self, store: Store) -> None:
        await create(store, max_attempts=5)
        task = await claim_one(store)
        await store.cancel(task.id)
        failed = await store.mark_failed(task, Failure("Boom"))
        assert failed.state is State.CANCELLED
        assert failed.result is not None
        assert failed.result.failure is not None
        assert "Boom" in failed.result.failure.message

    async def test_a_requested_cancel_is_not_taken_over(self, store: Store, clock: FakeClock) -> None:
        (created,) = await create(store)
        first = await store.claim_task(created.id, "w1", ttl=5)
        assert first is not None
        await store.cancel(created.id)
        clock.advance(6)
        assert await store.claim_task(created.id, "w2", ttl=5) is None
        assert (await store.get(created.id)).state is State.CANCELLED

    # -- activity (the dashboard's charts) --------------------------------------------------------

    async def test_activity_counts_finishes_per_minute(self, store: Store, clock: FakeClock) -> None:
        await create(store, 6, max_attempts=1)
        clock.advance(70 - clock.now().timestamp() % 60)  # 10 s into a minute: the slots below are known
        first = await store.mark_done(await claim_one(store))  # slot 1 of the window below
        clock.advance(60)
        await store.mark_done(await claim_one(store))
        await store.mark_done(await claim_one(store))
        dead = await store.mark_failed(await claim_one(store), Failure("Boom"))  # dead: one attempt
        task = await claim_one(store)
        await store.cancel(task.id)
        await store.mark_cancelled(task)
        clock.advance(30)
        slots = await store.activity(window=180, bucket=60)
        minute = clock.now() - timedelta(seconds=40)  # the start of the minute now
        assert [s.start for s in slots] == [minute - timedelta(seconds=120 - 60 * i) for i in range(3)]
        assert [(s.done, s.dead, s.cancelled) for s in slots] == [(0, 0, 0), (1, 0, 0), (2, 1, 1)]
        assert slots[1].start <= first.finished_at < slots[2].start  # type: ignore[operator]
        # a window that starts after the first finish leaves it out; queued tasks never count
        recent = await store.activity(window=60, bucket=60)
        assert [(s.done, s.dead, s.cancelled) for s in recent] == [(2, 1, 1)]
        # finishes are events: retrying the dead task and archiving the done ones take none of them back
        await store.retry(dead.id)
        assert await store.archive(before=clock.now()) == 4
        await store.fold_counts()
        assert await store.activity(window=180, bucket=60) == slots
        # two-minute buckets lie on the two-minute grid
        (pair,) = await store.activity(window=120, bucket=120)
        assert pair.start.timestamp() % 120 == 0 and pair.start <= clock.now()
        assert (pair.done, pair.dead, pair.cancelled) in ((3, 1, 1), (2, 1, 1))

    async def test_activity_finishes_of_a_retried_task_count_again(self, store: Store, clock: FakeClock) -> None:
        await create(store, max_attempts=1)
        dead = await store.mark_failed(await claim_one(store), Failure("Boom"))
        await store.retry(dead.id)
        await store.mark_done(await claim_one(store))
        (slot,) = await store.activity(window=60, bucket=60)
        assert (slot.done, slot.dead) == (1, 1)

    async def test_activity_forgets_minutes_past_the_kept_week(self, store: Store, clock: FakeClock) -> None:
        await create(store)
        await store.mark_done(await claim_one(store))
        clock.advance(timedelta(days=3))
        await store.fold_counts()
        assert sum(s.done for s in await store.activity(window=timedelta(days=4), bucket=3600)) == 1
        clock.advance(timedelta(days=5))
        assert await store.fold_counts() >= 1
        assert sum(s.done for s in await store.activity(window=timedelta(days=9), bucket=3600)) == 0

    async def test_dead_summaries_newest_first_without_payloads(self, store: Store, clock: FakeClock) -> None:
        tasks = await create(store, 4, max_attempts=1, queue="mail")
        deaths = []
        for i, message in enumerate(["row 1 is bad", "x" * 5000, "row 3 is bad"]):
            clock.advance(1)
            claimed = await store.claim_task(tasks[i].id, "w1")
            assert claimed is not None
            deaths.append(await store.mark_failed(claimed, Failure(f"E{i}", message)))
        await store.mark_done(await claim_one(store))  # not dead: never listed
        found = await store.dead_summaries()
        assert [d.id for d in found] == [t.id for t in reversed(deaths)]
        newest = found[0]
        assert (newest.queue, newest.kind, newest.type, newest.message) == ("mail", "k", "E2", "row 3 is bad")
        assert newest.finished_at == deaths[2].finished_at
        assert found[1].message == deaths[1].result.failure.message[:2000]  # type: ignore[union-attr]
        assert [d.id for d in await store.dead_summaries(limit=1)] == [deaths[2].id]
        await store.retry(deaths[2].id)  # no longer dead
        assert [d.id for d in await store.dead_summaries()] == [deaths[1].id, deaths[0].id]
        for bad in (0, 100_001, True, "5"):
            with pytest.raises(errors.InvalidTask):
                await store.dead_summaries(limit=bad)  # type: ignore[arg-type]

    async def test_activity_refuses_too_many_slots(self, store: Store) -> None:
        with pytest.raises(errors.InvalidTask):
            await store.activity(window=86400 * 300, bucket=60)
        with pytest.raises(errors.InvalidTask, match="whole number of minutes"):
            await store.activity(window=60, bucket=1)
        with pytest.raises(errors.InvalidTask):
            await store.activity(window=60, bucket=0)
