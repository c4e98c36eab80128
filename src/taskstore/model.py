"""Plain data: the values every layer passes around. No I/O here, and no rules beyond validation."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar

from . import limits
from .errors import InvalidTask
from .retry import RetryPolicy

DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_PROCESSING_TIMEOUT = 60.0

_adopt = object.__setattr__


class _Names(set[str]):
    """Names (of queues, of kinds) already found valid; forgotten all at once past a bound, so never large."""

    def remember(self, name: str) -> None:
        if len(self) >= 4096:
            self.clear()
        self.add(name)


_VALID_QUEUES = _Names()
_VALID_KINDS = _Names()
QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
MAX_ID_LENGTH = limits.MAX_NAME_LENGTH


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
# A unique task holds its key while it is in one of these states (SPEC §9): waiting, running, or waiting to retry.
DEFAULT_UNIQUE_STATES = frozenset({State.QUEUED, State.CLAIMED, State.FAILED})


def as_seconds(value: float | timedelta, what: str, *, positive: bool = False) -> float:
    """Durations are float seconds; a ``timedelta`` is accepted on input. Bounds: see ``limits``."""
    return limits.duration(value, what, positive=positive)


def check_aware(value: datetime, what: str) -> datetime:
    return limits.instant(value, what)


def check_queue(queue: object) -> str:
    if not isinstance(queue, str) or QUEUE_NAME.fullmatch(queue) is None:
        raise InvalidTask(f"invalid queue name {queue!r}: it must match ^[a-z0-9][a-z0-9_.:-]{{0,63}}$")
    return queue


def check_id(value: object, what: str = "id") -> str:
    return limits.name(value, what)


def check_kind(value: object) -> str:
    kind = limits.name(value, "kind")
    if not kind.strip():
        raise InvalidTask("kind must be a non-empty string")
    return kind


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


# A failure is kept with the task (and its last ``MAX_FAILURES_KEPT`` in its history), logged and shown: a
# handler whose exception carries megabytes (a response body, a dumped dataframe) must not bloat every row.
MAX_MESSAGE_CHARS = 16 * 1024
MAX_TRACEBACK_CHARS = 64 * 1024


def cut_text(text: str, limit: int, *, head: int) -> str:
    """``text`` within ``limit`` characters: its first ``head`` and its end, with what was cut said between.

    The end is kept because a traceback's last lines name the exception; the head says where it started.
    """
    if len(text) <= limit:
        return text
    marker = f"\n… [{len(text) - limit} characters cut] …\n"
    tail = limit - head - len(marker)
    return text[:head] + marker + text[len(text) - tail :]


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
    stores, and returns, the same text; a message over ``MAX_MESSAGE_CHARS`` or a traceback over
    ``MAX_TRACEBACK_CHARS`` is cut in the middle (``cut_text``), saying how much was cut.
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
        if isinstance(self.message, str) and len(self.message) > MAX_MESSAGE_CHARS:
            object.__setattr__(self, "message", cut_text(self.message, MAX_MESSAGE_CHARS, head=MAX_MESSAGE_CHARS // 2))
        if isinstance(self.traceback, str) and len(self.traceback) > MAX_TRACEBACK_CHARS:
            object.__setattr__(self, "traceback", cut_text(self.traceback, MAX_TRACEBACK_CHARS, head=8 * 1024))

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
class AttemptFailure:
    """One attempt that ended without success: its number, when it ended, the worker that ran it, and why.

    ``attempt`` is the task's ``attempts`` when it ended (1 for the first); a manual ``retry`` starts the count
    again, so after one the numbers repeat and ``ended_at`` gives the order. ``worker_id`` is None only for an
    entry whose worker is unknown (none today: every failed attempt was claimed by a worker).
    """

    attempt: int
    ended_at: datetime
    worker_id: str | None
    failure: Failure

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "ended_at": self.ended_at.isoformat(),
            "worker_id": self.worker_id,
            "failure": self.failure.to_json(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AttemptFailure:
        return cls(
            attempt=int(raw["attempt"]),
            ended_at=datetime.fromisoformat(raw["ended_at"]),
            worker_id=raw.get("worker_id"),
            failure=Failure.from_json(raw["failure"]),
        )


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


@dataclass(frozen=True, init=False)
class NewTask:
    """A task to create. ``None`` options take the documented defaults at create time.

    Its ``__init__`` is written out rather than generated: a generated frozen ``__init__`` sets each of the 18
    fields through ``object.__setattr__``, which made a NewTask cost 6.4 µs; bulk enqueue builds one per task.
    """

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
    unique_key: str | None = None
    unique_for: float | timedelta | None = None
    unique_states: Collection[State | str] | None = None
    concurrency_key: str | None = None
    expires_at: datetime | None = None

    def __init__(
        self,
        queue: str,
        kind: str,
        args: Any = None,
        *,
        id: str | None = None,
        priority: int = 0,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        processing_timeout: float | timedelta | None = None,
        retry: RetryPolicy | None = None,
        context: Mapping[str, Any] | None = None,
        reference_id: str | None = None,
        recurring_id: str | None = None,
        group_id: str | None = None,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
        unique_states: Collection[State | str] | None = None,
        concurrency_key: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        _adopt(
            self,
            "__dict__",
            {
                "queue": queue,
                "kind": kind,
                "args": args,
                "id": id,
                "priority": priority,
                "run_at": run_at,
                "max_attempts": max_attempts,
                "processing_timeout": processing_timeout,
                "retry": retry,
                "context": context,
                "reference_id": reference_id,
                "recurring_id": recurring_id,
                "group_id": group_id,
                "unique_key": unique_key,
                "unique_for": unique_for,
                "unique_states": unique_states,
                "concurrency_key": concurrency_key,
                "expires_at": expires_at,
            },
        )
        self.__post_init__()

    def __post_init__(self) -> None:
        queue, kind = self.queue, self.kind
        # A name once found valid is valid again: bulk enqueue checks the same few names once per task.
        if type(queue) is not str or queue not in _VALID_QUEUES:
            _VALID_QUEUES.remember(check_queue(queue))
        if type(kind) is not str or kind not in _VALID_KINDS:
            _VALID_KINDS.remember(check_kind(kind))
        if self.id is not None:
            check_id(self.id)
        limits.integer(self.priority, "priority")
        if self.run_at is not None:
            object.__setattr__(self, "run_at", check_aware(self.run_at, "run_at"))
        if self.max_attempts is not None:
            limits.integer(self.max_attempts, "max_attempts", 1)
        if self.processing_timeout is not None:
            seconds = as_seconds(self.processing_timeout, "processing_timeout", positive=True)
            object.__setattr__(self, "processing_timeout", seconds)
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise InvalidTask(f"retry must be a retry policy, got {self.retry!r}")
        if self.context is not None and not isinstance(self.context, Mapping):
            raise InvalidTask("context must be a mapping (a JSON object)")
        if self.reference_id is not None:
            check_id(self.reference_id, "reference_id")
        if self.recurring_id is not None:
            check_id(self.recurring_id, "recurring_id")
        if self.group_id is not None:
            check_id(self.group_id, "group_id")
        self._check_flow_control()

    def _check_flow_control(self) -> None:
        """SPEC §9's options. Expiry in the past is refused by the store, which knows what time it is."""
        if self.concurrency_key is not None:
            limits.name(self.concurrency_key, "concurrency_key")
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", check_aware(self.expires_at, "expires_at"))
        if self.unique_key is None:
            if self.unique_for is not None or self.unique_states is not None:
                raise InvalidTask("unique_for and unique_states need a unique_key")
            return
        limits.name(self.unique_key, "unique_key")
        if self.unique_for is not None:
            object.__setattr__(self, "unique_for", as_seconds(self.unique_for, "unique_for", positive=True))
        if self.unique_states is not None:
            object.__setattr__(self, "unique_states", unique_states(self.unique_states))

    @property
    def unique_hold(self) -> frozenset[State] | None:
        """The states in which the created task holds its unique key; ``None`` without a key."""
        if self.unique_key is None:
            return None
        states = self.unique_states
        return DEFAULT_UNIQUE_STATES if states is None else frozenset(State(s) for s in states)


def unique_states(value: object) -> frozenset[State]:
    """A non-empty set of states that includes ``queued``: a task is created queued, so it holds its key from then."""
    if isinstance(value, str) or not isinstance(value, Collection):
        raise InvalidTask(f"unique_states must be a collection of states, got {value!r}")
    try:
        states = frozenset(State(s) for s in value)
    except ValueError:
        raise InvalidTask(f"unique_states holds an unknown state: {sorted(map(str, value))!r}") from None
    if State.QUEUED not in states:
        raise InvalidTask("unique_states must include 'queued': a task holds its key from the moment it is created")
    return states


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
    unique_key: str | None = None
    concurrency_key: str | None = None
    expires_at: datetime | None = None
    # While not None: the states in which this task still holds ``unique_key`` (SPEC §9). It becomes None
    # for good once the task leaves them (see ``transitions``), or once ``unique_until`` has passed and
    # another create of the key released it: a released key is never taken back.
    unique_hold: frozenset[State] | None = None
    unique_until: datetime | None = None
    # Every attempt that ended without success, oldest first, at most ``transitions.MAX_FAILURES_KEPT`` (the
    # latest). ``result`` holds only the last outcome; this keeps the failures a later success would hide.
    failures: tuple[AttemptFailure, ...] = ()
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
    # The name of the App that declares it (``App.name``); None for a schedule added by hand. A starting
    # worker of that App removes the App's stored schedules its code no longer declares.
    owner: str | None = None

    def __post_init__(self) -> None:
        limits.name(self.id, "recurring id", max_length=limits.MAX_RECURRING_ID_LENGTH)
        if self.owner is not None:
            limits.name(self.owner, "recurring owner")
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


@dataclass(frozen=True, slots=True)
class Limit:
    """A per-key limit (SPEC §9): at most ``concurrency`` tasks of ``key`` claimed at once, and at most
    ``rate`` claims per ``per`` seconds on average.

    The rate is a token bucket on the store's clock holding up to ``rate`` tokens (full when the limit is
    set), refilled at ``rate / per`` tokens a second; a claim takes one. So after an idle spell up to
    ``rate`` tasks start at once, and over any longer stretch the claims average ``rate`` per ``per``.
    ``0`` for either holds every task of the key. ``None`` leaves that side unlimited.
    """

    key: str
    concurrency: int | None = None
    rate: int | None = None
    per: float = 1.0

    def __post_init__(self) -> None:
        limits.name(self.key, "limit key")
        if self.concurrency is None and self.rate is None:
            raise InvalidTask("a limit needs a concurrency or a rate (clear_limit removes one)")
        if self.concurrency is not None:
            limits.integer(self.concurrency, "concurrency", 0)
        if self.rate is not None:
            limits.integer(self.rate, "rate", 0)
        object.__setattr__(self, "per", as_seconds(self.per, "per", positive=True))


@dataclass(frozen=True, slots=True)
class Activity:
    """Tasks that finished in one time slot (``store.activity``): how many succeeded, went dead, were cancelled."""

    start: datetime
    done: int = 0
    dead: int = 0
    cancelled: int = 0


@dataclass(frozen=True, slots=True)
class DeadSummary:
    """A dead task as ``store.dead_summaries`` reads it for grouping failures: no payload, no traceback, and
    the failure's message cut to ``DEAD_MESSAGE_CHARS``."""

    id: str
    queue: str
    kind: str
    finished_at: datetime | None
    type: str
    message: str


DEAD_MESSAGE_CHARS = 2000


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue as ``list_queues`` reports it: paused or not, its tasks by state (every state present,
    archived tasks not counted), the ``run_at`` of its longest-waiting ready task, and how many live workers
    (a heartbeat within the retention window) claim from it, counting workers that claim from every queue."""

    name: str
    paused: bool
    counts: Mapping[State, int]
    oldest_ready_at: datetime | None
    workers: int


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
    "DEFAULT_UNIQUE_STATES",
    "TERMINAL_STATES",
    "Activity",
    "AttemptFailure",
    "Claim",
    "Failure",
    "GroupStatus",
    "Limit",
    "NewTask",
    "Page",
    "QueueInfo",
    "RecurringTask",
    "Report",
    "Result",
    "State",
    "StatusState",
    "Task",
    "TaskStatus",
    "WorkerHeartbeat",
]
