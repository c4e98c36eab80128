"""Retry policies: pure functions from the attempt number to a delay in seconds.

``attempt`` is the task's ``attempts`` at the failure: 1 for the first failure. A policy is a
frozen value stored with its task (``to_spec``/``from_spec``), so a task keeps the policy it was
created with even when the code that enqueued it changes. Randomness is injected (``rand`` returns a
float in [0, 1)) so every policy is a pure function in tests.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidTask

Rand = Callable[[], float]

# Past this exponent every delay is capped anyway; it keeps 2**n finite for absurd attempt counts.
_MAX_EXPONENT = 62


def _doubling(base: float, attempt: int, cap: float) -> float:
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    return min(math.ldexp(base, exponent), cap)


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

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or not 0 <= self.jitter <= 1:
            raise InvalidTask("Exponential needs base >= 0, cap >= 0 and 0 <= jitter <= 1")

    def delay(self, attempt: int, rand: Rand | None = None) -> float:
        full = _doubling(self.base, attempt, self.cap)
        r = (rand or random.random)()
        return full - full * self.jitter * r

    def to_spec(self) -> dict[str, Any]:
        return {"policy": "exponential", "base": self.base, "cap": self.cap, "jitter": self.jitter}


@dataclass(frozen=True, slots=True)
class BinaryExponential:
    """``min(base·2^(attempt−1), cap)``: 1 s, 2 s, 4 s … capped at 5 minutes (as in the outbox store)."""

    base: float = 1.0
    cap: float = 300.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise InvalidTask("BinaryExponential needs base >= 0 and cap >= 0")

    def delay(self, attempt: int, rand: Rand | None = None) -> float:
        return _doubling(self.base, attempt, self.cap)

    def to_spec(self) -> dict[str, Any]:
        return {"policy": "binary_exponential", "base": self.base, "cap": self.cap}


@dataclass(frozen=True, slots=True)
class Polynomial:
    """``15 + r^4 + rand(0..29)·(r+1)`` seconds with ``r = attempt − 1`` (tasques' intended formula).

    tasques wrote ``r^4`` in Go, where ``^`` is XOR; this is the power it meant.
    """

    def delay(self, attempt: int, rand: Rand | None = None) -> float:
        r = max(attempt, 1) - 1
        spread = min(int((rand or random.random)() * 30), 29)
        return float(15 + r**4 + spread * (r + 1))

    def to_spec(self) -> dict[str, Any]:
        return {"policy": "polynomial"}


DEFAULT_POLICY: RetryPolicy = Exponential()


def policy_from_spec(spec: Mapping[str, Any]) -> RetryPolicy:
    """Rebuild a policy stored with a task; unknown policies are an ``InvalidTask`` error."""
    params = {k: v for k, v in spec.items() if k != "policy"}
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
    "policy_from_spec",
]
