"""Clocks. Every decision (run_at, leases, expiry) reads the store's clock, never ``datetime.now()``.

Waiting (``block_for``, polling) is real elapsed time and does not go through the clock, so a
``FakeClock`` freezes decisions without freezing the event loop.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current time as a timezone-aware UTC datetime."""
        ...


class SystemClock:
    """The process's wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("FakeClock needs a timezone-aware datetime")
    return value.astimezone(UTC)


class FakeClock:
    """A clock that stands still until moved; for tests. Thread-safe, may be set backwards."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware(start) if start is not None else datetime(2030, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        with self._lock:
            self._now += delta
            return self._now

    def set(self, value: datetime) -> None:
        with self._lock:
            self._now = _aware(value)

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"


__all__ = ["Clock", "FakeClock", "SystemClock"]
