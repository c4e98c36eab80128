"""The pure state machine: every rule of SPEC §2, without a backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from taskstore import Failure, NewTask, State, Task, errors, transitions
from taskstore.retry import BinaryExponential

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def fresh(**options: object) -> Task:
    return transitions.create(NewTask("q", "k", **options), task_id="t1", now=T0)  # type: ignore[arg-type]


def claimed(**options: object) -> Task:
    return transitions.claim(fresh(**options), worker_id="w", token="tok", now=T0)


def test_create_is_queued_with_defaults() -> None:
    task = fresh()
    assert (task.state, task.attempts, task.version, task.run_at) == (State.QUEUED, 0, 1, T0)


def test_claim_requires_a_ready_task() -> None:
    with pytest.raises(errors.InvalidTask):
        transitions.claim(fresh(run_at=T0 + timedelta(seconds=1)), worker_id="w", token="x", now=T0)
    with pytest.raises(errors.InvalidTask):
        transitions.claim(claimed(), worker_id="w", token="x", now=T0)


def test_every_transition_bumps_version_and_updated_at() -> None:
    task = claimed()
    later = T0 + timedelta(seconds=3)
    for changed in (
        transitions.report_in(task, task.claim, now=later),  # type: ignore[arg-type]
        transitions.mark_done(task, task.claim, now=later),  # type: ignore[arg-type]
        transitions.unclaim(task, task.claim, now=later),  # type: ignore[arg-type]
        transitions.mark_failed(task, task.claim, now=later, failure=Failure("x")),  # type: ignore[arg-type]
    ):
        assert changed.version == task.version + 1
        assert changed.updated_at == later


def test_check_lease_distinguishes_not_claimed_from_not_owned() -> None:
    task = claimed()
    assert task.claim is not None
    with pytest.raises(errors.NotOwned):
        transitions.check_lease(task, replace(task.claim, token="other"))
    with pytest.raises(errors.NotOwned):
        transitions.check_lease(task, replace(task.claim, worker_id="w2"))
    done = transitions.mark_done(task, task.claim, now=T0)
    with pytest.raises(errors.NotClaimed):
        transitions.check_lease(done, task.claim)


def test_failure_backoff_uses_the_tasks_policy() -> None:
    task = claimed(retry=BinaryExponential(base=3.0), max_attempts=5)
    assert task.claim is not None
    failed = transitions.mark_failed(task, task.claim, now=T0, failure=Failure("x"))
    assert failed.state is State.FAILED
    assert failed.run_at == T0 + timedelta(seconds=3)


def test_reap_only_timed_out_claims() -> None:
    task = claimed(processing_timeout=10)
    assert transitions.reap(task, now=T0 + timedelta(seconds=9)) is None
    reaped = transitions.reap(task, now=T0 + timedelta(seconds=10))
    assert reaped is not None
    assert reaped.state is State.FAILED
    assert transitions.reap(fresh(), now=T0 + timedelta(days=1)) is None


def test_take_over_of_a_live_claim_is_none() -> None:
    task = claimed(processing_timeout=10)
    assert transitions.take_over(task, worker_id="w2", token="t2", now=T0 + timedelta(seconds=5), lease=None) is None


def test_update_checks_version_and_claims() -> None:
    task = fresh()
    with pytest.raises(errors.StaleVersion):
        transitions.update(task, task.replace(version=7), now=T0)
    with pytest.raises(errors.InvalidTask):
        transitions.update(task, task.replace(state=State.CLAIMED), now=T0)
    with pytest.raises(errors.InvalidTask):
        transitions.update(task, task.replace(attempts=-1), now=T0)


def test_cancel_of_a_claimed_task_twice_writes_once() -> None:
    task = claimed()
    requested = transitions.cancel(task, now=T0)
    assert requested.cancel_requested
    assert requested.version == task.version + 1
    assert transitions.cancel(requested, now=T0) is requested


def test_task_replace_rejects_unknown_fields() -> None:
    with pytest.raises(TypeError):
        fresh().replace(colour="blue")


@pytest.mark.parametrize(
    ("states", "decision"),
    [
        ([State.DONE, State.DONE, State.DONE], (True, True)),
        ([State.DONE, State.CLAIMED, State.DONE], (False, False)),
        ([State.DONE, State.FAILED, State.DONE], (False, False)),  # waiting for a retry: not over yet
        ([State.DONE, State.DEAD, State.QUEUED], (False, False)),  # failed, but a member still runs
        ([State.DONE, State.CANCELLED, State.DONE], (True, False)),
        ([State.DONE, State.DONE], (True, False)),  # a member missing: never fires
    ],
)
def test_a_group_is_settled_by_its_members_states(states: list[State], decision: tuple[bool, bool]) -> None:
    assert transitions.settle_group(3, states) == decision
