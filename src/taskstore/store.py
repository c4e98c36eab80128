"""The ``Store``: the public API of SPEC §7 over any backend driver.

The facade validates, encodes payloads with the codec, waits for ``block_for`` and decodes what the
driver returns; the driver applies transitions atomically. One implementation for every backend.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import functools
import logging
import math
import re
from collections.abc import AsyncGenerator, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, cast

from . import _cancels, _joins, _observe, _otel, _recurring, _statuses, _why, errors, limits
from ._feed import FEED, StatusChange
from ._ids import lease_token, task_ids
from ._wakeup import HUB, LOST_WAKEUPS_POLL, cancel_key
from .backend import (
    Change,
    ChordRow,
    Completion,
    Driver,
    GroupRow,
    ListQuery,
    NewRow,
    Outcome,
    RecurringRow,
    StatusRow,
)
from .backends._groups import link_template_json, template_json
from .changes import Cancel, MarkCancelled, MarkFailed, ReportIn, RetryNow, Unclaim, Update
from .clock import Clock
from .codec import Codec, JsonCodec, UndecodablePayload, decode, dump_json, encode
from .health import DEFAULT_THRESHOLDS, HealthReport, Thresholds
from .model import (
    TERMINAL_STATES,
    Activity,
    Claim,
    DeadSummary,
    Failure,
    GroupStatus,
    Limit,
    NewTask,
    Page,
    QueueInfo,
    RecurringTask,
    Result,
    State,
    StatusState,
    Task,
    TaskStatus,
    WorkerHeartbeat,
    as_seconds,
    check_aware,
    check_id,
    check_kind,
    check_queue,
)
from .schedule import parse_schedule, slot_task_id

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


def _check_heartbeat(beat: WorkerHeartbeat) -> None:
    check_id(beat.worker_id, "worker_id")
    if isinstance(beat.queues, str) or not isinstance(beat.queues, Sequence):
        raise errors.InvalidTask(f"heartbeat queues must be a list of queue names, got {beat.queues!r}")
    for queue in beat.queues:
        limits.name(queue, "heartbeat queue")
    limits.integer(beat.inflight, "heartbeat inflight", 0)
    limits.integer(beat.pid, "heartbeat pid", 0)
    limits.name(beat.host, "heartbeat host", empty=True)
    limits.name(beat.version, "heartbeat version", empty=True)
    if beat.started_at is not None:
        check_aware(beat.started_at, "heartbeat started_at")
    if beat.extras is not None:
        if not isinstance(beat.extras, Mapping):
            raise errors.InvalidTask(f"heartbeat extras must be a dict or None, got {type(beat.extras).__name__}")
        _json(beat.extras, "heartbeat extras")


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


def _chord_template(callback: NewTask, what: str = "a chord callback's") -> dict[str, Any]:
    """A callback's own arguments, as ``{"args": [...], "kwargs": {...}}`` (the results go first at its call)."""
    call = {} if callback.args is None else callback.args
    if (
        not isinstance(call, Mapping)
        or set(call) - {"args", "kwargs"}
        or not isinstance(call.get("args", []), list | tuple)
        or not isinstance(call.get("kwargs", {}), Mapping)
    ):
        raise errors.InvalidTask(f'{what} args must be None or {{"args": [...], "kwargs": {{...}}}}')
    return {"args": list(call.get("args", [])), "kwargs": dict(call.get("kwargs", {}))}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _encode_cursor(task: Task) -> str:
    return f"s{task.seq}"


_CURSOR = re.compile(r"s[0-9]{1,18}")  # a sequence number: 18 digits always fit a 64-bit integer


def _decode_cursor(cursor: str) -> int:
    if not isinstance(cursor, str) or _CURSOR.fullmatch(cursor) is None:
        raise errors.InvalidTask(f"invalid cursor {cursor!r}")
    return int(cursor[1:])


class _Delivered:
    """What a watcher has yielded: a change is yielded once, and never one older than the last."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.seen: tuple[Any, ...] | None = None

    def take(self, change: StatusChange) -> bool:
        status = change.status
        assert status is not None
        if change.version is not None:
            if self.version is not None and change.version <= self.version:
                return False
            self.version = change.version
        seen = (status.state, status.updated_at, status.attempt, status.payload, status.error)
        if seen == self.seen:
            return False  # written again without a visible difference (a report_in on a frozen clock)
        self.seen = seen
        return True


class Store:
    """A durable task store. Use ``async with taskstore.open(url) as store``."""

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

    # -- create ---------------------------------------------------------------------------------

    async def create(self, new: NewTask, *, conn: Any = None) -> Task:
        return (await self.create_many([new], conn=conn))[0]

    async def create_many(self, news: Iterable[NewTask], *, conn: Any = None) -> list[Task]:
        """All-or-nothing. With ``conn`` the insert joins the caller's open transaction.

        With OpenTelemetry installed and a valid current span, each task's ``context`` gets the W3C trace
        fields (``traceparent``, ``tracestate``) the worker links its span to; a key the caller set is kept.

        A task with a ``unique_key`` whose key is held by a live task of its queue is not created: its
        place in the result is that existing task (SPEC §9), for ``create`` too.
        """
        rows = self._rows(news, _otel.carrier())
        if not rows:
            raise errors.InvalidTask("create_many needs at least one task")
        if any(row.new.expires_at is not None for row in rows):
            now = self.now()
            for row in rows:
                expires = row.new.expires_at
                if expires is not None and expires <= now:
                    raise errors.InvalidTask(
                        f"expires_at {expires.isoformat()} is not in the future (now {now.isoformat()})"
                    )
        if conn is not None:
            return await self._create_joined(rows, conn)
        driver = await self._ready()
        stored = await driver.insert(rows, None)
        created = stored
        if any(task.args is not row.new.args for task, row in zip(stored, rows, strict=True)):
            created, stored = self._deduped(rows, stored)
        if stored:
            self._wake()
            self._touched()
            self._publish(stored, raw=True)
            if self._observers:
                _observe.enqueued(self._observers, stored)
        return created

    async def _create_joined(self, rows: Sequence[NewRow], conn: Any) -> builtins.list[Task]:
        """The insert of ``create_many(conn=…)``, in the caller's thread and on the caller's loop (if any).

        It touches only the caller's connection, never the store's own, so unlike every other method it may
        run away from the store's loop: in a sync caller's thread (``enqueue_sync(conn=…)``, with no loop at
        all) or on another loop (an async SQLAlchemy session of a web app's loop). Nothing wakes claimers:
        the tasks appear when the caller commits (NOTIFY, the SQLite commit watch, or the next poll).
        """
        join = await _joins.aresolve(conn)
        if not self._opened:
            if self._loop is not None:
                raise errors.ConfigError("the store is still opening on its own event loop; try again once it is open")
            await self.connect()  # the first use of this store: the schema must exist before the insert
        with join.around():
            stored = await self._driver.insert(rows, join)
        created = stored
        if any(task.args is not row.new.args for task, row in zip(stored, rows, strict=True)):
            created, stored = self._deduped(rows, stored)
        if self._observers:  # counted at the insert: a transaction the caller rolls back is counted too
            _observe.enqueued(self._observers, stored)
        return created

    def _deduped(self, rows: Sequence[NewRow], got: Sequence[Task]) -> tuple[builtins.list[Task], builtins.list[Task]]:
        """Unique tasks: what create returns per row, and the tasks this batch really inserted.

        A task the batch inserted carries its row's own ``args`` object (see ``Outbox.insert``). A row
        whose key an earlier row of the batch took gets that row's task; any other row got an existing
        holder as stored, its payload still encoded. The holder may even share the row's id (the same
        create sent twice), so the ``args`` object tells them apart, not the id.
        """
        inserted = {t.id: t for t, row in zip(got, rows, strict=True) if t.args is row.new.args and t.id == row.id}
        returned = [inserted.get(t.id) or self._decoded(t) for t in got]
        return returned, builtins.list(inserted.values())

    # -- read -----------------------------------------------------------------------------------

    async def get(self, id: str) -> Task:
        driver = await self._ready()
        return self._decoded(await driver.get(check_id(id)))

    async def get_archived(self, id: str) -> Task:
        driver = await self._ready()
        return self._decoded(await driver.get(check_id(id), archived=True))

    async def list(
        self,
        state: State | str | None = None,
        queue: str | None = None,
        ready_as_of: datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
        descending: bool = False,
        *,
        archived: bool = False,
        kind: str | None = None,
    ) -> Page[Task]:
        """A page of tasks in enqueue order (``seq``); ``cursor`` is the previous page's ``next_cursor``.

        Ascending, a page never passes a task that a transaction still open may yet commit (PostgreSQL
        ends the page below it), so a poller that pages on from the last task it saw never skips one.
        """
        query = ListQuery(
            state=_state(state),
            queue=check_queue(queue) if queue is not None else None,
            ready_as_of=check_aware(ready_as_of, "ready_as_of") if ready_as_of is not None else None,
            after_seq=_decode_cursor(cursor) if cursor is not None else None,
            limit=_limit(limit) + 1,  # one extra row tells whether another page exists
            descending=descending,
            archived=archived,
            kind=check_kind(kind) if kind is not None else None,
        )
        driver = await self._ready()
        rows = await driver.list_tasks(query)
        items = [self._decoded(t) for t in rows[: query.limit - 1]]
        more = len(rows) >= query.limit
        return Page(items=items, next_cursor=_encode_cursor(items[-1]) if more and items else None)

    async def count(self, state: State | str | None = None, queue: str | None = None, *, archived: bool = False) -> int:
        wanted, queue = _state(state), check_queue(queue) if queue is not None else None
        driver = await self._ready()
        return await driver.count(wanted, queue, archived)

    async def outstanding_count(self, recurring_id: str) -> int:
        """Tasks of one recurring id that are ``queued``, ``failed`` or ``claimed``."""
        driver = await self._ready()
        return await driver.outstanding_count(check_id(recurring_id, "recurring_id"))

    # -- claims ---------------------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        queues: str | Iterable[str] | None = None,
        limit: int = 1,
        block_for: float | timedelta = 0.0,
        *,
        at_least: int | None = None,
        until: asyncio.Event | None = None,
    ) -> builtins.list[Task]:
        """Claim up to ``limit`` ready tasks; wait up to ``block_for`` seconds for more to arrive.

        It returns as soon as ``limit`` tasks are claimed, or ``at_least`` of them when given: a
        worker with room for 100 passes ``at_least=1`` to start the first task without waiting
        for the other 99 to be enqueued. Setting ``until`` ends the wait early (a stopping worker).
        """
        check_id(worker_id, "worker_id")
        qs = _queues(queues)
        _limit(limit)
        enough = limit if at_least is None else min(_limit(at_least, "at_least"), limit)
        wait = as_seconds(block_for, "block_for")
        driver = await self._ready()
        if wait <= 0:
            claimed = await self._claim_batch(driver, worker_id, qs, limit)
            if claimed:
                self._keyed(claimed)
                self._touched()
                self._publish(claimed, raw=True)
                if self._observers:
                    _observe.claimed(self._observers, claimed, self._labels)
            return [self._decoded(t) for t in claimed]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        # Subscribe before the first attempt, so a task created in between still wakes us.
        waiter = HUB.subscribe(driver.wake_key)
        got: builtins.list[Task] = []
        try:
            got = await self._claim_batch(driver, worker_id, qs, limit)
            while len(got) < enough and not (until is not None and until.is_set()):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                # Woken by new work, or by the end of a lease that may have been lost (SPEC §2, recovery).
                ends = await self._lease_end(driver, tuple(qs))
                pause = min(remaining, self._claim_poll(driver))
                if ends is not None:
                    pause = min(pause, max((ends - self.clock.now()).total_seconds(), _RECOVERY_RETRY))
                woke = await waiter.wait(pause, until)
                if until is not None and until.is_set():
                    break
                if woke or self._recovery_due(tuple(qs)) or await driver.has_claimable(qs):
                    got += await self._claim_batch(driver, worker_id, qs, limit - len(got))
        except BaseException:
            # Cancelled or failed while waiting for more: what was claimed goes back, not to the reaper.
            if got:
                await self._release_shielded(got)
            raise
        finally:
            HUB.unsubscribe(driver.wake_key, waiter)
        if got:
            self._keyed(got)
            self._touched()
            self._publish(got, raw=True)
            if self._observers:
                _observe.claimed(self._observers, got, self._labels)
        return [self._decoded(t) for t in got]

    def _claim_poll(self, driver: Driver) -> float:
        """How long a blocked claim waits before it looks again: shorter while wake-ups are known to be lost.

        The driver decides that (PostgreSQL probes its LISTEN, see ``backends.postgres``); claimers then
        poll by themselves, even below a ``poll_interval`` chosen on the promise of being woken.
        """
        if driver.notifications_lost:
            return min(self.poll_interval, LOST_WAKEUPS_POLL)
        return self.poll_interval

    async def _claim_batch(
        self, driver: Driver, worker_id: str, queues: Sequence[str], limit: int
    ) -> builtins.list[Task]:
        """One driver claim that is never lost: a caller cancelled mid-claim gives back what it took.

        It also recovers the leases of its queues that have ended (the driver reaps them just before it
        claims) once the earliest known lease end has passed, so a crashed or frozen worker's tasks run again
        about a lease after they were last renewed, not after the next reaper pass.
        """
        qs = tuple(queues)
        await self._lease_end(driver, qs)
        recover = self._recovery_due(qs)
        if recover:
            del self._lease_ends[qs]  # read again after this claim: the next lease to end is another
        job = asyncio.ensure_future(driver.claim(worker_id, queues, limit, lease_token, recover))
        try:
            claimed = await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(self._give_back_when_done)
            raise
        if claimed:
            self._leases_taken(claimed)
        return claimed

    async def _lease_end(self, driver: Driver, qs: tuple[str, ...]) -> datetime | None:
        """The earliest end of a lease in ``qs`` (store clock), as read at most ``LEASE_END_CHECK`` ago."""
        known = self._lease_ends.get(qs)
        now = asyncio.get_running_loop().time()
        if known is None or now - known[0] >= LEASE_END_CHECK:
            known = (now, await driver.lease_expiry(qs))
            self._lease_ends[qs] = known
        return known[1]

    def _recovery_due(self, qs: tuple[str, ...]) -> bool:
        known = self._lease_ends.get(qs)
        return known is not None and known[1] is not None and known[1] <= self.clock.now()

    def _leases_taken(self, claimed: Sequence[Task]) -> None:
        """Leases handed out here may end before the earliest one known: count them in without waiting for a read
        (a claimer that holds a lease this store gave it recovers it in time even if it was the only one)."""
        ends = min((t.claim.times_out_at for t in claimed if t.claim is not None), default=None)
        if ends is None:
            return
        for qs, (read_at, known) in list(self._lease_ends.items()):
            if (known is None or ends < known) and (not qs or any(t.queue in qs for t in claimed)):
                self._lease_ends[qs] = (read_at, ends)

    def _give_back_when_done(self, job: asyncio.Future[builtins.list[Task]]) -> None:
        if job.cancelled() or job.exception() is not None or not job.result():
            return
        self._keep(asyncio.ensure_future(self._release(job.result())))

    async def _release_shielded(self, tasks: Sequence[Task]) -> None:
        release = asyncio.ensure_future(self._release(tasks))
        self._keep(release)
        with contextlib.suppress(BaseException):
            await asyncio.shield(release)

    def _keep(self, task: asyncio.Future[Any]) -> None:
        """Hold a strong reference to a background release until it is done (the loop keeps only weak ones)."""
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _release(self, tasks: Sequence[Task]) -> None:
        leases = [t.claim for t in tasks if t.claim is not None]
        changes: builtins.list[tuple[str, Change]] = [(lease.task_id, Unclaim(lease)) for lease in leases]
        with contextlib.suppress(errors.TaskstoreError):
            outcomes = await self._driver.apply(changes)
            self._freed(outcomes)
            self._wake()
            if self._observers:
                _observe.ended(self._observers, outcomes, leases, self._labels)
            self._publish((o for o in outcomes if isinstance(o, Task)), raw=True)

    async def claim_task(self, id: str, worker_id: str, ttl: float | timedelta | None = None) -> Task | None:
        """Claim one specific task; ``None`` while it is not claimable (also for its current owner)."""
        check_id(id)
        check_id(worker_id, "worker_id")
        lease = None if ttl is None else as_seconds(ttl, "ttl", positive=True)
        driver = await self._ready()
        task = await driver.claim_task(id, worker_id, lease, lease_token())
        self._touched()
        if task is None:
            return None
        self._keyed([task])
        decoded = self._decoded(task)
        self._publish([decoded])
        if self._observers:
            _observe.claimed(self._observers, [task], self._labels)
        return decoded

    async def find_available(self, queues: str | Iterable[str] | None = None, limit: int = 10) -> builtins.list[Task]:
        driver = await self._ready()
        return [self._decoded(t) for t in await driver.find_available(_queues(queues), _limit(limit))]

    # -- fenced writes by the lease holder ------------------------------------------------------

    def _report_change(self, claim: Claim | Task, data: Any, extend_by: float | timedelta | None) -> tuple[str, Change]:
        lease = _lease_of(claim)
        if data is not None:
            _json(data, "report data")
        length = None if extend_by is None else as_seconds(extend_by, "extend_by", positive=True)
        return lease.task_id, ReportIn(lease, data, length)

    async def report_in(
        self, claim: Claim | Task, data: Any = None, *, extend_by: float | timedelta | None = None
    ) -> Task:
        """Renew the lease. The returned task's ``cancel_requested`` tells the worker to stop."""
        return await self._apply_one(*self._report_change(claim, data, extend_by), claim)

    async def report_in_many(
        self, claims: Iterable[Claim | Task], data: Any = None, *, extend_by: float | timedelta | None = None
    ) -> builtins.list[Outcome]:
        """Renew many leases in one write, each fenced on its own token; one outcome per claim."""
        items = builtins.list(claims)
        return await self._apply_many([self._report_change(c, data, extend_by) for c in items], items)

    def _done_change(self, claim: Claim | Task, result: Any) -> tuple[str, Change]:
        lease = _lease_of(claim)
        value = encode(self.codec, result, "result") if result is not None else None
        return lease.task_id, Completion(lease, value)

    async def mark_done(self, claim: Claim | Task, result: Any = None) -> Task:
        return await self._apply_one(*self._done_change(claim, result), claim)

    async def mark_done_many(self, items: Iterable[Claim | Task | tuple[Claim | Task, Any]]) -> builtins.list[Outcome]:
        """Complete many tasks in one write, each fenced on its own token; one outcome per item.

        An item is a claim (result ``None``) or a ``(claim, result)`` pair.
        """
        listed = builtins.list(items)
        return await self._apply_many(self._done_changes(listed), listed)

    async def acknowledge_many(
        self, items: Iterable[Claim | Task | tuple[Claim | Task, Any]]
    ) -> builtins.list[errors.TaskstoreError | None]:
        """``mark_done_many`` for callers that need no task back (the worker's completer).

        Each item's outcome is ``None`` when accepted, or the error that refused it; the store skips
        reading and decoding the finished tasks.
        """
        listed = builtins.list(items)
        changes = self._done_changes(listed)
        if not changes:
            return []
        driver = await self._ready()
        if len({task_id for task_id, _ in changes}) < len(changes):  # repeats must see each other: general path
            outcomes = await driver.apply(changes)
            self._touched()
            self._freed(outcomes)
            self._publish((o for o in outcomes if isinstance(o, Task)), raw=True)
            if self._observers:
                _observe.ended(self._observers, outcomes, listed, self._labels)
            return [o if isinstance(o, errors.TaskstoreError) else None for o in outcomes]
        acks = await driver.acknowledge([cast(Completion, change) for _, change in changes])
        self._touched()
        if self._observers:  # no task comes back: the labels come from the items or from the claims made here
            _observe.ended(self._observers, acks, listed, self._labels)
        self._freed_ids(task_id for (task_id, _), ack in zip(changes, acks, strict=True) if ack is None)
        self._read_back([task_id for (task_id, _), ack in zip(changes, acks, strict=True) if ack is None])
        return acks

    def _read_back(self, ids: Iterable[str]) -> None:
        """These tasks changed, but no row came back: their watchers here read them from the store."""
        if not FEED.active:
            return
        database = self._driver.wake_key
        for id_ in ids:
            if FEED.watched((database, id_)):
                FEED.publish((database, id_), StatusChange(None, None))

    def _done_changes(
        self, items: Iterable[Claim | Task | tuple[Claim | Task, Any]]
    ) -> builtins.list[tuple[str, Change]]:
        return [
            self._done_change(*item) if isinstance(item, tuple) else self._done_change(item, None) for item in items
        ]

    async def mark_failed(
        self, claim: Claim | Task, failure: Failure | BaseException, *, retry_in: float | timedelta | None = None
    ) -> Task:
        """``failed`` with backoff while attempts remain (and the failure is retryable), else ``dead``.

        ``retry_in`` replaces the task's retry policy for this one backoff (a handler's ``Retry(delay=…)``).
        """
        lease = _lease_of(claim)
        delay = None if retry_in is None else limits.duration(retry_in, "retry_in")
        if isinstance(failure, BaseException):
            failure = Failure.from_exception(failure)
        if not isinstance(failure, Failure):
            raise errors.InvalidTask(f"expected a Failure, got {type(failure).__name__}")
        dump_json(failure.to_json(), "failure")
        change = MarkFailed(lease, failure, delay)
        task = await self._apply_one(lease.task_id, change, claim, failed=True)
        self._wake()
        return task

    async def unclaim(self, claim: Claim | Task) -> Task:
        """Release the lease: back to ``queued`` without spending an attempt."""
        lease = _lease_of(claim)
        task = await self._apply_one(lease.task_id, Unclaim(lease), claim)
        self._wake()
        return task

    async def mark_cancelled(self, claim: Claim | Task) -> Task:
        """The worker honours ``cancel_requested``: ``claimed`` -> ``cancelled``."""
        lease = _lease_of(claim)
        return await self._apply_one(lease.task_id, MarkCancelled(lease), claim)

    # -- admin writes ---------------------------------------------------------------------------

    async def cancel(self, id: str) -> Task:
        """``queued``/``failed`` -> ``cancelled``; on a ``claimed`` task, a request its worker is told of at once."""
        checked = check_id(id)
        task = await self._apply_one(checked, Cancel(), checked)
        if task.state is State.CLAIMED and task.cancel_requested:
            HUB.notify(cancel_key(self._driver.wake_key))  # other processes: the backend's own channel
        return task

    async def cancel_requested_among(self, ids: Iterable[str]) -> set[str]:
        """Which of these tasks are ``claimed`` with a cancel request: one read by id, nothing decoded."""
        checked = [check_id(i) for i in ids]
        if not checked:
            return set()
        driver = await self._ready()
        return await driver.cancel_requested_among(checked)

    async def follow_cancel_requests(
        self,
        held: Callable[[], Collection[str]],
        on_requested: Callable[[set[str]], None],
        until: asyncio.Event,
    ) -> None:
        """A worker's watch: until ``until`` is set, call ``on_requested(ids)`` as soon as cancels of tasks in
        ``held()`` are requested (in-process at once, PostgreSQL by NOTIFY, SQLite by its commit watch)."""
        await _cancels.follow(await self._ready(), held, on_requested, until)

    async def retry(self, id: str) -> Task:
        task = await self._apply_one(check_id(id), RetryNow())
        self._wake()
        return task

    async def update(self, task: Task) -> Task:
        """Compare-and-set on ``task.version``: writes ``state``, ``attempts`` and ``run_at``."""
        if not isinstance(task, Task):
            raise errors.InvalidTask(f"expected a Task, got {type(task).__name__}")
        _state(task.state, optional=False)
        limits.integer(task.attempts, "attempts", 0)
        task = task.replace(run_at=check_aware(task.run_at, "run_at"))
        updated = await self._apply_one(check_id(task.id), Update(task))
        self._wake()
        return updated

    async def reap(self, *, limit: int | None = None) -> int:
        """Fail every claim whose lease timed out, as ``mark_failed`` would, and cancel every waiting task past
        its ``expires_at`` (failure type ``Expired``); returns how many tasks changed."""
        driver = await self._ready()
        total = 0
        while limit is None or total < limit:
            chunk = _BATCH if limit is None else min(_BATCH, limit - total)
            n = await driver.reap(chunk)
            total += n
            if n < chunk:
                break
        if total:
            self._wake()
            self._touched()
            if self._observers:
                for o in self._observers:
                    o.reaped(total)
        return total

    async def archive(self, before: datetime | None = None, *, older_than: float | timedelta | None = None) -> int:
        """Move ``done``/``dead``/``cancelled`` tasks finished at or before the cutoff to the archive."""
        if (before is None) == (older_than is None):
            raise errors.InvalidTask("archive() takes exactly one of before= or older_than=")
        if before is None:
            assert older_than is not None
            before = self.now() - timedelta(seconds=as_seconds(older_than, "older_than"))
        before = check_aware(before, "before")
        driver = await self._ready()
        total = 0
        while True:
            n = await driver.archive(before, _BATCH)
            total += n
            if n < _BATCH:
                return total

    async def archive_tasks(self, ids: Iterable[str]) -> int:
        """Move the finished (``done``/``dead``/``cancelled``) tasks among ``ids`` to the archive now.

        One transaction, moving each task as ``archive`` does; a task not finished (retried meanwhile, say)
        stays, and unknown or already archived ids are ignored. Returns how many moved.
        """
        if isinstance(ids, str):
            raise errors.InvalidTask("archive_tasks() takes a collection of ids, not one id")
        wanted = builtins.list(dict.fromkeys(check_id(i) for i in ids))  # each once, in the order given
        if not wanted:
            return 0
        driver = await self._ready()
        return await driver.archive_ids(wanted)

    # -- flow control (SPEC §9) -----------------------------------------------------------------

    async def pause_queue(self, name: str) -> None:
        """Claims skip the queue from now on (durable, across processes); running tasks finish."""
        driver = await self._ready()
        await driver.set_paused(check_queue(name), True)

    async def resume_queue(self, name: str) -> None:
        driver = await self._ready()
        await driver.set_paused(check_queue(name), False)
        self._wake()

    async def list_queues(self) -> builtins.list[QueueInfo]:
        """Every queue with tasks or a pause record: paused or not, counts per state, oldest ready, live workers."""
        driver = await self._ready()
        rows = await driver.queue_rows()
        beats = await driver.list_heartbeats(self._heartbeat_cutoff())
        return [
            QueueInfo(
                name=row.name,
                paused=row.paused,
                counts={state: row.counts.get(state, 0) for state in State},
                oldest_ready_at=row.oldest_ready_at,
                workers=sum(1 for b in beats if not b.queues or row.name in b.queues),
            )
            for row in rows
        ]

    async def activity(
        self, window: float | timedelta = 3600.0, bucket: float | timedelta = 60.0
    ) -> builtins.list[Activity]:
        """Tasks finished per ``bucket`` over the last ``window`` (oldest first, every slot present).

        The store keeps finishes per minute as they happen (a task reaching done, dead or cancelled counts
        in the minute of its ``finished_at``; archiving or retrying it later does not take that back), so a
        big store answers without counting its tasks. ``bucket`` is a whole number of minutes; the slots
        lie on that grid (counted from the Unix epoch) and the last one holds the store's clock now, so its
        count is of the part gone by. Finishes are kept for ``FINISHES_KEPT`` (7 days).
        """
        span = as_seconds(window, "window", positive=True)
        step = as_seconds(bucket, "bucket", positive=True)
        if step % 60:
            raise errors.InvalidTask(f"bucket must be a whole number of minutes, got {step:g} s")
        slots = math.ceil(span / step)
        if slots > 10_000:
            raise errors.InvalidTask(f"window / bucket gives {slots} slots; at most 10000")
        driver = await self._ready()
        now = self.now().timestamp()
        end = datetime.fromtimestamp((now // step + 1) * step, UTC)
        since = end - timedelta(seconds=slots * step)
        counts: builtins.list[dict[State, int]] = [{} for _ in range(slots)]
        for slot, state, n in await driver.finished_counts(since, step):
            if 0 <= slot < slots:
                counts[slot][state] = counts[slot].get(state, 0) + n
        return [
            Activity(
                start=since + timedelta(seconds=i * step),
                done=c.get(State.DONE, 0),
                dead=c.get(State.DEAD, 0),
                cancelled=c.get(State.CANCELLED, 0),
            )
            for i, c in enumerate(counts)
        ]

    async def dead_summaries(self, limit: int = 10_000) -> builtins.list[DeadSummary]:
        """The newest ``limit`` dead tasks (newest first) with only what grouping their failures needs: id,
        queue, kind, ``finished_at``, the failure's type and the start of its message (``DeadSummary``). Read
        along an index of dead tasks, never their payloads or tracebacks: cheap on a big store."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100_000:
            raise errors.InvalidTask(f"limit must be an int from 1 to 100000, got {limit!r}")
        driver = await self._ready()
        return await driver.dead_summaries(limit)

    async def vacuum(self) -> builtins.list[str]:
        """On PostgreSQL, VACUUM and ANALYZE the store's churning tables (tasks, the kept counts' deltas, ...) whose
        dead rows passed 5,000 plus 10% of their live rows, whether or not autovacuum runs: a queue table updates
        every row several times and deletes it at archive, and left to autovacuum's defaults (or with autovacuum
        off) it grows and slows every claim. Workers' maintenance calls this every ``vacuum_every`` (30 s).
        Returns the tables vacuumed; elsewhere a no-op."""
        driver = await self._ready()
        return await driver.vacuum()

    async def fold_counts(self) -> int:
        """Tidy the counts the store keeps for ``list_queues`` and ``activity`` (workers' maintenance does this
        every reap pass): on PostgreSQL fold the changes written since into the totals, and everywhere drop the
        per-minute finishes older than ``FINISHES_KEPT``. Returns how many rows it folded or dropped."""
        driver = await self._ready()
        return await driver.fold_counts(self.now() - FINISHES_KEPT)

    async def set_limit(
        self, key: str, concurrency: int | None = None, rate: int | None = None, per: float | timedelta = 1.0
    ) -> Limit:
        """Limit the tasks of ``concurrency_key=key``: at most ``concurrency`` claimed at once across every
        worker, at most ``rate`` claims per ``per`` seconds (a token bucket; see ``Limit``). Replaces a
        previous limit of the key."""
        limit = Limit(key=key, concurrency=concurrency, rate=rate, per=as_seconds(per, "per", positive=True))
        driver = await self._ready()
        await driver.put_limit(limit)
        self._wake()
        return limit

    async def clear_limit(self, key: str) -> bool:
        """Remove a key's limit (its tasks are unlimited again); False if it had none."""
        driver = await self._ready()
        removed = await driver.delete_limit(limits.name(key, "limit key"))
        if removed:
            self._wake()
        return removed

    async def list_limits(self) -> builtins.list[Limit]:
        driver = await self._ready()
        return await driver.list_limits()

    async def health(self, thresholds: Thresholds | None = None) -> HealthReport:
        """The store's health: sizes, dead tuples, vacuum, what holds back the xmin horizon, NOTIFY (see ``health``).

        What ``taskstore doctor`` prints and ``taskstore serve`` exports; ``thresholds`` say where a figure
        turns ``warn`` or ``bad``.
        """
        driver = await self._ready()
        return await driver.health(DEFAULT_THRESHOLDS if thresholds is None else thresholds)

    async def why(self, id: str) -> builtins.list[str]:
        """Every gate holding the task back, in plain words; empty when a claim would take it now.

        Archived tasks are read too (they have finished). ``NotFound`` when the id is unknown.
        """
        driver = await self._ready()
        task_id_ = check_id(id)
        try:
            task = await driver.get(task_id_)
        except errors.NotFound:
            try:
                task = await driver.get(task_id_, archived=True)
            except errors.NotFound:
                raise errors.NotFound(task_id_) from None
        now = self.now()
        gate, holders, paused = None, [], False
        if task.state not in TERMINAL_STATES:
            paused = task.queue in await driver.paused_queues()
            if task.concurrency_key is not None:
                gate = await driver.key_gate(task.concurrency_key)
                if gate is not None:
                    holders = await driver.claimed_with_key(task.concurrency_key, 10)
        workers = await driver.list_heartbeats(self._heartbeat_cutoff())
        facts = _why.Facts(
            task=task,
            now=now,
            paused=paused,
            gate=gate,
            holders=holders,
            workers=workers,
            worker_window=self.heartbeat_retention,
        )
        return _why.reasons(facts)

    # -- recurring schedules (SPEC §2, §8) -------------------------------------------------------

    async def add_recurring(self, recurring: RecurringTask) -> RecurringTask:
        """Add or replace a schedule by id. An unchanged schedule keeps its next slot."""
        if not isinstance(recurring, RecurringTask):
            raise errors.InvalidTask(f"expected a RecurringTask, got {type(recurring).__name__}")
        next_at = parse_schedule(recurring.schedule).next_slot(self.now())
        driver = await self._ready()
        stored = await driver.put_recurring(_recurring.to_row(recurring, self.codec, next_at))
        return _recurring.from_row(stored, self.codec)

    async def remove_recurring(self, id: str) -> bool:
        driver = await self._ready()
        return await driver.delete_recurring(check_id(id, "recurring id"))

    async def list_recurring(self) -> builtins.list[RecurringTask]:
        driver = await self._ready()
        return [_recurring.from_row(row, self.codec) for row in await driver.list_recurring()]

    async def enqueue_due_recurring(self) -> int:
        """Create the task of every schedule whose slot has come; returns how many were created.

        Safe in any number of processes at once: a slot's task id is derived from the schedule's id
        and the slot, so a slot creates one task, and ``next_at`` moves on by compare-and-set. A
        scheduler that was down fires only the latest missed slot, not every one it missed.
        """
        driver = await self._ready()
        now = self.now()
        created = 0
        for row in await driver.list_recurring():
            if row.next_at > now:
                continue
            try:
                created += await self._fire(driver, row, now)
            except errors.InvalidTask as exc:
                # One schedule that can no longer fire (no further cron slot, a template stored by an
                # older version that today's checks refuse) must not stop the others: park it.
                log.warning("recurring %r cannot fire and is parked: %s", row.id, exc)
                await driver.advance_recurring(row.id, row.next_at, limits.LATEST)
        if created:
            self._wake()
        return created

    async def _fire(self, driver: Driver, row: RecurringRow, now: datetime) -> int:
        schedule = parse_schedule(row.schedule)
        slot = schedule.latest_slot(now)
        created = 0
        if not (row.skip_if_outstanding and await driver.outstanding_count(row.id) > 0):
            new = _recurring.template_of(
                row, self.codec, id=slot_task_id(row.id, slot), run_at=slot, recurring_id=row.id
            )
            try:
                inserted = await driver.insert([NewRow(new=new, id=new.id or "", args=row.args)])
                created = 1
                if self._observers:  # not a unique template's holder handed back
                    _observe.enqueued(self._observers, [t for t in inserted if t.id == new.id])
            except errors.AlreadyExists:
                pass  # another scheduler fired this slot first
        try:
            following = schedule.next_slot(slot)
        except errors.InvalidTask as exc:  # its last slot (a cron year field) has fired
            log.warning("recurring %r has no further slot and is parked: %s", row.id, exc)
            following = limits.LATEST
        await driver.advance_recurring(row.id, row.next_at, following)
        return created

    # -- statuses (SPEC §4) ---------------------------------------------------------------------

    async def set_status(
        self,
        id: str,
        state: StatusState | str,
        payload: Any = None,
        error: Failure | Mapping[str, Any] | None = None,
        attempt: int = 0,
        meta: Mapping[str, Any] | None = None,
        ttl: float | timedelta | None = None,
    ) -> TaskStatus:
        """Overwrite the status of a task the store does not hold (one run elsewhere), keeping its created_at.

        ``error`` is a ``Failure`` (stored as its JSON, as a task's own failure is) or any JSON object.
        A task that lives in the store is its own status: setting one for it is ``InvalidTask``.
        """
        check_id(id, "status id")
        wanted = _status_state(state)
        if isinstance(error, Failure):
            error = error.to_json()
        fields = _mapping(meta, "status meta")
        if error is not None:
            _mapping(error, "status error")
        for value, what in ((payload, "status payload"), (error, "status error"), (fields, "status meta")):
            _json(value, what)
        limits.integer(attempt, "attempt", 0)
        driver = await self._ready()
        with contextlib.suppress(errors.NotFound):
            await driver.get(id)
            raise errors.InvalidTask(f"task {id!r} lives in this store: its status is its state")
        now = self.now()
        row = StatusRow(
            id,
            wanted.value,
            payload,
            None if error is None else dict(error),
            attempt,
            fields,
            now,
            now,
            now + timedelta(seconds=self._ttl(ttl)),
        )
        stored = await driver.put_status(row)
        self._touched()
        status = _statuses.status_from_row(stored)
        if FEED.active:
            FEED.publish((driver.wake_key, id), StatusChange(None, status))
        return status

    async def get_status(self, id: str) -> TaskStatus | None:
        """The task's status (from the task itself, live or archived), else its status record; None if neither."""
        driver = await self._ready()
        check_id(id, "status id")
        current = await self._current_status(driver, id)
        return None if current is None else current.status

    async def _current_status(self, driver: Driver, id: str) -> StatusChange | None:
        for archived in (False, True):
            with contextlib.suppress(errors.NotFound):
                task = self._decoded(await driver.get(id, archived=archived))
                return StatusChange(task.version, _statuses.status_of(task))
        row = await driver.get_status(id)
        return None if row is None else StatusChange(None, _statuses.status_from_row(row))

    async def expire(self, id: str, ttl: float | timedelta) -> None:
        """A status record now expires ``ttl`` from now; tasks follow the archive instead; unknown ids: no-op."""
        driver = await self._ready()
        await driver.expire_status(check_id(id, "status id"), self.now() + timedelta(seconds=self._ttl(ttl)))

    async def list_statuses(
        self,
        state: StatusState | str | None = None,
        queue: str | None = None,
        meta: Mapping[str, Any] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[TaskStatus]:
        """Statuses newest first, of live tasks and of status records; expired records are left out.

        ``meta`` filters on keys (``{k: None}``: key present); a task's meta is its context plus queue and kind.
        """
        wanted = _status_state(state) if state is not None else None
        if queue is not None:
            check_queue(queue)
        _limit(limit)
        seq, record, tasks_done, records_done = (
            _statuses.decode_cursor(cursor) if cursor is not None else (None, None, False, False)
        )
        filters = _mapping(meta, "meta filter") or None
        driver = await self._ready()
        chunk = max(limit + 1, 64)

        async def task_source() -> AsyncGenerator[tuple[TaskStatus, int], None]:
            after = seq
            while not tasks_done:
                query = ListQuery(
                    state=None if wanted is None else _statuses.STATUS_TO_TASK[wanted],
                    queue=queue,
                    after_seq=after,
                    limit=chunk,
                    descending=True,
                )
                rows = await driver.list_tasks(query)
                for task in rows:
                    status = _statuses.status_of(self._decoded(task))
                    if _statuses.meta_matches(status.meta, filters):
                        yield status, task.seq
                if len(rows) < chunk:
                    return
                after = rows[-1].seq

        async def record_source() -> AsyncGenerator[tuple[TaskStatus, tuple[int, str]], None]:
            before = None if record is None else (_from_us(record[0]), record[1])
            while not records_done:
                rows = await driver.list_statuses(None if wanted is None else wanted.value, queue, before, chunk)
                for row in rows:
                    status = _statuses.status_from_row(row)
                    if _statuses.meta_matches(status.meta, filters):
                        yield status, (_to_us(row.created_at), row.id)
                if len(rows) < chunk:
                    return
                before = (rows[-1].created_at, rows[-1].id)

        tasks, records = task_source(), record_source()
        head_t = await anext(tasks, None)
        head_r = await anext(records, None)
        items: builtins.list[TaskStatus] = []
        last_seq, last_record = seq, record
        while len(items) < limit and (head_t is not None or head_r is not None):
            take_task = head_r is None or (
                head_t is not None and (head_t[0].created_at, head_t[0].id) >= (head_r[0].created_at, head_r[0].id)
            )
            if take_task:
                assert head_t is not None
                items.append(head_t[0])
                last_seq = head_t[1]
                head_t = await anext(tasks, None)
            else:
                assert head_r is not None
                items.append(head_r[0])
                last_record = head_r[1]
                head_r = await anext(records, None)
        more = head_t is not None or head_r is not None
        await tasks.aclose()
        await records.aclose()
        # The next page resumes each source after the last item taken from it; an exhausted source stays done.
        next_cursor = _statuses.encode_cursor(last_seq, last_record, head_t is None, head_r is None) if more else None
        return Page(items=items, next_cursor=next_cursor)

    async def watch(self, id: str, *, poll_interval: float | None = None) -> AsyncGenerator[TaskStatus, None]:
        """Yield the current status (if any), then every change, and end after a terminal status.

        Every change made in this process (through any store on the same database) is delivered in the
        order it was made, however slowly the consumer reads: each watcher has its own queue of them
        (see ``_feed``). Another process's change wakes the watcher through the backend (PostgreSQL
        NOTIFY; SQLite's watch of its WAL-index header) or is found by polling every ``poll_interval``;
        SQLite compares ``PRAGMA data_version`` first and reads only when the database moved. Quick
        successive changes made elsewhere may be merged; the first and the terminal status are always
        delivered, and nothing is delivered out of order.
        """
        check_id(id, "status id")
        driver = await self._ready()
        interval = self.poll_interval if poll_interval is None else as_seconds(poll_interval, "poll_interval")
        wake_key, feed_key = ("status", driver.wake_key), (driver.wake_key, id)
        waiter = HUB.subscribe(wake_key)
        feed = FEED.subscribe(feed_key, waiter)  # before the first read: no change made here is missed
        delivered = _Delivered()
        marker: Any = object()
        read_back = True
        try:
            while True:
                while feed.changes:
                    change = feed.changes.popleft()
                    if change.status is None:
                        read_back = True
                    elif delivered.take(change):
                        yield change.status
                        if change.status.state.is_terminal:
                            return
                moved = await driver.change_marker()
                if read_back or moved is None or moved != marker:
                    marker = moved
                    current = await self._current_status(driver, id)
                    if feed.changes:
                        read_back = True  # changed here meanwhile: those changes first, in order, then read again
                        continue
                    read_back = False
                    if current is not None and current.status is not None and delivered.take(current):
                        yield current.status
                        if current.status.state.is_terminal:
                            return
                        continue
                await waiter.wait(max(interval, 0.001))
        finally:
            FEED.unsubscribe(feed_key, feed)
            HUB.unsubscribe(wake_key, waiter)

    # -- groups and chords (SPEC §4) ------------------------------------------------------------

    async def init_group(
        self, id: str, expected: int, meta: Mapping[str, Any] | None = None, ttl: float | timedelta | None = None
    ) -> GroupStatus:
        """Create a group expecting ``expected`` members, or re-initialise it (results and chord claim cleared)."""
        check_id(id, "group id")
        limits.integer(expected, "expected", 0)
        fields = _mapping(meta, "group meta")
        _json(fields, "group meta")
        driver = await self._ready()
        row = await driver.put_group(id, expected, fields, self.now() + timedelta(seconds=self._ttl(ttl)))
        return self._group_status(row)

    async def create_group(
        self,
        id: str,
        members: Iterable[NewTask],
        *,
        callback: NewTask | None = None,
        meta: Mapping[str, Any] | None = None,
        ttl: float | timedelta | None = None,
    ) -> builtins.list[Task]:
        """Enqueue a group: its members and (for a chord) its callback's template, all or nothing.

        Each member gets ``group_id=id`` (an id of its own defaults to ``"{id}:{index}"``). The group *is*
        its members: when the last of them ends ``done`` — in the same transaction as that completion —
        the callback is enqueued exactly once, with id ``callback.id`` or ``"{id}:callback"`` and the
        members' results (in member order) as its first argument. Any member ending ``dead`` or
        ``cancelled`` fails the group. The group is kept while a member is unfinished, then ``ttl`` more.
        """
        check_id(id, "group id")
        news = builtins.list(members)
        if not news:
            raise errors.InvalidTask("a group needs at least one member")
        for new in news:
            if not isinstance(new, NewTask):
                raise errors.InvalidTask(f"expected a NewTask, got {type(new).__name__}")
            if new.group_id not in (None, id):
                raise errors.InvalidTask(f"member {new.id!r} names another group ({new.group_id!r})")
            if new.unique_key is not None:
                # A member handed back as another task's duplicate would leave the group without its member.
                raise errors.InvalidTask(f"a group member cannot be unique (member {new.id!r} has a unique_key)")
        news = [
            dataclasses.replace(new, id=f"{id}:{i}" if new.id is None else new.id, group_id=id)
            for i, new in enumerate(news)
        ]
        fields = _mapping(meta, "group meta")
        _json(fields, "group meta")
        seconds = self._ttl(ttl)
        trace = _otel.carrier()
        chord = None
        if callback is not None:
            if not isinstance(callback, NewTask):
                raise errors.InvalidTask(f"expected a NewTask callback, got {type(callback).__name__}")
            if trace is not None:  # enqueued later, by the last member's completion, for this caller
                callback = _otel.traced(callback, trace)
            template = _chord_template(callback)
            chord = ChordRow(
                id=check_id(f"{id}:callback" if callback.id is None else callback.id, "callback id"),
                template=template_json(callback),
                args=encode(self.codec, template, "callback args"),
            )
        rows = self._rows(news, trace)
        group = self._new_group(id, [r.id for r in rows], fields, seconds, callback=chord)
        driver = await self._ready()
        created = await driver.insert_group(group, rows)
        self._wake()
        self._touched()
        if self._observers:
            _observe.enqueued(self._observers, created)
        return created

    async def create_chain(
        self,
        id: str,
        links: Iterable[NewTask],
        *,
        meta: Mapping[str, Any] | None = None,
        ttl: float | timedelta | None = None,
    ) -> Task:
        """Enqueue a chain: its first link now, each later one once the link before it is ``done``.

        The links are the members of group ``id`` (a link's id defaults to ``"{id}:{index}"``). In the
        transaction that ends link *i* ``done``, link *i+1* is inserted, exactly once, with link *i*'s
        result as its first argument (before its own ``{"args": [...], "kwargs": {...}}``). A link that
        ends ``dead`` or ``cancelled`` fails the group and stops the chain (a manual ``retry`` of it
        resumes it). The group is kept while a link is unfinished, then ``ttl`` more. Returns the first link.
        """
        check_id(id, "chain id")
        news = builtins.list(links)
        if not news:
            raise errors.InvalidTask("a chain needs at least one link")
        for i, new in enumerate(news):
            if not isinstance(new, NewTask):
                raise errors.InvalidTask(f"expected a NewTask, got {type(new).__name__}")
            if new.group_id not in (None, id):
                raise errors.InvalidTask(f"link {new.id!r} names another group ({new.group_id!r})")
            if i and new.run_at is not None:
                raise errors.InvalidTask(
                    "a chain's link after the first takes no run_at: it runs when the one before is done"
                )
        news = [
            dataclasses.replace(new, id=check_id(f"{id}:{i}" if new.id is None else new.id, "link id"), group_id=id)
            for i, new in enumerate(news)
        ]
        ids = [cast(str, new.id) for new in news]
        if len(set(ids)) < len(ids):
            raise errors.InvalidTask("two links of the chain share an id")
        fields = _mapping(meta, "group meta")
        _json(fields, "group meta")
        trace = _otel.carrier()
        if trace is not None:  # every link carries the caller's trace, the later ones inserted by completions
            news = [_otel.traced(new, trace) for new in news]
        later = tuple(
            ChordRow(
                id=ids[i],
                template=link_template_json(new),
                args=encode(self.codec, _chord_template(new, "a chain link's"), "link args"),
            )
            for i, new in enumerate(news[1:], start=1)
        )
        rows = self._rows(news[:1], None)  # traced above
        group = self._new_group(id, ids, fields, self._ttl(ttl), links=later)
        driver = await self._ready()
        (first,) = await driver.insert_group(group, rows)
        self._wake()
        self._touched()
        if self._observers:
            _observe.enqueued(self._observers, [first])
        return first

    def _new_group(
        self,
        id: str,
        member_ids: Sequence[str],
        meta: dict[str, Any],
        ttl: float,
        *,
        callback: ChordRow | None = None,
        links: tuple[ChordRow, ...] | None = None,
    ) -> GroupRow:
        now = self.now()
        return GroupRow(
            id=id,
            expected=len(member_ids),
            results={},
            meta=meta,
            chord_claimed=False,
            chord_callback_id=None,
            chord_dispatched_at=None,
            created_at=now,
            updated_at=now,
            expires_at=now + timedelta(seconds=ttl),
            member_ids=tuple(member_ids),
            callback=callback,
            ttl=ttl,
            links=links,
        )

    async def add_group_result(self, group_id: str, status: TaskStatus) -> GroupStatus | None:
        """Record a member's status (a member reported twice counts once); ``None`` if the group is gone."""
        check_id(group_id, "group id")
        if not isinstance(status, TaskStatus):
            raise errors.InvalidTask(f"expected a TaskStatus, got {type(status).__name__}")
        check_id(status.id, "status id")
        _status_state(status.state)
        limits.integer(status.attempt, "attempt", 0)
        document = status.to_json()
        _json(document, "status")
        driver = await self._ready()
        row = await driver.add_group_result(group_id, status.id, document)
        return None if row is None else self._group_status(row)

    async def get_group(self, id: str) -> GroupStatus | None:
        """The group: statuses recorded with ``add_group_result``, then its member tasks that have ended."""
        driver = await self._ready()
        row = await driver.get_group(check_id(id, "group id"))
        return None if row is None else self._group_status(row)

    def _group_status(self, row: GroupRow) -> GroupStatus:
        meta = dict(row.meta)
        if row.chord_claimed:
            meta["chord.claimed"] = True
            meta["chord.callback_task_id"] = row.chord_callback_id
            at = row.chord_dispatched_at
            meta["chord.dispatched_at"] = None if at is None else at.isoformat()
        results = {member: TaskStatus.from_json(status) for member, status in row.results.items()}
        for task in row.members:
            if task.state.is_terminal:
                results[task.id] = _statuses.status_of(self._decoded(task))
        return GroupStatus(
            id=row.id,
            expected=row.expected,
            results=results,
            meta=meta,
            created_at=row.created_at,
            updated_at=row.updated_at,
            expires_at=row.expires_at,
        )

    async def claim_chord(
        self, group_id: str, callback_id: str | None = None, dispatched_at: datetime | None = None
    ) -> bool:
        """True for exactly one caller, however many race; ``False`` for a missing or expired group."""
        check_id(group_id, "group id")
        if callback_id is not None:
            check_id(callback_id, "callback id")
        when = check_aware(dispatched_at, "dispatched_at") if dispatched_at is not None else self.now()
        driver = await self._ready()
        return await driver.claim_chord(group_id, callback_id, when)

    async def purge_statuses(self) -> int:
        """Delete expired status records (the maintenance loop does this)."""
        driver = await self._ready()
        return await driver.purge_statuses()

    async def purge_groups(self) -> int:
        """Delete expired groups (the maintenance loop does this)."""
        driver = await self._ready()
        return await driver.purge_groups()

    def _ttl(self, ttl: float | timedelta | None) -> float:
        return self.status_ttl if ttl is None else as_seconds(ttl, "ttl", positive=True)

    # -- worker heartbeats (SPEC §4) -------------------------------------------------------------

    async def set_worker_heartbeat(self, heartbeat: WorkerHeartbeat) -> WorkerHeartbeat:
        """Upsert a worker's heartbeat; its ``timestamp`` is set from the store's clock."""
        if not isinstance(heartbeat, WorkerHeartbeat):
            raise errors.InvalidTask(f"expected a WorkerHeartbeat, got {type(heartbeat).__name__}")
        _check_heartbeat(heartbeat)
        if heartbeat.started_at is not None:  # in UTC when its offset is one PostgreSQL cannot read
            heartbeat = dataclasses.replace(heartbeat, started_at=check_aware(heartbeat.started_at, "started_at"))
        driver = await self._ready()
        return await driver.put_heartbeat(heartbeat)

    async def get_worker_heartbeat(self, worker_id: str) -> WorkerHeartbeat | None:
        """The worker's last heartbeat, or ``None`` when there is none within the retention window."""
        driver = await self._ready()
        return await driver.get_heartbeat(check_id(worker_id, "worker_id"), self._heartbeat_cutoff())

    async def list_worker_heartbeats(self) -> builtins.list[WorkerHeartbeat]:
        driver = await self._ready()
        return await driver.list_heartbeats(self._heartbeat_cutoff())

    async def purge_worker_heartbeats(self) -> int:
        """Delete heartbeats older than the retention window (the maintenance loop does this)."""
        driver = await self._ready()
        return await driver.purge_heartbeats(self._heartbeat_cutoff())

    def _heartbeat_cutoff(self) -> datetime:
        return self.now() - timedelta(seconds=self.heartbeat_retention)

    # -- the worker side (SPEC §5) ---------------------------------------------------------------

    async def poll(
        self, worker_id: str, queues: str | Iterable[str] | None = None, *, batch: int = 1, block_for: float = 1.0
    ) -> AsyncGenerator[Task, None]:
        """Yield claimed tasks as the consumer asks for them; idles in blocking claims, never busy-loops.

        With ``batch > 1`` it claims up to that many at a time and hands them out one by one; a task
        that waited in the buffer for over a third of its lease (on the store's clock) is renewed
        (``report_in``) before it is handed out, and one whose lease was lost meanwhile is skipped.
        Tasks claimed but not handed out are released (``unclaim``) when the iteration stops.
        """
        qs = _queues(queues)
        _limit(batch, "batch")
        pending: builtins.list[Task] = []
        try:
            while True:
                if not pending:
                    claimed = await self.claim(worker_id, qs, limit=batch, block_for=block_for, at_least=1)
                    pending = claimed[::-1]
                    continue
                task = pending.pop()
                lease = task.claim
                if (
                    lease is not None
                    and (lease.times_out_at - self.now()).total_seconds() < task.processing_timeout * 2 / 3
                ):
                    try:
                        task = await self.report_in(task)
                    except errors.LeaseError:
                        continue  # reaped or taken over while it waited here
                yield task
        finally:
            if pending:
                await self._release_shielded(pending)

    def __repr__(self) -> str:
        from ._connect import redact  # _connect builds stores: imported late, only to print

        return f"<taskstore.Store {redact(self.url) if self.url else type(self._driver).__name__}>"
