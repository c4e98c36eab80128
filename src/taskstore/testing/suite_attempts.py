"""The attempt history: ``Task.failures`` keeps every attempt that ended without success (see ``transitions``)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskstore import AttemptFailure, Failure, FakeClock, NewTask, State, Store, errors
from taskstore.transitions import MAX_FAILURES_KEPT

from ._base import SuiteBase, claim_one, create


class AttemptHistoryTests(SuiteBase):
    async def test_two_failures_then_a_success_keep_both_failures_in_order(
        self, store: Store, clock: FakeClock
    ) -> None:
        (task,) = await create(store, max_attempts=5)
        first = Failure(type="ValueError", message="bad input", traceback="Traceback ...\nValueError", data={"n": 1})
        second = Failure(type="ConnectionError", message="refused")
        ends = []
        for worker, failure in (("w1", first), ("w2", second)):
            claimed = await claim_one(store, worker)
            clock.advance(1)
            failed = await store.mark_failed(claimed, failure, retry_in=0)
            ends.append(clock.now())
            assert failed.state is State.FAILED
        claimed = await claim_one(store, "w3")
        done = await store.mark_done(claimed, result="ok")
        expected = (
            AttemptFailure(attempt=1, ended_at=ends[0], worker_id="w1", failure=first),
            AttemptFailure(attempt=2, ended_at=ends[1], worker_id="w2", failure=second),
        )
        assert done.failures == expected
        stored = await store.get(task.id)
        assert stored.state is State.DONE and stored.result is not None and stored.result.value == "ok"
        assert stored.failures == expected

    async def test_a_batch_of_completions_keeps_the_failures(self, store: Store) -> None:
        await create(store, 2, max_attempts=3)
        for claimed in await store.claim("w", limit=2):
            await store.mark_failed(claimed, Failure(type="Flaky"), retry_in=0)
        outcomes = await store.mark_done_many(await store.claim("w", limit=2))
        for outcome in outcomes:
            assert not isinstance(outcome, errors.TaskstoreError)
            stored = await store.get(outcome.id)
            assert stored.state is State.DONE
            assert [(f.attempt, f.failure.type) for f in stored.failures] == [(1, "Flaky")]

    async def test_a_task_that_never_failed_has_no_failures(self, store: Store) -> None:
        # A new row leaves the column NULL, as rows from before it did: both read as no failures.
        (task,) = await create(store)
        assert task.failures == () and (await store.get(task.id)).failures == ()
        claimed = await claim_one(store)
        assert claimed.failures == ()
        await store.mark_done(claimed)
        assert (await store.get(task.id)).failures == ()

    async def test_a_reaped_lease_adds_a_timed_out_entry(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store, processing_timeout=10, max_attempts=3)
        await claim_one(store, "sleepy")
        clock.advance(10)
        assert await store.reap() == 1
        (entry,) = (await store.get(task.id)).failures
        assert (entry.attempt, entry.ended_at, entry.worker_id) == (1, clock.now(), "sleepy")
        assert entry.failure.type == "timed_out" and "sleepy" in entry.failure.message

    async def test_a_lease_taken_over_adds_a_timed_out_entry(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store, max_attempts=3)
        assert await store.claim_task(task.id, "w1", ttl=10) is not None
        clock.advance(11)
        taken = await store.claim_task(task.id, "w2", ttl=10)
        assert taken is not None and taken.attempts == 2
        (entry,) = taken.failures
        assert (entry.attempt, entry.ended_at, entry.worker_id) == (1, clock.now(), "w1")
        assert entry.failure.type == "timed_out"
        assert (await store.get(task.id)).failures == taken.failures

    async def test_a_cancelled_attempt_is_an_entry_a_cancelled_wait_is_not(self, store: Store) -> None:
        running, waiting = await create(store, 2)
        claimed = await store.claim_task(running.id, "w1")
        assert claimed is not None
        await store.cancel(running.id)
        cancelled = await store.mark_cancelled(claimed)
        assert cancelled.state is State.CANCELLED
        assert [(f.attempt, f.worker_id, f.failure.type) for f in cancelled.failures] == [(1, "w1", "cancelled")]
        assert (await store.cancel(waiting.id)).failures == ()

    async def test_a_failure_while_a_cancel_is_requested_keeps_the_handlers_failure(self, store: Store) -> None:
        (task,) = await create(store, max_attempts=3)
        claimed = await claim_one(store)
        await store.cancel(task.id)
        ended = await store.mark_failed(claimed, Failure(type="KeyError", message="'x'"))
        assert ended.state is State.CANCELLED
        assert [(f.failure.type, f.failure.message) for f in ended.failures] == [("KeyError", "'x'")]

    async def test_a_release_and_an_expiry_add_no_entry(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store, expires_at=clock.now() + timedelta(seconds=30))
        released = await store.unclaim(await claim_one(store))
        assert released.state is State.QUEUED and released.failures == ()
        clock.advance(31)
        await store.reap()
        expired = await store.get(task.id)
        assert expired.state is State.CANCELLED and expired.failures == ()

    async def test_a_manual_retry_keeps_the_failures(self, store: Store) -> None:
        (task,) = await create(store, max_attempts=1)
        dead = await store.mark_failed(await claim_one(store, "w1"), Failure(type="First"))
        assert dead.state is State.DEAD
        retried = await store.retry(task.id)
        assert retried.state is State.QUEUED and retried.failures == dead.failures
        again = await store.mark_failed(await claim_one(store, "w2"), Failure(type="Second"))
        assert [(f.attempt, f.worker_id, f.failure.type) for f in again.failures] == [
            (1, "w1", "First"),
            (1, "w2", "Second"),  # the retry started the count again
        ]

    async def test_only_the_latest_failures_are_kept(self, store: Store) -> None:
        total = MAX_FAILURES_KEPT + 3
        (task,) = await create(store, max_attempts=total)
        for n in range(1, total + 1):
            await store.mark_failed(await claim_one(store), Failure(type="Poison", message=str(n)), retry_in=0)
        dead = await store.get(task.id)
        assert dead.state is State.DEAD and dead.attempts == total
        assert len(dead.failures) == MAX_FAILURES_KEPT
        assert [f.attempt for f in dead.failures] == list(range(total - MAX_FAILURES_KEPT + 1, total + 1))
        assert [f.failure.message for f in dead.failures] == [str(f.attempt) for f in dead.failures]

    async def test_the_archive_keeps_the_failures(self, store: Store, clock: FakeClock) -> None:
        (task,) = await create(store, max_attempts=2)
        await store.mark_failed(await claim_one(store, "w1"), Failure(type="A", traceback="tb"), retry_in=0)
        dead = await store.mark_failed(await claim_one(store, "w2"), Failure(type="B", retryable=False))
        assert dead.state is State.DEAD and len(dead.failures) == 2
        (plain,) = await create(store)
        await store.mark_done(await claim_one(store))
        assert await store.archive(before=clock.now()) == 2
        assert (await store.get_archived(task.id)).failures == dead.failures
        assert (await store.get_archived(plain.id)).failures == ()
        listed = {t.id: t for t in await store.list(archived=True)}
        assert listed[task.id].failures == dead.failures

    async def test_a_refused_write_leaves_the_failures_alone(self, store: Store) -> None:
        await store.create(NewTask("q", "k", max_attempts=3))
        claimed = await claim_one(store, "w1")
        await store.mark_failed(claimed, Failure(type="Once"), retry_in=0)
        before = await store.get(claimed.id)
        with pytest.raises(errors.NotClaimed):
            await store.mark_failed(claimed, Failure(type="Stale"))
        assert await store.get(claimed.id) == before
