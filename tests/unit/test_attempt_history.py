"""The attempt history's pure part: which transitions add to ``Task.failures``, and its column form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from taskstore import AttemptFailure, Failure, NewTask, State, Task, transitions
from taskstore.backends._columns import failures_json, failures_of
from taskstore.backends.sqlite._rows import write_statement
from taskstore.transitions import MAX_FAILURES_KEPT

T0 = datetime(2030, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(seconds=5)
BOOM = Failure(type="ValueError", message="boom", traceback="Traceback ...", data={"k": [1]})


def fresh(**options: object) -> Task:
    return transitions.create(NewTask("q", "k", **options), task_id="t1", now=T0, seq=1)  # type: ignore[arg-type]


def claimed(task: Task | None = None, worker: str = "w1", lease: float | None = None) -> Task:
    return transitions.claim(task or fresh(max_attempts=3), worker_id=worker, token="tok", now=T0, lease=lease)


def failed(task: Task, failure: Failure = BOOM, now: datetime = LATER) -> Task:
    assert task.claim is not None
    return transitions.mark_failed(task, task.claim, now=now, failure=failure, retry_in=0)


def test_a_handler_failure_is_recorded_with_its_attempt_time_and_worker() -> None:
    task = failed(claimed(worker="w7"))
    assert task.state is State.FAILED
    assert task.failures == (AttemptFailure(attempt=1, ended_at=LATER, worker_id="w7", failure=BOOM),)


def test_the_last_failure_is_recorded_too_when_the_task_dies() -> None:
    task = failed(claimed(fresh(max_attempts=1)))
    assert task.state is State.DEAD
    assert [f.failure for f in task.failures] == [BOOM]
    assert task.result is not None
    assert task.result.failure == task.failures[-1].failure


def test_a_reaped_lease_is_recorded_as_timed_out() -> None:
    task = claimed(lease=2.0)
    reaped = transitions.reap(task, now=LATER)
    assert reaped is not None
    (entry,) = reaped.failures
    assert (entry.attempt, entry.ended_at, entry.worker_id, entry.failure.type) == (1, LATER, "w1", "timed_out")


def test_a_take_over_records_the_timed_out_attempt_and_claims_the_next() -> None:
    task = claimed(lease=2.0)
    taken = transitions.take_over(task, worker_id="w2", token="tok2", now=LATER, lease=10.0)
    assert taken is not None
    assert taken.state is State.CLAIMED
    assert taken.attempts == 2
    assert [(f.attempt, f.worker_id, f.failure.type) for f in taken.failures] == [(1, "w1", "timed_out")]


def test_cancels_of_running_attempts_are_recorded_others_not() -> None:
    running = transitions.cancel(claimed(), now=T0)
    assert running.cancel_requested
    assert running.claim is not None
    by_worker = transitions.mark_cancelled(running, running.claim, now=LATER)
    assert [(f.failure.type, f.failure.retryable) for f in by_worker.failures] == [("cancelled", False)]
    released = transitions.unclaim(running, running.claim, now=LATER)
    assert released.state is State.CANCELLED
    assert [f.failure.type for f in released.failures] == ["cancelled"]
    failing = failed(running)
    assert failing.state is State.CANCELLED
    assert [f.failure for f in failing.failures] == [BOOM]
    assert transitions.cancel(fresh(), now=T0).failures == ()


def test_success_release_expiry_retry_and_update_add_nothing() -> None:
    task = failed(claimed())
    again = claimed(task.replace(run_at=T0))
    assert again.claim is not None
    # Unchanged means the same tuple: the SQL backends then leave the column out of the write.
    assert transitions.mark_done(again, again.claim, now=LATER).failures is task.failures
    assert transitions.unclaim(again, again.claim, now=LATER).failures is task.failures
    expiring = task.replace(expires_at=T0)
    expired = transitions.expire(expiring, now=LATER)
    assert expired is not None
    assert expired.failures is task.failures
    dead = failed(claimed(fresh(max_attempts=1)))
    assert transitions.retry(dead, now=LATER).failures is dead.failures
    assert transitions.update(task, task.replace(state=State.QUEUED), now=LATER).failures is task.failures


def test_only_the_latest_entries_are_kept() -> None:
    old = tuple(
        AttemptFailure(attempt=n, ended_at=T0, worker_id="w", failure=Failure(type=str(n)))
        for n in range(1, MAX_FAILURES_KEPT + 1)
    )
    task = claimed(fresh(max_attempts=100)).replace(failures=old, attempts=MAX_FAILURES_KEPT + 1)
    after = failed(task)
    assert len(after.failures) == MAX_FAILURES_KEPT
    assert after.failures[:-1] == old[1:]
    assert after.failures[-1].attempt == MAX_FAILURES_KEPT + 1


def test_the_column_form_round_trips_and_is_null_when_empty() -> None:
    task = failed(claimed())
    task = failed(claimed(task.replace(run_at=T0), worker="w2"), Failure(type="timed_out"), now=LATER + timedelta(1))
    text = failures_json(task)
    assert text is not None
    assert failures_of(json.loads(text)) == task.failures
    assert failures_json(fresh()) is None


def test_sqlite_writes_the_column_only_when_the_failures_changed() -> None:
    task = claimed()
    assert write_statement(task, failed(task))[0] == "update_task_failures"
    again = claimed(failed(task).replace(run_at=T0))
    assert again.claim is not None
    assert write_statement(again, transitions.mark_done(again, again.claim, now=LATER))[0] == "write_done"
    assert write_statement(again, transitions.unclaim(again, again.claim, now=LATER))[0] == "update_task"
