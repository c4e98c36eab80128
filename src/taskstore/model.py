"""Plain data: the values every layer passes around. No I/O here, and no rules beyond validation."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar

from .errors import InvalidTask
from .retry import RetryPolicy

DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_PROCESSING_TIMEOUT = 60.0

QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
MAX_ID_LENGTH = 255


class State(StrEnum):
    """Where a task is in its life. Only ``claimed`` holds a lease."""

    QUEUED = "queued"
    """Waiting to run; claimable once ``run_at`` has passed."""
    CLAIMED = "claimed"
    """Held by one worker under a lease token until ``claim.times_out_at``."""
    FAILED = "failed"
    """The last attempt failed and attempts remain; claimable again at ``run_at`` (the backoff)."""
    DONE = "done"
    """Finished successfully; ``result.value`` holds the outcome. Terminal."""
    DEAD = "dead"
    """Failed on its last allowed attempt; ``result.failure`` says why. Terminal until retried."""
    CANCELLED = "cancelled"
    """Cancelled before it finished. Terminal until retried."""

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({State.DONE, State.DEAD, State.CANCELLED})
CLAIMABLE_STATES = frozenset({State.QUEUED, State.FAILED})
TERMINAL_STATES = _TERMINAL


def as_seconds(value: float | timedelta, what: str) -> float:
    """Durations are float seconds; a ``timedelta`` is accepted on input."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise InvalidTask(f"{what} must be a finite number of seconds, got {value!r}")
    return float(seconds)


def check_aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidTask(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value


def check_queue(queue: object) -> str:
    if not isinstance(queue, str) or QUEUE_NAME.fullmatch(queue) is None:
        raise InvalidTask(f"invalid queue name {queue!r}: it must match ^[a-z0-9][a-z0-9_.:-]{{0,63}}$")
    return queue


def check_id(value: object, what: str = "id") -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidTask(f"{what} must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    return value


def storable_text(text: str) -> str:
    """``text`` with what no backend can store made visible: NUL as ``\\x00``, a lone surrogate as ``\\udXXX``.

    PostgreSQL refuses NUL in text and jsonb, and UTF-8 cannot encode a lone surrogate (bytes decoded
    with ``surrogateescape``); both reach failure text from real handlers and must not orphan a task.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode()
    return text


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, tuple):  # JSON makes it a list anyway; a named tuple is not rebuilt from an iterable
        return tuple(_storable(v) for v in value)
    return value


def exception_text(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception's own ``__str__`` fails."""
    try:
        return str(exc)
    except BaseException as broken:  # a handler's exception must not break the recording of its failure
        return f"<unprintable {type(exc).__qualname__}: its __str__ raised {type(broken).__qualname__}>"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an attempt failed.

    Its text is made storable when the Failure is made (see ``storable_text``), so every backend
    stores, and returns, the same text.
    """

    type: str
    message: str = ""
    traceback: str | None = None
    retryable: bool = True
    data: Any = None

    def __post_init__(self) -> None:
        for name in ("type", "message", "traceback", "data"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _storable(value))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Failure:
        return cls(
            type=str(raw.get("type", "")),
            message=str(raw.get("message", "")),
            traceback=raw.get("traceback"),
            retryable=bool(raw.get("retryable", True)),
            data=raw.get("data"),
        )

    @classmethod
    def from_exception(cls, exc: BaseException, *, traceback: str | None = None) -> Failure:
        return cls(type=type(exc).__qualname__, message=exception_text(exc), traceback=traceback)


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of the last finished attempt: ``value`` on success, ``failure`` otherwise."""

    at: datetime
    value: Any = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True, slots=True)
class Report:
    """A worker's last report-in: when, and what it said."""

    at: datetime
    data: Any = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A lease on one task. Every write a worker makes carries it; the token fences stale workers."""

    task_id: str
    worker_id: str
    token: str
    claimed_at: datetime
    times_out_at: datetime
    last_report: Report | None = None


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task to create. ``None`` options take the documented defaults at create time."""

    queue: str
    kind: str
    args: Any = None
    _: dataclasses.KW_ONLY
    id: str | None = None
    priority: int = 0
    run_at: datetime | None = None
    max_attempts: int | None = None
    processing_timeout: float | timedelta | None = None
    retry: RetryPolicy | None = None
    context: Mapping[str, Any] | None = None
    reference_id: str | None = None
    recurring_id: str | None = None
    group_id: str | None = None

    def __post_init__(self) -> None:
        check_queue(self.queue)
        if not isinstance(self.kind, str) or not self.kind.strip():
            raise InvalidTask("kind must be a non-empty string")
        if self.id is not None:
            check_id(self.id)
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise InvalidTask(f"priority must be an int, got {self.priority!r}")
        if not -(2**31) <= self.priority < 2**31:
            raise InvalidTask("priority must fit in 32 bits")
        if self.run_at is not None:
            check_aware(self.run_at, "run_at")
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1
        ):
            raise InvalidTask(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if self.processing_timeout is not None:
            seconds = as_seconds(self.processing_timeout, "processing_timeout")
            if seconds <= 0:
                raise InvalidTask("processing_timeout must be positive")
            object.__setattr__(self, "processing_timeout", seconds)
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise InvalidTask(f"retry must be a retry policy, got {self.retry!r}")
        if self.context is not None and not isinstance(self.context, Mapping):
            raise InvalidTask("context must be a mapping (a JSON object)")
        for name in ("reference_id", "recurring_id", "group_id"):
            value = getattr(self, name)
            if value is not None:
                check_id(value, name)


@dataclass(frozen=True)
class Task:
    """A stored task. Frozen: use ``task.replace(...)`` for a changed copy to pass to ``update``.

    Not slotted on purpose: ``replace`` copies ``__dict__``, several times faster than
    ``dataclasses.replace`` on the claim and completion paths, which replace every task they touch.
    """

    id: str
    queue: str
    kind: str
    args: Any
    context: Mapping[str, Any] | None
    reference_id: str | None
    priority: int
    run_at: datetime
    max_attempts: int
    attempts: int
    processing_timeout: float
    state: State
    claim: Claim | None
    result: Result | None
    created_at: datetime
    updated_at: datetime
    last_enqueued_at: datetime
    finished_at: datetime | None
    version: int
    recurring_id: str | None = None
    group_id: str | None = None
    retry: RetryPolicy | None = None
    cancel_requested: bool = False
    seq: int = field(default=0, compare=False)

    def replace(self, **changes: Any) -> Task:
        if not _TASK_FIELDS.issuperset(changes):
            raise TypeError(f"Task has no field(s) {', '.join(sorted(changes.keys() - _TASK_FIELDS))}")
        copy = object.__new__(Task)
        object.__setattr__(copy, "__dict__", {**self.__dict__, **changes})
        return copy

    @property
    def remaining_attempts(self) -> int:
        return max(self.max_attempts - self.attempts, 0)


@dataclass(frozen=True, slots=True)
class RecurringTask:
    """A schedule that creates a task from ``template`` at every slot.

    ``schedule`` is a cron expression (five fields; six with seconds last; ``@hourly`` …) or
    ``@every 30s``. A slot creates at most one task, however many schedulers run: the task id is
    derived from the recurring id and the slot time. With ``skip_if_outstanding`` no task is created
    while an earlier one is still queued, failed (waiting to retry) or claimed.
    """

    id: str
    schedule: str
    template: NewTask
    skip_if_outstanding: bool = False
    next_at: datetime | None = None  # set by the store: the next slot that will fire

    def __post_init__(self) -> None:
        check_id(self.id, "recurring id")
        if not isinstance(self.template, NewTask):
            raise InvalidTask("a recurring task's template must be a NewTask")
        from .schedule import parse_schedule  # late: schedule imports model

        parse_schedule(self.schedule)


class StatusState(StrEnum):
    """A task's status as the result backend reports it (SPEC §8)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRIED = "retried"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (StatusState.SUCCEEDED, StatusState.FAILED, StatusState.CANCELLED)


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """What happened to a task: its state, its outcome (``payload`` or ``error``) and its attempt."""

    id: str
    state: StatusState
    payload: Any = None
    error: Mapping[str, Any] | None = None
    attempt: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "payload": self.payload,
            "error": None if self.error is None else dict(self.error),
            "attempt": self.attempt,
            "meta": dict(self.meta),
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "updated_at": None if self.updated_at is None else self.updated_at.isoformat(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TaskStatus:
        def when(value: Any) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value)

        return cls(
            id=raw["id"],
            state=StatusState(raw["state"]),
            payload=raw.get("payload"),
            error=raw.get("error"),
            attempt=int(raw.get("attempt", 0)),
            meta=dict(raw.get("meta") or {}),
            created_at=when(raw.get("created_at")),
            updated_at=when(raw.get("updated_at")),
        )


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """A group of tasks whose results are gathered; a chord's callback fires once it is complete.

    ``results`` holds one status per member (a member reported twice counts once); a claimed chord
    is recorded in ``meta`` as ``chord.claimed``, ``chord.callback_task_id`` and ``chord.dispatched_at``.
    """

    id: str
    expected: int
    results: Mapping[str, TaskStatus]
    meta: Mapping[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def completed(self) -> int:
        return len(self.results)

    @property
    def is_complete(self) -> bool:
        return self.completed >= self.expected


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    """What a live worker last said about itself. ``timestamp`` is stamped by the store's clock."""

    worker_id: str
    queues: Sequence[str] = ()
    inflight: int = 0
    host: str = ""
    pid: int = 0
    version: str = ""
    started_at: datetime | None = None
    timestamp: datetime | None = None
    extras: Mapping[str, Any] | None = None


_TASK_FIELDS = frozenset(f.name for f in dataclasses.fields(Task))


def trusted_task(**fields: Any) -> Task:
    """Build a ``Task`` from every one of its fields without the dataclass ``__init__``.

    For backends and transitions on hot paths, which always pass every field: the frozen
    ``__init__`` costs a ``object.__setattr__`` per field.
    """
    task = object.__new__(Task)
    object.__setattr__(task, "__dict__", fields)  # the kwargs dict is ours alone: adopt it, no copy
    return task


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset scan. ``next_cursor`` is opaque, and ``None`` on the last page."""

    items: Sequence[T]
    next_cursor: str | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


__all__ = [
    "CLAIMABLE_STATES",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_PROCESSING_TIMEOUT",
    "TERMINAL_STATES",
    "Claim",
    "Failure",
    "GroupStatus",
    "NewTask",
    "Page",
    "RecurringTask",
    "Report",
    "Result",
    "State",
    "StatusState",
    "Task",
    "TaskStatus",
    "WorkerHeartbeat",
]
