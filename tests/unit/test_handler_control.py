"""Handler control without a worker: the signals, their mapping to a failure, and the pure retry decision."""

from __future__ import annotations

import copy
import math
import pickle
from datetime import UTC, datetime, timedelta

import pytest

import taskstore
from taskstore import Failure, NewTask, State, Task, errors, transitions
from taskstore.control import attempt_outcome, check_retry_for
from taskstore.retry import BinaryExponential

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def claimed(**options: object) -> Task:
    task = transitions.create(NewTask("q", "k", **options), task_id="t1", now=T0)  # type: ignore[arg-type]
    return transitions.claim(task, worker_id="w", token="tok", now=T0)


def raised(exc: BaseException) -> BaseException:
    """``exc`` as the worker sees it: raised, with its traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


# -- the pure decision -----------------------------------------------------------------------------


def test_an_explicit_retry_delay_replaces_the_policy() -> None:
    task = claimed(max_attempts=3, retry=BinaryExponential(base=7))
    assert task.claim is not None
    failed = transitions.mark_failed(task, task.claim, now=T0, failure=Failure("Retry"), retry_in=90.0)
    assert (failed.state, failed.run_at) == (State.FAILED, T0 + timedelta(seconds=90))
    by_policy = transitions.mark_failed(task, task.claim, now=T0, failure=Failure("Retry"))
    assert by_policy.run_at == T0 + timedelta(seconds=7)


def test_an_explicit_retry_of_zero_runs_again_now() -> None:
    task = claimed(max_attempts=3)
    assert task.claim is not None
    failed = transitions.mark_failed(task, task.claim, now=T0, failure=Failure("Retry"), retry_in=0.0)
    assert (failed.state, failed.run_at) == (State.FAILED, T0)


def test_an_explicit_retry_on_the_last_attempt_is_dead() -> None:
    task = claimed(max_attempts=1)
    assert task.claim is not None
    dead = transitions.mark_failed(task, task.claim, now=T0, failure=Failure("Retry"), retry_in=5.0)
    assert dead.state is State.DEAD
    assert dead.finished_at == T0


def test_a_not_retryable_failure_ignores_the_delay() -> None:
    task = claimed(max_attempts=5)
    assert task.claim is not None
    failure = Failure("Reject", retryable=False)
    assert transitions.mark_failed(task, task.claim, now=T0, failure=failure, retry_in=5.0).state is State.DEAD


# -- mapping what a handler raised --------------------------------------------------------------


def test_retry_maps_to_a_retryable_failure_with_its_delay() -> None:
    failure, delay = attempt_outcome(raised(taskstore.Retry(delay=timedelta(minutes=2), reason="busy")))
    assert (failure.type, failure.retryable, delay) == ("Retry", True, 120.0)
    assert failure.message == "the handler asked to retry in 120s: busy"
    assert failure.traceback is None
    policy_failure, none = attempt_outcome(raised(taskstore.Retry()))
    assert none is None
    assert "retry policy" in policy_failure.message


def test_retry_raised_from_an_error_keeps_that_errors_traceback() -> None:
    try:
        try:
            raise ConnectionError("refused")
        except ConnectionError as exc:
            raise taskstore.Retry(delay=1) from exc
    except taskstore.Retry as signal:
        failure, _ = attempt_outcome(signal)
    assert failure.traceback is not None
    assert "ConnectionError: refused" in failure.traceback


def test_reject_maps_to_a_failure_that_is_not_retried() -> None:
    failure, delay = attempt_outcome(raised(taskstore.Reject("duplicate order")), (ValueError,))
    assert (failure.type, failure.retryable, delay) == ("Reject", False, None)
    assert failure.message == "rejected by the handler: duplicate order"


def test_retry_for_keeps_listed_exceptions_retryable_and_no_others() -> None:
    listed, _ = attempt_outcome(raised(ConnectionResetError("reset")), (ConnectionError,))
    other, _ = attempt_outcome(raised(ValueError("bad")), (ConnectionError,))
    anything, _ = attempt_outcome(raised(ValueError("bad")), None)
    assert (listed.type, listed.retryable) == ("ConnectionResetError", True)
    assert (other.type, other.message, other.retryable) == ("ValueError", "bad", False)
    assert anything.retryable
    assert "ValueError: bad" in (other.traceback or "")


def test_a_base_exception_is_named_in_the_message() -> None:
    failure, _ = attempt_outcome(raised(SystemExit(3)), (SystemExit,))
    assert (failure.type, failure.message, failure.retryable) == (
        "SystemExit",
        "the handler raised SystemExit: 3",
        True,
    )


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [-1, -0.001, math.nan, math.inf, -math.inf, 1e12, True, "5", timedelta(days=-1)])
def test_bad_retry_delays_are_invalid(delay: object) -> None:
    with pytest.raises(errors.InvalidTask, match="Retry delay"):
        taskstore.Retry(delay=delay)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_store_mark_failed_checks_retry_in() -> None:
    async with taskstore.open("memory://") as store:
        await store.create(NewTask("q", "k"))
        (task,) = await store.claim("w", ["q"])
        with pytest.raises(errors.InvalidTask, match="retry_in"):
            await store.mark_failed(task, Failure("Retry"), retry_in=math.nan)
        assert (await store.get(task.id)).state is State.CLAIMED  # nothing written
        failed = await store.mark_failed(task, Failure("Retry"), retry_in=timedelta(seconds=30))
        assert failed.run_at == failed.updated_at + timedelta(seconds=30)


def test_retry_for_accepts_one_class_or_a_tuple_and_nothing_else() -> None:
    assert check_retry_for(None) is None
    assert check_retry_for(KeyError) == (KeyError,)
    assert check_retry_for([KeyError, OSError]) == (KeyError, OSError)
    for bad in ("KeyError", 3, (KeyError, "x"), (int,)):
        with pytest.raises(errors.InvalidTask, match="retry_for"):
            check_retry_for(bad)
    with pytest.raises(errors.InvalidTask, match="retry_for"):
        taskstore.App("memory://").task(retry_for=(ValueError, str))  # type: ignore[arg-type]


def test_the_signals_are_outside_the_error_tree_and_survive_copy_and_pickle() -> None:
    for signal in (taskstore.Retry(delay=5, reason="busy"), taskstore.Reject("gone")):
        assert isinstance(signal, taskstore.HandlerSignal)
        assert isinstance(signal, Exception)
        assert not isinstance(signal, errors.TaskstoreError)
        for again in (copy.copy(signal), pickle.loads(pickle.dumps(signal))):
            assert type(again) is type(signal)
            assert str(again) == str(signal)
