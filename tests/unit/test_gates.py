"""The pure decisions of per-key limits: the token bucket and which candidates a claim may take."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskstore import Limit
from taskstore.errors import InvalidTask
from taskstore.gates import KeyGate, new_gate, pick, reset_gate

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_new_bucket_is_full_and_refills_at_rate_per_period() -> None:
    gate = new_gate(Limit("k", rate=10, per=2.0), T0)
    assert gate.tokens_at(T0) == 10.0
    for _ in range(10):
        assert gate.admits(T0)
        gate.take(T0)
    assert not gate.admits(T0)
    assert gate.tokens_at(at(0.1)) == pytest.approx(0.5)  # 10 per 2 s: 5 a second
    assert not gate.admits(at(0.1))
    assert gate.admits(at(0.2))
    assert gate.next_token_at(at(0.1)) == at(0.2)
    assert gate.tokens_at(at(100)) == 10.0  # never above the rate
    assert gate.drawn == 10


def test_concurrency_counts_running_tasks_and_take_adds_one() -> None:
    gate = new_gate(Limit("k", concurrency=2), T0, running=1)
    assert gate.admits(T0)
    gate.take(T0)
    assert gate.running == 2
    assert not gate.admits(T0)
    assert gate.drawn == 0  # no bucket to write back without a rate
    assert gate.next_token_at(T0) is None


def test_zero_holds_every_task() -> None:
    assert not new_gate(Limit("k", concurrency=0), T0).admits(T0)
    rate_zero = new_gate(Limit("k", rate=0), T0)
    assert not rate_zero.admits(at(1000))
    assert rate_zero.next_token_at(T0) is None


def test_setting_a_limit_again_keeps_the_level_capped_at_the_new_rate() -> None:
    gate = new_gate(Limit("k", rate=10), T0)
    for _ in range(7):
        gate.take(T0)
    again = reset_gate(gate, Limit("k", rate=100), at(0.1))
    assert again.tokens == pytest.approx(4.0)  # 3 left + 0.1 s at 10/s, not refilled to 100
    lower = reset_gate(new_gate(Limit("k", rate=10), T0), Limit("k", rate=2), T0)
    assert lower.tokens == 2.0


def test_pick_passes_over_a_full_key_and_takes_the_ones_behind_it() -> None:
    gates = {"hot": new_gate(Limit("hot", concurrency=1), T0)}
    keys = ["hot"] * 100 + ["a", None, "b"]
    chosen, full = pick(keys, gates, T0, want=100)
    assert chosen == [0, 100, 101, 102]
    assert full == {"hot"}


def test_pick_stops_at_want_and_does_not_draw_for_what_it_does_not_take() -> None:
    gates = {"k": new_gate(Limit("k", rate=5), T0)}
    chosen, full = pick(["k"] * 10, gates, T0, want=3)
    assert chosen == [0, 1, 2]
    assert full == set()
    assert gates["k"].drawn == 3


def test_rate_over_time_averages_rate_per_period() -> None:
    """After the first burst, 5 s of a 10/s limit claimed as fast as a claimer polls gives 50 (±1)."""
    gate = new_gate(Limit("k", rate=10), T0)
    burst = 0
    while gate.admits(T0):
        gate.take(T0)
        burst += 1
    assert burst == 10
    claims, step = 0, 0.013
    t = step
    while t <= 5.0:
        while gate.admits(at(t)):
            gate.take(at(t))
            claims += 1
        t += step
    assert abs(claims - 50) <= 1


@settings(max_examples=200, deadline=None)
@given(
    concurrency=st.integers(0, 5),
    running=st.integers(0, 5),
    keys=st.lists(st.sampled_from(["a", "b", None]), max_size=40),
    want=st.integers(0, 50),
)
def test_pick_never_exceeds_concurrency_and_keeps_claim_order(
    concurrency: int, running: int, keys: list[str | None], want: int
) -> None:
    gates = {"a": new_gate(Limit("a", concurrency=concurrency), T0, running=running)}
    chosen, _ = pick(keys, gates, T0, want)
    assert chosen == sorted(chosen)
    assert len(chosen) <= want
    taken_a = sum(1 for i in chosen if keys[i] == "a")
    assert running + taken_a <= max(concurrency, running)
    # every unlimited candidate before the last chosen one was taken (nothing skipped but full keys)
    if chosen:
        assert all(i in chosen for i in range(chosen[-1]) if keys[i] != "a")


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"concurrency": -1},
        {"rate": -5},
        {"rate": 2**40},
        {"concurrency": 1.5},
        {"rate": 1, "per": float("nan")},
        {"rate": 1, "per": 0},
        {"rate": 1, "per": -1},
        {"rate": 1, "per": float("inf")},
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidTask):
        Limit("k", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["", "x" * 256, "a\x00b", 5])
def test_bad_limit_keys_are_refused(key: object) -> None:
    with pytest.raises(InvalidTask):
        Limit(key, concurrency=1)  # type: ignore[arg-type]


def test_a_gate_is_plain_state() -> None:
    gate = KeyGate(limit=Limit("k", rate=1), running=0, tokens=0.0, refilled_at=T0)
    assert gate.next_token_at(T0) == at(1)
