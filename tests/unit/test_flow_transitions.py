"""Transitions of SPEC §9: a unique task's hold on its key, and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskstore import NewTask, State, transitions
from taskstore.errors import InvalidTask
from taskstore.model import DEFAULT_UNIQUE_STATES, Failure

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def test_a_unique_task_holds_its_key_until_it_leaves_its_states() -> None:
    t = transitions.create(NewTask("q", "k", unique_key="u"), task_id="t", now=T0)
    assert t.unique_hold == DEFAULT_UNIQUE_STATES
    assert transitions.holds_key(t, T0)
    claimed = transitions.claim(t, worker_id="w", token="x", now=T0)
    assert claimed.claim is not None
    assert transitions.holds_key(claimed, T0)
    failed = transitions.mark_failed(claimed, claimed.claim, now=T0, failure=Failure("E"))
    assert failed.state is State.FAILED
    assert transitions.holds_key(failed, T0)
    again = transitions.claim(failed, worker_id="w", token="y", now=failed.run_at)
    assert again.claim is not None
    done = transitions.mark_done(again, again.claim, now=failed.run_at)
    assert done.unique_hold is None
    assert done.unique_key == "u"
    assert not transitions.holds_key(done, T0)


def test_a_released_key_is_never_taken_back() -> None:
    t = transitions.create(NewTask("q", "k", unique_key="u", unique_states={"queued"}), task_id="t", now=T0)
    claimed = transitions.claim(t, worker_id="w", token="x", now=T0)
    assert claimed.unique_hold is None
    assert claimed.claim is not None
    back = transitions.unclaim(claimed, claimed.claim, now=T0)
    assert back.state is State.QUEUED
    assert back.unique_hold is None
    dead = transitions.create(NewTask("q", "k", unique_key="u", max_attempts=1), task_id="d", now=T0)
    dead = transitions.claim(dead, worker_id="w", token="x", now=T0)
    assert dead.claim is not None
    dead = transitions.mark_failed(dead, dead.claim, now=T0, failure=Failure("E"))
    assert dead.state is State.DEAD
    assert transitions.retry(dead, now=T0).unique_hold is None


def test_unique_for_ends_the_hold_for_new_creates() -> None:
    t = transitions.create(NewTask("q", "k", unique_key="u", unique_for=10), task_id="t", now=T0)
    assert t.unique_until == T0 + timedelta(seconds=10)
    assert transitions.holds_key(t, T0 + timedelta(seconds=9))
    assert not transitions.holds_key(t, T0 + timedelta(seconds=10))
    released = transitions.release_key(t, T0 + timedelta(seconds=10))
    assert released.unique_hold is None
    assert released.version == t.version + 1
    assert released.state is State.QUEUED


def test_an_expired_task_is_not_claimable_and_expires_to_cancelled() -> None:
    t = transitions.create(NewTask("q", "k", expires_at=T0 + timedelta(seconds=5)), task_id="t", now=T0)
    assert transitions.is_claimable(t, T0 + timedelta(seconds=4))
    assert not transitions.is_claimable(t, T0 + timedelta(seconds=5))
    assert transitions.expire(t, now=T0 + timedelta(seconds=4)) is None
    ended = transitions.expire(t, now=T0 + timedelta(seconds=5))
    assert ended is not None
    assert ended.state is State.CANCELLED
    assert ended.result is not None
    assert ended.result.failure is not None
    assert ended.result.failure.type == "Expired"
    assert not ended.result.failure.retryable
    claimed = transitions.claim(t, worker_id="w", token="x", now=T0)
    assert transitions.expire(claimed, now=T0 + timedelta(seconds=6)) is None  # running: left to finish
    with pytest.raises(InvalidTask):
        transitions.claim(t, worker_id="w", token="x", now=T0 + timedelta(seconds=6))


@pytest.mark.parametrize(
    "options",
    [
        {"unique_key": ""},
        {"unique_key": "a\x00"},
        {"unique_for": 5},
        {"unique_states": {"queued"}},
        {"unique_key": "u", "unique_states": {"claimed"}},
        {"unique_key": "u", "unique_states": {"bogus"}},
        {"unique_key": "u", "unique_states": "queued"},
        {"unique_key": "u", "unique_for": float("nan")},
        {"unique_key": "u", "unique_for": 0},
        {"concurrency_key": ""},
        {"expires_at": datetime(2030, 1, 1)},  # naive
    ],
)
def test_bad_flow_control_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidTask):
        NewTask("q", "k", **options)  # type: ignore[arg-type]
