"""Retry policies are pure: given the attempt and the random draw, the delay is fixed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskstore import errors
from taskstore.retry import BinaryExponential, Exponential, Polynomial, RetryPolicy, after_lost_lease, policy_from_spec


@pytest.mark.parametrize(("attempt", "expected"), [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (500, 300.0)])
def test_binary_exponential_doubles_up_to_five_minutes(attempt: int, expected: float) -> None:
    assert BinaryExponential().delay(attempt) == expected


def test_exponential_without_jitter_draw_is_the_full_delay() -> None:
    policy = Exponential(base=2.0, cap=300.0, jitter=0.25)
    assert [policy.delay(a, rand=lambda: 0.0) for a in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert policy.delay(20, rand=lambda: 0.0) == 300.0


def test_exponential_jitter_takes_off_at_most_a_quarter() -> None:
    policy = Exponential(base=2.0, cap=300.0, jitter=0.25)
    assert policy.delay(3, rand=lambda: 0.999999) == pytest.approx(6.0, rel=1e-5)
    assert policy.delay(3, rand=lambda: 0.5) == 7.0


@given(st.integers(min_value=1, max_value=10_000), st.floats(min_value=0.0, max_value=0.9999999))
def test_exponential_stays_within_its_band(attempt: int, draw: float) -> None:
    policy = Exponential(base=1.5, cap=120.0, jitter=0.25)
    full = min(1.5 * 2 ** min(attempt - 1, 100), 120.0)
    assert full * 0.75 - 1e-9 <= policy.delay(attempt, rand=lambda: draw) <= full


@pytest.mark.parametrize(
    ("attempt", "draw", "expected"),
    [(1, 0.0, 15.0), (1, 0.999, 44.0), (2, 0.0, 16.0), (3, 0.5, 15 + 16 + 15 * 3), (5, 0.0, 15 + 256)],
)
def test_polynomial_is_the_intended_power_formula(attempt: int, draw: float, expected: float) -> None:
    assert Polynomial().delay(attempt, rand=lambda: draw) == expected


def test_polynomial_is_not_the_xor_defect() -> None:
    # With Go's XOR, r^4 for r = 2 would be 6; the intended power is 16.
    assert Polynomial().delay(3, rand=lambda: 0.0) == 15 + 2**4


@pytest.mark.parametrize("policy", [Exponential(1.0, 60.0, 0.1), BinaryExponential(0.5, 30.0), Polynomial()])
def test_policies_round_trip_through_their_spec(policy: object) -> None:
    assert policy_from_spec(policy.to_spec()) == policy  # type: ignore[attr-defined]


def test_unknown_or_malformed_specs_are_invalid() -> None:
    with pytest.raises(errors.InvalidTask):
        policy_from_spec({"policy": "fibonacci"})
    with pytest.raises(errors.InvalidTask):
        policy_from_spec({"policy": "exponential", "speed": 3})


def test_bad_parameters_are_invalid() -> None:
    with pytest.raises(errors.InvalidTask):
        Exponential(jitter=1.5)
    with pytest.raises(errors.InvalidTask):
        BinaryExponential(base=-1)


# -- a lease lost to a crashed or frozen worker ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (Exponential(), 0.0),  # by default the next attempt starts at once
        (BinaryExponential(), 0.0),
        (Polynomial(), 0.0),
        (Exponential(base=4.0, jitter=0.0, lost_lease_delay=1.5), 1.5),  # capped at lost_lease_delay
        (BinaryExponential(base=0.5, lost_lease_delay=10.0), 0.5),  # never past the first delay
        (Polynomial(lost_lease_delay=60.0), 15.0),
    ],
)
def test_after_a_lost_lease_the_first_delay_capped_at_lost_lease_delay(policy: RetryPolicy, expected: float) -> None:
    assert after_lost_lease(policy, rand=lambda: 0.0) == expected


def test_a_policy_of_ones_own_without_lost_lease_delay_waits_its_first_delay() -> None:
    class Steady:
        def delay(self, attempt: int, rand: object = None) -> float:
            return 7.0 * attempt

        def to_spec(self) -> dict[str, object]:
            return {"policy": "steady"}

    assert after_lost_lease(Steady()) == 7.0


@pytest.mark.parametrize(
    "policy", [Exponential(lost_lease_delay=2.5), BinaryExponential(lost_lease_delay=1), Polynomial(lost_lease_delay=3)]
)
def test_lost_lease_delay_is_stored_with_the_policy(policy: RetryPolicy) -> None:
    spec = policy.to_spec()
    assert spec["lost_lease_delay"] > 0
    assert policy_from_spec(spec) == policy


def test_a_spec_without_lost_lease_delay_is_unchanged() -> None:
    assert "lost_lease_delay" not in Exponential().to_spec()
    assert policy_from_spec({"policy": "exponential", "base": 2.0, "cap": 300.0, "jitter": 0.25}) == Exponential()


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1", True, None])
def test_a_bad_lost_lease_delay_is_refused(bad: object) -> None:
    for make in (Exponential, BinaryExponential, Polynomial):
        with pytest.raises(errors.InvalidTask, match="lost_lease_delay"):
            make(lost_lease_delay=bad)  # type: ignore[arg-type]
