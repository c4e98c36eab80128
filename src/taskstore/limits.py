"""Every bound on what a caller may pass in, and the checks that enforce them, in one place.

The facade checks each value once, at the boundary, so a value no backend could store or compute
with is an ``InvalidTask`` (task data) or ``ConfigError`` (configuration) with a one-line reason, the
same on memory, SQLite and PostgreSQL. A value past these bounds must never reach a backend: there
it would surface later as ``OverflowError`` in a claim or a reap, blocking every other task too.

- Durations (leases, delays, TTLs, ages, intervals) are finite seconds of at most ``MAX_DURATION``
  (100 years), so "now + duration" is always a datetime.
- Datetimes are timezone-aware and lie between ``EARLIEST`` and ``LATEST``, so a lease or backoff of
  up to ``MAX_DURATION`` added to one is still a datetime (Python stops at year 9999).
- Counts stored as ``integer`` columns (priority, attempts, group sizes, pids) fit in 32 bits.
- Ids, kinds and other names are non-empty strings of at most ``MAX_NAME_LENGTH`` characters without
  NUL (PostgreSQL text cannot hold it) and without lone surrogates (they have no UTF-8 encoding).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from .errors import InvalidTask, TaskstoreError

MAX_DURATION = 100 * 365.25 * 86400.0
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
MAX_NAME_LENGTH = 255
# A slot's task id is the recurring id, "@" and a 27-character timestamp: it must stay a valid id.
MAX_RECURRING_ID_LENGTH = MAX_NAME_LENGTH - len("@2026-01-01T00:00:00.000000Z")
MAX_CONCURRENCY = 100_000  # a worker's slots, prefetch, threads and completion batch
MAX_LIMIT = INT32_MAX  # page sizes and claim counts: SQL LIMIT and our own arithmetic stay in range
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)  # a day in: any UTC offset still converts
LATEST = datetime(9999, 1, 1, tzinfo=UTC) - timedelta(seconds=MAX_DURATION)

# An escaped NUL in encoded JSON, not preceded by an escaped backslash (which would make it literal text).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def duration(value: object, what: str, *, positive: bool = False, error: type[TaskstoreError] = InvalidTask) -> float:
    """Seconds as a float: a number or a ``timedelta``, finite, ``>= 0`` (``> 0`` if ``positive``), bounded."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise error(f"{what} must be a finite number of seconds, got {value!r}")
    if seconds < 0 or (positive and seconds == 0):
        raise error(f"{what} must be {'positive' if positive else '>= 0'}, got {value!r}")
    if seconds > MAX_DURATION:
        raise error(f"{what} must be at most {MAX_DURATION:.0f} seconds (100 years), got {value!r}")
    return float(seconds)


def integer(
    value: object,
    what: str,
    low: int = INT32_MIN,
    high: int = INT32_MAX,
    *,
    error: type[TaskstoreError] = InvalidTask,
) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{what} must be an int, got {value!r}")
    if not low <= value <= high:
        raise error(f"{what} must be between {low} and {high}, got {value!r}")
    return value


def name(
    value: object,
    what: str,
    *,
    max_length: int = MAX_NAME_LENGTH,
    empty: bool = False,
    error: type[TaskstoreError] = InvalidTask,
) -> str:
    """A string every backend stores as text: bounded, no NUL, valid UTF-8; non-empty unless ``empty``."""
    if not isinstance(value, str) or (not value and not empty) or len(value) > max_length:
        qualifier = "a" if empty else "a non-empty"
        raise error(f"{what} must be {qualifier} string of at most {max_length} characters, got {_short(value)}")
    if "\x00" in value:
        raise error(f"{what} must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise error(f"{what} must be valid Unicode text (it has a lone surrogate)") from None
    return value


def instant(value: object, what: str, *, error: type[TaskstoreError] = InvalidTask) -> datetime:
    """A timezone-aware datetime between ``EARLIEST`` and ``LATEST``."""
    if not isinstance(value, datetime):
        raise error(f"{what} must be a timezone-aware datetime, got {_short(value)}")
    try:
        offset = value.utcoffset()
    except Exception as exc:  # a tzinfo of the caller's own may raise anything
        raise error(f"{what} has a time zone that cannot give its UTC offset: {exc}") from None
    if offset is None:
        raise error(f"{what} must be a timezone-aware datetime, got {value!r}")
    if not EARLIEST <= value <= LATEST:
        raise error(f"{what} must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}, got {value.isoformat()}")
    if offset % timedelta(minutes=1):
        # Python allows an offset of odd seconds or microseconds; PostgreSQL cannot read one back. The same
        # instant in UTC says the same thing.
        return value.astimezone(UTC)
    return value


def json_text(text: str, what: str) -> str:
    """Encoded JSON a PostgreSQL ``jsonb`` column accepts too: no NUL character in any string."""
    if "\\u0000" in text and _JSON_NUL.search(text) is not None:
        raise InvalidTask(f"{what} must not contain NUL characters")
    return text


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


__all__ = [
    "EARLIEST",
    "INT32_MAX",
    "INT32_MIN",
    "LATEST",
    "MAX_CONCURRENCY",
    "MAX_DURATION",
    "MAX_LIMIT",
    "MAX_NAME_LENGTH",
    "MAX_RECURRING_ID_LENGTH",
    "duration",
    "instant",
    "integer",
    "json_text",
    "name",
]
