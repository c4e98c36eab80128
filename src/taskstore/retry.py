"""Retry policies: pure functions from the attempt number to a delay in seconds.

``attempt`` is the task's ``attempts`` at the failure: 1 for the first failure. A policy is a
frozen value stored with its task (``to_spec``/``from_spec``), so a task keeps the policy it was
created with even when the code that enqueued it changes. Randomness is injected (``rand`` returns a
float in [0, 1)) so every policy is a pure function in tests.

A lease lost to a crashed or frozen worker is not the task's fault: the attempt is spent, but the next
one waits no longer than the policy's ``lost_lease_delay`` (default 0: at once), and never longer than its
first delay (``after_lost_lease``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from . import limits
from .errors import InvalidTask

Rand = Callable[[], float]

# With base and cap at most limits.MAX_DURATION, base·2^62 is far past any cap yet far from float overflow.
_MAX_EXPONENT = 62


def _doubling(base: float, attempt: int, cap: float) -> float:
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    return min(math.ldexp(base, exponent), cap)


def _bounded(seconds: float) -> float:
    """A delay that ``now + delay`` can always represent, whatever the policy computed."""
    return min(max(seconds, 0.0), limits.MAX_DURATION) if math.isfinite(seconds) else limits.MAX_DURATION


def _seconds(value: object, what: str) -> float:
    return limits.duration(value, f"{what} (seconds)")


def _fraction(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidTask(f"{what} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _lost_lease(policy: Exponential | BinaryExponential | Polynomial) -> None:
    what = f"{type(policy).__name__} lost_lease_delay"
    object.__setattr__(policy, "lost_lease_delay", _seconds(policy.lost_lease_delay, what))


def _with_lost_lease(spec: dict[str, Any], delay: float) -> dict[str, Any]:
    # Left out at its default, so the specs stored before it existed (and the default policy's) stay as they were.
    if delay:
        spec["lost_lease_delay"] = delay
    return spec


@runtime_checkable
class RetryPolicy(Protocol):
    def delay(self, attempt: int, rand: Rand | None = None) -> float:
        """Seconds to wait before the next attempt, after failure number ``attempt``."""
        ...

    def to_spec(self) -> dict[str, Any]:
        """A JSON object that ``policy_from_spec`` turns back into an equal policy."""
        ...


@dataclass(frozen=True, slots=True)
class Exponential:
    """``min(base·2^(attempt−1), cap)`` less up to ``jitter`` of it (as in stem)."""

    base: float = 2.0
    cap: float = 300.0
    jitter: float = 0.25
    lost_lease_delay: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", _seconds(self.base, "Exponential base"))
        object.__setattr__(self, "cap", _seconds(self.cap, "Exponential cap"))
        object.__setattr__(self, "jitter", _fraction(self.jitter, "Exponential jitter"))
        _lost_lease(self)

    def delay(self, attempt: int, rand: Rand | None = None) -> float:
        full = _doubling(self.base, attempt, self.cap)
        r = (rand or random.random)()
        return _bounded(full - full * self.jitter * r)

    def to_spec(self) -> dict[str, Any]:
        spec = {"policy": "exponential", "base": self.base, "cap": self.cap, "jitter": self.jitter}
        return _with_lost_lease(spec, self.lost_lease_delay)


@dataclass(frozen=True, slots=True)
class BinaryExponential:
    """``min(base·2^(attempt−1), cap)``: 1 s, 2 s, 4 s … capped at 5 minutes (as in the outbox store)."""

    base: float = 1.0
    cap: float = 300.0
    lost_lease_delay: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", _seconds(self.base, "BinaryExponential base"))
        object.__setattr__(self, "cap", _seconds(self.cap, "BinaryExponential cap"))
        _lost_lease(self)

    def delay(self, attempt: int, rand: Rand | None = None) -> float:
        return _bounded(_doubling(self.base, attempt, self.cap))

    def to_spec(self) -> dict[str, Any]:
        spec = {"policy": "binary_exponential", "base": self.base, "cap": self.cap}
        return _with_lost_lease(spec, self.lost_lease_delay)


@dataclass(frozen=True, slots=True)
class Polynomial:
    """``15 + r^4 + rand(0..29)·(r+1)`` seconds with ``r = attempt − 1`` (tasques' intended formula).

    tasques wrote ``r^4`` in Go, where ``^`` is XOR; this is the power it meant.
    """

    lost_lease_delay: float = 0.0

    def __post_init__(self) -> None:
        _lost_lease(self)

    def delay(self, attempt: int, rand: Rand | None = None) -> float:
        # Bounding r keeps r^4 a float for any attempt number; bounding the result keeps now + delay a datetime.
        r = min(max(attempt, 1) - 1, limits.INT32_MAX)
        spread = min(int((rand or random.random)() * 30), 29)
        return _bounded(float(15 + r**4 + spread * (r + 1)))

    def to_spec(self) -> dict[str, Any]:
        return _with_lost_lease({"policy": "polynomial"}, self.lost_lease_delay)


DEFAULT_POLICY: RetryPolicy = Exponential()


def after_lost_lease(policy: RetryPolicy, rand: Rand | None = None) -> float:
    """Seconds before the next attempt of a task whose lease timed out (its worker crashed or froze).

    The policy's first delay, capped at its ``lost_lease_delay``: 0 unless the policy asks for more, so a
    claim may take the task over as soon as the lease expires. A policy without the setting (one of a
    user's own) waits its first delay.
    """
    cap = getattr(policy, "lost_lease_delay", None)
    first = policy.delay(1, rand)
    return first if cap is None else min(first, cap)


def _within_bounds(key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    high = 1.0 if key == "jitter" else limits.MAX_DURATION
    return min(max(value, 0.0), high) if not math.isnan(value) else high


def policy_from_spec(spec: Mapping[str, Any]) -> RetryPolicy:
    """Rebuild a policy stored with a task; unknown policies are an ``InvalidTask`` error.

    Numbers are brought within today's bounds rather than refused: a task stored before the bounds
    existed (a cap of ``inf``) must still be readable, or every claim that meets it would fail.
    """
    params = {k: _within_bounds(k, v) for k, v in spec.items() if k != "policy"}
    name = spec.get("policy")
    try:
        if name == "exponential":
            return Exponential(**params)
        if name == "binary_exponential":
            return BinaryExponential(**params)
        if name == "polynomial":
            return Polynomial(**params)
    except TypeError as exc:
        raise InvalidTask(f"bad retry policy parameters {dict(spec)!r}: {exc}") from exc
    raise InvalidTask(f"unknown retry policy {name!r}")


__all__ = [
    "DEFAULT_POLICY",
    "BinaryExponential",
    "Exponential",
    "Polynomial",
    "RetryPolicy",
    "after_lost_lease",
    "policy_from_spec",
]
