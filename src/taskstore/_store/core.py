"""The Store's shared core: its state, lifecycle, payload coding and the plumbing every write goes through.

Each concern of the facade (``tasks``, ``claims``, ``flow``, ``recurring``, ``statuses``, ``groups``,
``heartbeats``) is a class over this one; ``taskstore.store.Store`` inherits them all.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, cast

from .. import _joins, _observe, _otel, _statuses, errors, limits
from .._feed import FEED, StatusChange
from .._ids import task_ids
from .._wakeup import HUB
from ..backend import (
    Change,
    Driver,
    NewRow,
    Outcome,
)
from ..clock import Clock
from ..codec import Codec, JsonCodec, UndecodablePayload, decode, dump_json, encode
from ..model import (
    Claim,
    NewTask,
    Result,
    State,
    StatusState,
    Task,
    as_seconds,
    check_queue,
)

log = logging.getLogger("taskstore.store")

DEFAULT_CLAIM_POLL = 0.05
# How stale the store's knowledge of the earliest lease end (other processes' claims) may get: a lease lost to a
# crashed or frozen worker is recovered by a claim within about this much after it ends.
LEASE_END_CHECK = 0.5
# The least a blocked claim waits for a lease end that has passed yet not been recovered (another claimer
# holds the row): it must not spin.
_RECOVERY_RETRY = 0.05
# Ids of claimed tasks with a concurrency_key remembered per store (see ``Store._keyed``); a bound, not a tuning knob.
_MAX_KEYED = 100_000
DEFAULT_HEARTBEAT_RETENTION = 60.0
DEFAULT_STATUS_TTL = 86400.0  # groups (and status-only records) live a day unless told otherwise
FINISHES_KEPT = timedelta(days=7)  # how far back ``activity`` can look
_BATCH = 10_000


def _lease_of(claim: Claim | Task) -> Claim:
    if isinstance(claim, Task):
        if claim.claim is None:
            raise errors.NotClaimed(claim.id, "this task object carries no claim")
        return claim.claim
    if not isinstance(claim, Claim):
        raise errors.InvalidTask(f"expected a Claim (task.claim), got {type(claim).__name__}")
    return claim


def _queues(queues: str | Iterable[str] | None) -> list[str]:
    if queues is None:
        return []
    if isinstance(queues, str):
        return [check_queue(queues)]
    if not isinstance(queues, Iterable):
        raise errors.InvalidTask(f"queues must be a queue name or a list of them, got {queues!r}")
    return [check_queue(q) for q in queues]


def _limit(value: int, what: str = "limit") -> int:
    return limits.integer(value, what, 1, limits.MAX_LIMIT)


def _json(value: Any, what: str) -> None:
    """JSON the store keeps as JSON (PostgreSQL ``jsonb``): encodable, and without NUL characters."""
    limits.json_text(dump_json(value, what), what)


def _state(value: State | str | None, *, optional: bool = True) -> State | None:
    if isinstance(value, State) or (value is None and optional):
        return value
    try:
        return State(cast(str, value))
    except ValueError:
        raise errors.InvalidTask(f"state must be one of {', '.join(s.value for s in State)}, got {value!r}") from None


def _mapping(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if value is not None and not isinstance(value, Mapping):
        raise errors.InvalidTask(f"{what} must be a mapping (a JSON object), got {type(value).__name__}")
    return dict(value or {})


def _status_state(value: StatusState | str) -> StatusState:
    try:
        return StatusState(value)
    except ValueError:
        choices = ", ".join(s.value for s in StatusState)
        raise errors.InvalidTask(f"status state must be one of {choices}, got {value!r}") from None


def _raise_or(outcome: Outcome) -> Task:
    if isinstance(outcome, errors.TaskstoreError):
        raise outcome
    return outcome


def _chord_args(codec: Codec, template: bytes, results: Sequence[bytes | None], /, *, single: bool = False) -> bytes:
    """A chord callback's args: the members' results, in member order, before the template's own arguments.

    With ``single`` (a chain's next link) the one result goes first as itself, not in a list.
    Called by a driver inside the transaction that completes the last member, so it never raises:
    a result that cannot be decoded or encoded again is passed as ``None`` rather than wedge the group.
    """
    call = codec.decode(template)
    values = [None if r is None else decode(codec, r) for r in results]
    values = [None if isinstance(v, UndecodablePayload) else v for v in values]
    first: Any = values[0] if single and values else values
    call = {"args": [first, *call.get("args", [])], "kwargs": dict(call.get("kwargs", {}))}
    try:
        return codec.encode(call)
    except Exception:
        call["args"][0] = None if single else [None] * len(values)
        return codec.encode(call)


class StoreCore:
    """What every part of the Store shares; not used on its own."""

    def __init__(
        self,
        driver: Driver,
        *,
        codec: Codec | None = None,
        url: str = "",
        poll_interval: float = DEFAULT_CLAIM_POLL,
        heartbeat_retention: float = DEFAULT_HEARTBEAT_RETENTION,
    ) -> None:
        self.heartbeat_retention = limits.duration(
            heartbeat_retention, "heartbeat_retention", positive=True, error=errors.ConfigError
        )
        self.status_ttl = DEFAULT_STATUS_TTL
        self._pending: set[asyncio.Future[Any]] = set()
        self._keyed_ids: set[str] = set()  # claimed here with a concurrency_key (see _keyed)
        # Per set of queues: (loop time read, the earliest end of a lease in them then) (see _lease_end).
        self._lease_ends: dict[tuple[str, ...], tuple[float, datetime | None]] = {}
        # The claim asking the database after a wake-up, per set of queues, and whether it took all it asked for.
        self._woken_claims: dict[tuple[str, ...], asyncio.Future[bool]] = {}
        self._driver = driver
        self.codec: Codec = codec or JsonCodec()
        driver.chord_args = functools.partial(_chord_args, self.codec)
        self.url = url
        self.poll_interval = limits.duration(poll_interval, "poll_interval", positive=True, error=errors.ConfigError)
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        # The event loop that opened the store: its connections, pool and wake-ups live on it (see _ready).
        self._loop: asyncio.AbstractEventLoop | None = None
        # A tuple, empty unless observed: each hook costs a truth test when nobody observes (see _observe).
        self._observers: tuple[_observe.Observer, ...] = ()
        self._labels = _observe.Labels()  # filled only while observed

    # -- observers --------------------------------------------------------------------------------

    @property
    def observers(self) -> tuple[_observe.Observer, ...]:
        return self._observers

    def add_observer(self, observer: _observe.Observer) -> None:
        """Report enqueues, claims, outcomes, reaps and refused writes to ``observer`` (see ``_observe``)."""
        if observer not in self._observers:
            self._observers = (*self._observers, observer)

    def remove_observer(self, observer: _observe.Observer) -> None:
        self._observers = tuple(o for o in self._observers if o is not observer)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._driver.clock

    def now(self) -> datetime:
        """The store's clock: the time every decision is taken against."""
        return self._driver.clock.now()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the store was opened on (``None`` before); it is used from that loop only."""
        return self._loop

    async def connect(self) -> Self:
        if not self._opened:
            self._check_loop()
            if self._open_lock is None:
                self._loop = asyncio.get_running_loop()
                self._open_lock = asyncio.Lock()
            async with self._open_lock:
                if not self._opened:
                    await self._driver.open()
                    self._opened = True
        return self

    def check_join_opens(self, join: _joins.Join) -> None:
        """Refuse at once, with ``ConfigError``, a joined insert whose transaction this store's first opening
        would wait for (on SQLite, creating its tables needs the write lock that transaction holds): without
        this both would wait for each other until ``busy_timeout`` ran out."""
        waits = getattr(self._driver, "open_waits_on", None)
        if not self._opened and waits is not None and waits(join.raw):
            raise errors.ConfigError(
                "the store's tables do not exist yet in the database of conn=, and creating them needs the write "
                f"lock your open transaction holds: open the store before the transaction ({join.source}), e.g. "
                "`await app.store()` at startup or `app.run_sync(app.store())` in sync code"
            )

    async def close(self) -> None:
        if self._opened:
            self._check_loop()
            self._opened = False
            await self._driver.close()
            self._loop = self._open_lock = None  # closed: it may be opened again, on any loop

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _ready(self) -> Driver:
        if not self._opened:
            await self.connect()
        elif self._loop is not asyncio.get_running_loop():
            self._check_loop()
        return self._driver

    def _check_loop(self) -> None:
        """Refuse use from an event loop other than the store's own, at once.

        A driver's connections, pool and wake-ups belong to the loop that opened them; used from another
        loop they fail later and obscurely (psycopg_pool: "bound to a different event loop"), or not at all.
        """
        home = self._loop
        if home is None or self.loop_free or home is asyncio.get_running_loop():
            return
        where = "has been closed" if home.is_closed() else "runs in another thread"
        raise errors.ConfigError(
            f"this store was opened on another event loop, which {where}: a store is used from the loop that "
            "opened it. An App's own API (fn.enqueue, handle.result, app.run_sync) works from any loop or "
            "thread; elsewhere open a store per event loop (taskstore.open)"
        )

    @property
    def loop_free(self) -> bool:
        """True when the driver holds nothing on an event loop (``memory://``): any loop may use the store."""
        return bool(getattr(self._driver, "loop_free", False))

    def rebind(self) -> None:
        """Let the next use open this store on its own loop again, once its loop has been closed.

        Only for drivers that hold nothing on a loop (``memory://``): the App's way to keep an in-memory
        store's tasks across the per-test event loops of a test suite.
        """
        if not self.loop_free:
            raise errors.ConfigError("only a memory:// store can move to another event loop")
        self._loop = None
        self._open_lock = None
        self._opened = False

    def _wake(self) -> None:
        """New claimable work: wake this process's blocked claimers of the same database."""
        HUB.notify(self._driver.wake_key)

    def _touched(self) -> None:
        """Some task or status changed: wake this process's status watchers of the same database."""
        HUB.notify(("status", self._driver.wake_key))

    def _publish(self, tasks: Iterable[Task], *, raw: bool = False) -> None:
        """Hand each written task's status to this process's watchers of it, in order (see ``_feed``).

        ``raw`` tasks still carry encoded payloads; they are decoded only when someone watches them.
        """
        if not FEED.active:
            return
        database = self._driver.wake_key
        for task in tasks:
            key = (database, task.id)
            if FEED.watched(key):
                shown = self._decoded(task) if raw else task
                FEED.publish(key, StatusChange(task.version, _statuses.status_of(shown)))

    # -- payloads -------------------------------------------------------------------------------

    def _decoded(self, task: Task) -> Task:
        result = task.result
        if result is not None and result.value is not None:
            result = Result(at=result.at, value=decode(self.codec, result.value), failure=result.failure)
        return task.replace(args=decode(self.codec, task.args), result=result)

    def _rows(self, news: Iterable[NewTask], trace: Mapping[str, str] | None) -> builtins.list[NewRow]:
        """Validate and encode a batch; the hot loop of bulk enqueue, so names are bound locally.

        ``trace``: the caller's trace context (``_otel.carrier()``, read once per call), added to each context.
        """
        rows: builtins.list[NewRow] = []
        if not isinstance(news, builtins.list | tuple):
            news = builtins.list(news)
        # The ids the batch lacks, made together (one clock read and one lock for all).
        make_id = iter(task_ids(sum(1 for new in news if getattr(new, "id", "") is None))).__next__
        append, encode_ = rows.append, self.codec.encode
        for new in news:
            if not isinstance(new, NewTask):
                raise errors.InvalidTask(f"expected a NewTask, got {type(new).__name__}")
            if new.context is not None:
                _json(new.context, "context")
            if trace is not None:
                new = _otel.traced(new, trace)  # a copy: the caller's NewTask is left as it was
            try:
                data = encode_(new.args)
            except Exception:
                data = encode(self.codec, new.args, "args")  # raises the InvalidTask that explains it
            if type(data) is not bytes:
                data = encode(self.codec, new.args, "args")
            append(NewRow(new, make_id() if new.id is None else new.id, data))
        return rows

    async def _apply_one(self, task_id_: str, change: Change, item: object = None, *, failed: bool = False) -> Task:
        """One write; with ``item`` (the caller's claim, task or the id) its outcome goes to the observers."""
        driver = await self._ready()
        (outcome,) = await driver.apply([(task_id_, change)])
        self._touched()
        self._freed([outcome])
        if self._observers and item is not None:
            _observe.ended(self._observers, [outcome], [item], self._labels, attempt_failed=failed)
        task = self._decoded(_raise_or(outcome))
        self._publish([task])
        return task

    async def _apply_many(
        self, changes: Sequence[tuple[str, Change]], items: Sequence[Any] | None = None
    ) -> list[Outcome]:
        if not changes:
            return []
        driver = await self._ready()
        outcomes = await driver.apply(changes)
        self._touched()
        self._freed(outcomes)
        if self._observers and items is not None:
            _observe.ended(self._observers, outcomes, items, self._labels)
        decoded = [o if isinstance(o, errors.TaskstoreError) else self._decoded(o) for o in outcomes]
        self._publish(o for o in decoded if isinstance(o, Task))
        return decoded

    def _keyed(self, claimed: Iterable[Task]) -> None:
        """Remember the tasks this store claimed with a ``concurrency_key``: their end frees a slot."""
        for task in claimed:
            if task.concurrency_key is not None:
                if len(self._keyed_ids) >= _MAX_KEYED:
                    self._keyed_ids.clear()  # forgotten ones are found by the blocked claimers' polling
                self._keyed_ids.add(task.id)

    def _freed(self, outcomes: Iterable[Outcome]) -> None:
        """A task with a concurrency_key stopped running: its key has room, wake this process's claimers.

        (Claimers in other processes find it by polling: ``has_claimable`` keeps saying True.)
        """
        wake = False
        for outcome in outcomes:
            if isinstance(outcome, Task) and outcome.concurrency_key is not None and outcome.state is not State.CLAIMED:
                self._keyed_ids.discard(outcome.id)
                wake = True
        if wake:
            self._wake()

    def _freed_ids(self, ids: Iterable[str]) -> None:
        """``_freed`` for writes that return no task (the worker's bulk completions)."""
        if not self._keyed_ids:
            return
        wake = False
        for id_ in ids:
            if id_ in self._keyed_ids:
                self._keyed_ids.discard(id_)
                wake = True
        if wake:
            self._wake()

    # -- shared by several concerns (statuses and groups; heartbeats and flow) ---------------------

    def _ttl(self, ttl: float | timedelta | None) -> float:
        return self.status_ttl if ttl is None else as_seconds(ttl, "ttl", positive=True)

    def _heartbeat_cutoff(self) -> datetime:
        return self.now() - timedelta(seconds=self.heartbeat_retention)
