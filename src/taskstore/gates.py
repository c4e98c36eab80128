"""What may be claimed now, past the gates of SPEC §9: pure decisions every backend's claim applies.

A claim reads its candidates in claim order (already without paused queues and expired tasks), then
asks ``pick`` which of them it may take given the limits of their ``concurrency_key``s. The backend
reads each limited key's ``KeyGate`` (its limit, the tasks of that key claimed right now, its token
bucket) under the same lock or transaction as the claim, and writes back the buckets ``pick`` drew on.
Nothing here reads a clock or a database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .model import Limit


@dataclass(slots=True)
class KeyGate:
    """One limited key as a claim sees it: its limit, how many of its tasks are claimed, its bucket.

    ``tokens`` is the bucket's level at ``refilled_at``; ``drawn`` counts the tokens this claim took,
    so the backend knows which buckets to write back (``tokens`` and ``refilled_at`` then hold the
    values to store).
    """

    limit: Limit
    running: int
    tokens: float
    refilled_at: datetime
    drawn: int = field(default=0)

    def tokens_at(self, now: datetime) -> float:
        """The bucket's level at ``now``: refilled at ``rate / per`` a second, never above ``rate``."""
        rate = self.limit.rate
        if rate is None:
            return 0.0
        elapsed = max((now - self.refilled_at).total_seconds(), 0.0)
        return min(float(rate), self.tokens + elapsed * rate / self.limit.per)

    def admits(self, now: datetime) -> bool:
        """One more claim of this key is allowed now: under its concurrency, and a whole token in its bucket."""
        concurrency = self.limit.concurrency
        if concurrency is not None and self.running >= concurrency:
            return False
        return self.admits_rate(now)

    def admits_rate(self, now: datetime) -> bool:
        # A tiny epsilon: refills are sums of float fractions, and 0.1 * 10 must count as one token.
        return self.limit.rate is None or self.tokens_at(now) >= 1.0 - 1e-9

    def take(self, now: datetime) -> None:
        """Count one more claim of this key: one more running, one token fewer."""
        self.running += 1
        if self.limit.rate is not None:
            self.tokens = max(self.tokens_at(now) - 1.0, 0.0)
            self.refilled_at = now
            self.drawn += 1

    def next_token_at(self, now: datetime) -> datetime | None:
        """When the bucket next holds a whole token (``now`` if it does); None without a rate, or a rate of 0."""
        rate = self.limit.rate
        if rate is None or rate == 0:
            return None
        missing = 1.0 - self.tokens_at(now)
        if missing <= 1e-9:
            return now
        return now + timedelta(seconds=missing * self.limit.per / rate)


def new_gate(limit: Limit, now: datetime, running: int = 0) -> KeyGate:
    """The gate of a key whose limit was just set: its bucket starts full."""
    return KeyGate(limit=limit, running=running, tokens=float(limit.rate or 0), refilled_at=now)


def reset_gate(gate: KeyGate, limit: Limit, now: datetime) -> KeyGate:
    """A limit set again: the bucket keeps what it holds now, capped at the new rate."""
    level = gate.tokens_at(now) if gate.limit.rate is not None else float(limit.rate or 0)
    return KeyGate(limit=limit, running=gate.running, tokens=min(level, float(limit.rate or 0)), refilled_at=now)


def pick(
    keys: Sequence[str | None], gates: Mapping[str, KeyGate], now: datetime, want: int
) -> tuple[list[int], set[str]]:
    """Which candidates to claim, in their (claim) order, and which keys are now full.

    ``keys`` are the candidates' ``concurrency_key``s in claim order; ``gates`` holds every limited key
    among them (a key without a gate is unlimited). A candidate whose key does not admit one more is
    passed over and the candidates behind it are still taken, so one hot key never blocks the others.
    The full keys let a backend scan again past them when the candidates ran out before ``want``.
    """
    chosen: list[int] = []
    full: set[str] = set()
    for index, key in enumerate(keys):
        if len(chosen) >= want:
            break
        gate = None if key is None else gates.get(key)
        if gate is None:
            chosen.append(index)
            continue
        assert key is not None
        if key in full or not gate.admits(now):
            full.add(key)
            continue
        gate.take(now)
        chosen.append(index)
        if not gate.admits(now):
            full.add(key)
    return chosen, full


__all__ = ["KeyGate", "new_gate", "pick", "reset_gate"]
