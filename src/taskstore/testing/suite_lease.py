"""Writes by the lease holder, and fencing of everyone else (SPEC §2, §8)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from taskstore import Failure, FakeClock, State, Store, Task, errors
from taskstore.retry import BinaryExponential, Polynomial

from ._base import SuiteBase, claim_one, create, secs


class LeaseTests(SuiteBase):
    # -- report_in ------------------------------------------------------------------------------

    async def test_report_in_renews_the_lease_absolutely(self, store: Store, clock: FakeClock) -> None:
        await create(store, processing_timeout=20)
        task = await claim_one(store)
        assert task.claim is not None
        clock.advance(15)
        renewed = await store.report_in(task.claim)
        assert renewed.claim is not None
        assert renewed.claim.times_out_at == clock.now() + timedelta(seconds=20)  # not 20 + 5 left over

    async def test_report_in_extend_by(self, store: Store, clock: FakeClock) -> None:
        await create(store)
        task = await claim_one(store)
        assert task.claim is not None
        renewed = await store.report_in(task.claim, extend_by=timedelta(minutes=10))
        assert renewed.claim is not None and renewed.claim.times_out_at == clock.now() + timedelta(minutes=10)

    async def test_report_in_keeps_the_last_report(self, store: Store, clock: FakeClock) -> None:
        await create(store)
        task = await claim_one(store)
        assert task.claim is not None
        await store.report_in(task.claim, data={"pct": 10})
        clock.advance(1)
        renewed = await store.report_in(task.claim, data={"pct": 50})
        assert renewed.claim is not None and renewed.claim.last_report is not None
        assert renewed.claim.last_report.data == {"pct": 50} and renewed.claim.last_report.at == clock.now()
        assert renewed.claim.token == task.claim.token and renewed.claim.claimed_at == task.claim.claimed_at

    async def test_report_from_the_past_is_refused(self, store: Store, clock: FakeClock) -> None:
        await create(store)
        task = await claim_one(store)
        assert task.claim is not None
        clock.advance(10)
        await store.report_in(task.claim)
        before = await store.get(task.id)
        clock.advance(-5)
        with pytest.raises(errors.ReportFromThePast):
            await store.report_in(task.claim)
        assert await store.get(task.id) == before

    async def test_report_at_the_same_time_is_accepted(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        assert task.claim is not None
        await store.report_in(task.claim, data=1)
        again = await store.report_in(task.claim, data=2)
        assert again.claim is not None and again.claim.last_report is not None
        assert again.claim.last_report.data == 2

    async def test_report_in_by_another_worker_is_not_owned(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store, "w1")
        assert task.claim is not None
        with pytest.raises(errors.NotOwned):
            await store.report_in(replace(task.claim, worker_id="w2"))
        with pytest.raises(errors.NotOwned):
            await store.report_in(replace(task.claim, token="forged"))

    async def test_a_write_after_times_out_at_is_accepted_until_reaped(self, store: Store, clock: FakeClock) -> None:
        await create(store, processing_timeout=5)
        task = await claim_one(store)
        assert task.claim is not None
        clock.advance(60)
        assert (await store.report_in(task.claim)).state is State.CLAIMED
        clock.advance(60)
        assert (await store.mark_done(task.claim, result="late but fine")).state is State.DONE

    async def test_report_in_sees_cancel_requested(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        assert task.claim is not None
        cancelled = await store.cancel(task.id)
        assert cancelled.state is State.CLAIMED and cancelled.cancel_requested
        reported = await store.report_in(task.claim)
        assert reported.cancel_requested
        final = await store.mark_cancelled(task.claim)
        assert final.state is State.CANCELLED and final.finished_at is not None and final.claim is None

    async def test_cancel_requested_among_names_only_claimed_tasks_with_a_request(self, store: Store) -> None:
        running, asked, finished, waiting = await create(store, 4)  # claimed in this order
        claimed = {t.id: t for t in await store.claim("w1", [], limit=3)}
        assert set(claimed) == {running.id, asked.id, finished.id}
        await store.cancel(asked.id)
        await store.cancel(finished.id)
        await store.mark_cancelled(claimed[finished.id])
        await store.cancel(waiting.id)  # never claimed: cancelled outright, no request to deliver
        everyone = [waiting.id, running.id, asked.id, finished.id, "no-such-task"]
        assert await store.cancel_requested_among(everyone) == {asked.id}
        assert await store.cancel_requested_among([]) == set()

    # -- mark_done ------------------------------------------------------------------------------

    async def test_mark_done_stores_the_result(self, store: Store, clock: FakeClock) -> None:
        await create(store)
        task = await claim_one(store)
        assert task.claim is not None
        clock.advance(2)
        done = await store.mark_done(task.claim, result={"ok": True, "n": [1, 2]})
        assert done.state is State.DONE and done.claim is None and done.finished_at == clock.now()
        assert done.result is not None and done.result.value == {"ok": True, "n": [1, 2]}
        assert done.result.failure is None and done.result.at == clock.now()
        assert await store.get(task.id) == done

    async def test_mark_done_accepts_the_task_object(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        assert (await store.mark_done(task)).state is State.DONE

    async def test_second_completion_is_not_claimed(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        assert task.claim is not None
        done = await store.mark_done(task.claim, result=1)
        with pytest.raises(errors.NotClaimed):
            await store.mark_done(task.claim, result=2)
        with pytest.raises(errors.NotClaimed):
            await store.mark_failed(task.claim, Failure("Boom"))
        assert await store.get(task.id) == done

    async def test_old_token_after_a_new_claim_is_not_owned(self, store: Store, clock: FakeClock) -> None:
        await create(store, processing_timeout=5)
        first = await claim_one(store, "w1")
        assert first.claim is not None
        clock.advance(6)
        assert await store.reap() == 1
        clock.advance(3600)
        second = await claim_one(store, "w1")  # same worker id, new lease
        assert second.claim is not None
        with pytest.raises(errors.NotOwned):
            await store.mark_done(first.claim, result="stale")
        done = await store.mark_done(second.claim, result="fresh")
        assert done.result is not None and done.result.value == "fresh"

    async def test_unencodable_result_is_invalid_and_changes_nothing(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        with pytest.raises(errors.InvalidTask):
            await store.mark_done(task, result=object())
        assert (await store.get(task.id)).state is State.CLAIMED

    # -- mark_failed ----------------------------------------------------------------------------

    async def test_mark_failed_backs_off_while_attempts_remain(self, store: Store, clock: FakeClock) -> None:
        await create(store, max_attempts=3, retry=BinaryExponential(base=1.0, cap=300))
        task = await claim_one(store)
        failed = await store.mark_failed(task, Failure("Timeout", "slow upstream"))
        assert failed.state is State.FAILED and failed.claim is None and failed.finished_at is None
        assert failed.run_at == clock.now() + timedelta(seconds=1)
        assert failed.result is not None and failed.result.failure is not None
        assert failed.result.failure.type == "Timeout" and failed.result.failure.message == "slow upstream"
        assert await store.claim("w", limit=1) == []
        clock.advance(1)
        again = await claim_one(store)
        failed = await store.mark_failed(again, Failure("Timeout"))
        assert failed.run_at == clock.now() + timedelta(seconds=2)

    async def test_failure_on_the_last_attempt_is_dead(self, store: Store, clock: FakeClock) -> None:
        await create(store, max_attempts=2, retry=BinaryExponential())
        for expected in (State.FAILED, State.DEAD):
            task = await claim_one(store)
            result = await store.mark_failed(task, Failure("Boom"))
            assert result.state is expected
            clock.advance(600)
        assert result.attempts == 2 and result.finished_at is not None
        assert await store.claim("w", limit=1) == []

    async def test_non_retryable_failure_is_dead_at_once(self, store: Store) -> None:
        await create(store, max_attempts=10)
        task = await claim_one(store)
        dead = await store.mark_failed(task, Failure("BadInput", "no such user", retryable=False))
        assert dead.state is State.DEAD and dead.attempts == 1

    async def test_failure_fields_round_trip(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        failure = Failure("ValueError", "bad", traceback="Traceback ...", retryable=True, data={"line": 3})
        failed = await store.mark_failed(task, failure)
        assert failed.result is not None and failed.result.failure == failure
        assert (await store.get(task.id)).result == failed.result

    @pytest.mark.parametrize(("odd", "escaped"), [("a\x00b", "a\\x00b"), ("a\ud800b", "a\\ud800b")])
    async def test_failure_text_no_backend_can_store_is_escaped(self, store: Store, odd: str, escaped: str) -> None:
        # NUL bytes and lone surrogates come from real handlers (C libraries, bytes decoded with
        # surrogateescape); PostgreSQL stores neither and UTF-8 cannot encode a surrogate.
        await create(store)
        task = await claim_one(store)
        failed = await store.mark_failed(task, Failure(odd, odd, traceback=odd, data={odd: [odd]}))
        assert failed.state is State.FAILED
        stored = (await store.get(task.id)).result
        assert stored is not None and stored.failure is not None
        assert stored == failed.result
        assert (stored.failure.type, stored.failure.message, stored.failure.traceback) == (escaped, escaped, escaped)
        assert stored.failure.data == {escaped: [escaped]}

    async def test_mark_failed_accepts_an_exception(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        failed = await store.mark_failed(task, KeyError("user-9"))
        assert failed.result is not None and failed.result.failure is not None
        assert failed.result.failure.type == "KeyError" and "user-9" in failed.result.failure.message

    async def test_attempts_count_executions_and_never_exceed_max(self, store: Store, clock: FakeClock) -> None:
        await create(store, max_attempts=4)
        seen = []
        while claimed := await store.claim("w", limit=1):
            seen.append(claimed[0].attempts)
            await store.mark_failed(claimed[0], Failure("Flaky"))
            clock.advance(3600)
        assert seen == [1, 2, 3, 4]
        assert (await store.list(state=State.DEAD)).items[0].attempts == 4

    async def test_a_task_keeps_its_retry_policy(self, store: Store, clock: FakeClock) -> None:
        await create(store, retry=Polynomial())
        for attempt in (1, 2, 3):
            task = await claim_one(store)
            failed = await store.mark_failed(task, Failure("Flaky"))
            r = attempt - 1
            delay = secs(failed.run_at, clock.now())
            assert 15 + r**4 <= delay <= 15 + r**4 + 29 * (r + 1)
            clock.advance(delay)

    # -- unclaim --------------------------------------------------------------------------------

    async def test_unclaim_requeues_without_spending_an_attempt(self, store: Store, clock: FakeClock) -> None:
        (created,) = await create(store)
        task = await claim_one(store)
        released = await store.unclaim(task)
        assert released.state is State.QUEUED and released.attempts == 0 and released.claim is None
        assert released.run_at == created.run_at
        assert (await claim_one(store)).attempts == 1

    async def test_unclaim_never_makes_a_task_dead(self, store: Store) -> None:
        await create(store, max_attempts=1)
        for _ in range(5):
            await store.unclaim(await claim_one(store))
        assert (await claim_one(store)).attempts == 1

    async def test_unclaim_by_a_non_owner_is_refused(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        assert task.claim is not None
        with pytest.raises(errors.NotOwned):
            await store.unclaim(replace(task.claim, token="other"))
        assert (await store.get(task.id)).state is State.CLAIMED

    async def test_mark_cancelled_needs_the_lease(self, store: Store) -> None:
        await create(store)
        task = await claim_one(store)
        assert task.claim is not None
        with pytest.raises(errors.NotOwned):
            await store.mark_cancelled(replace(task.claim, worker_id="intruder"))
        await store.mark_done(task)
        with pytest.raises(errors.NotClaimed):
            await store.mark_cancelled(task.claim)

    # -- batches --------------------------------------------------------------------------------

    async def test_mark_done_many_fences_each_task_on_its_own(self, store: Store) -> None:
        await create(store, 4)
        a, b, c, d = await store.claim("w", limit=4)
        assert c.claim is not None
        await store.mark_done(b)  # b is finished already: its item must be refused alone
        forged = replace(c.claim, token="forged")
        outcomes = await store.mark_done_many([(a, "ra"), b, (forged, "rc"), (d, "rd")])
        assert isinstance(outcomes[0], Task) and outcomes[0].result is not None and outcomes[0].result.value == "ra"
        assert isinstance(outcomes[1], errors.NotClaimed)
        assert isinstance(outcomes[2], errors.NotOwned)
        assert isinstance(outcomes[3], Task) and outcomes[3].state is State.DONE
        assert (await store.get(c.id)).state is State.CLAIMED
        assert await store.count(state=State.DONE) == 3

    async def test_mark_done_many_of_nothing_is_nothing(self, store: Store) -> None:
        assert await store.mark_done_many([]) == []

    async def test_report_in_many_renews_every_lease(self, store: Store, clock: FakeClock) -> None:
        await create(store, 3, processing_timeout=10)
        claimed = await store.claim("w", limit=3)
        clock.advance(8)
        outcomes = await store.report_in_many([t.claim for t in claimed if t.claim] + [claimed[0]])
        assert len(outcomes) == 4
        for outcome in outcomes:
            assert isinstance(outcome, Task) and outcome.claim is not None
            assert outcome.claim.times_out_at == clock.now() + timedelta(seconds=10)

    async def test_report_in_many_refuses_stale_leases_alone(self, store: Store, clock: FakeClock) -> None:
        await create(store, 2, processing_timeout=5)
        first, second = await store.claim("w", limit=2)
        clock.advance(6)
        await store.report_in(second)
        clock.advance(1)
        assert await store.reap() == 1  # first timed out; second reported in
        outcomes = await store.report_in_many([first, second])
        assert isinstance(outcomes[0], errors.NotClaimed) and isinstance(outcomes[1], Task)

    async def test_acknowledge_many_returns_only_refusals(self, store: Store) -> None:
        await create(store, 4)
        a, b, c, d = await store.claim("w", limit=4)
        assert c.claim is not None
        await store.mark_done(b)
        acks = await store.acknowledge_many([(a, {"r": 1}), b, (replace(c.claim, token="forged"), None), d])
        assert acks[0] is None
        assert isinstance(acks[1], errors.NotClaimed)
        assert isinstance(acks[2], errors.NotOwned)
        assert acks[3] is None
        done = await store.get(a.id)
        assert done.state is State.DONE
        assert done.result is not None
        assert done.result.value == {"r": 1}
        assert (await store.get(c.id)).state is State.CLAIMED

    async def test_acknowledge_many_with_a_repeated_task(self, store: Store) -> None:
        await create(store, 1)
        task = await claim_one(store)
        acks = await store.acknowledge_many([task, task])
        assert acks[0] is None
        assert isinstance(acks[1], errors.NotClaimed)
        assert await store.acknowledge_many([]) == []
