"""Recurring schedules as pure functions: which slot is due, and which comes next.

A schedule is a cron expression (parsed by croniter: five fields; or six, the sixth being seconds;
or ``@hourly``/``@daily`` …) or ``@every <duration>`` (``@every 30s``, ``@every 5m``), whose slots
are whole multiples of the interval since the Unix epoch, so every scheduler agrees on them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import CroniterError, croniter

from . import limits
from .errors import InvalidTask

_EVERY = re.compile(r"^@every\s+(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Schedule:
    text: str
    every: float | None  # seconds, for @every schedules; None for cron

    def latest_slot(self, now: datetime) -> datetime:
        """The last slot at or before ``now``."""
        if self.every is not None:
            seconds = (now - _EPOCH).total_seconds()
            return _EPOCH + timedelta(seconds=math.floor(seconds / self.every + 1e-9) * self.every)
        return self._cron(now + _TICK, backwards=True)

    def next_slot(self, after: datetime) -> datetime:
        """The first slot strictly after ``after``."""
        if self.every is not None:
            return self.latest_slot(after) + timedelta(seconds=self.every)
        return self._cron(after, backwards=False)

    def _cron(self, start: datetime, *, backwards: bool) -> datetime:
        # A valid expression may still never match (``0 0 30 2 *``, a year long past): that is bad
        # input to the one schedule, never an untyped error in the scheduler that reads them all.
        try:
            it = croniter(self.text, start)
            slot: datetime = it.get_prev(datetime) if backwards else it.get_next(datetime)
            return limits.instant(slot.astimezone(UTC), "the schedule's slot")
        except (CroniterError, ValueError, OverflowError) as exc:
            raise InvalidTask(
                f"schedule {self.text!r} has no slot {'before' if backwards else 'after'} {start.isoformat()}: {exc}"
            ) from None


def parse_schedule(text: str) -> Schedule:
    if not isinstance(text, str) or not text.strip():
        raise InvalidTask("a schedule must be a cron expression or '@every <duration>'")
    text = " ".join(text.split())
    match = _EVERY.match(text)
    if match is not None:
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
        if seconds < 0.01:
            raise InvalidTask(f"schedule {text!r}: the interval must be at least 10 ms")
        limits.duration(seconds, f"schedule {text!r}: the interval")
        return Schedule(text, seconds)
    if text.startswith("@every"):
        raise InvalidTask(f"schedule {text!r}: write '@every 30s', '@every 5m', '@every 1h' …")
    if not _valid_cron(text):
        raise InvalidTask(f"schedule {text!r} is not a valid cron expression")
    return Schedule(text, None)


def _valid_cron(text: str) -> bool:
    try:
        return bool(croniter.is_valid(text))
    except Exception:  # croniter's own validator may raise on some garbage instead of saying no
        return False


def slot_task_id(recurring_id: str, slot: datetime) -> str:
    """The id of the task a slot creates: the same in every scheduler, so a slot fires once."""
    return f"{recurring_id}@{slot.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"
