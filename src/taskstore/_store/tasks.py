"""Tasks: create, read, the lease holder's fenced writes and the admin writes (SPEC §7)."""

from __future__ import annotations

import asyncio
import builtins
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from .. import _cancels, _joins, _observe, _otel, errors, limits
from .._feed import FEED, StatusChange
from .._wakeup import HUB, cancel_key
from ..backend import (
    Change,
    ChunkedInsert,
    Completion,
    ListQuery,
    NewRow,
    Outcome,
)
from ..changes import Cancel, MarkCancelled, MarkFailed, ReportIn, RetryNow, Unclaim, Update
from ..codec import dump_json, encode
from ..model import (
    Claim,
    Failure,
    NewTask,
    Page,
    State,
    Task,
    as_seconds,
    check_aware,
    check_id,
    check_kind,
    check_queue,
)
from .core import (
    _BATCH,
    StoreCore,
    _json,
    _lease_of,
    _limit,
    _state,
)


def _encode_cursor(task: Task) -> str:
    return f"s{task.seq}"


_CURSOR = re.compile(r"s[0-9]{1,18}")  # a sequence number: 18 digits always fit a 64-bit integer


def _decode_cursor(cursor: str) -> int:
    if not isinstance(cursor, str) or _CURSOR.fullmatch(cursor) is None:
        raise errors.InvalidTask(f"invalid cursor {cursor!r}")
    return int(cursor[1:])


class StoreTasks(StoreCore):
    """Create, read and change tasks."""

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
        if not isinstance(news, builtins.list | tuple):
            news = builtins.list(news)
        trace = _otel.carrier()
        chunked = cast("ChunkedInsert", self._driver) if hasattr(self._driver, "insert_chunked") else None
        rows: builtins.list[NewRow]
        if conn is None and chunked is not None and len(news) > chunked.insert_chunk and _all_tasks(news):
            # A large batch: each chunk is validated and encoded while the server inserts the one before; a bad
            # task in any chunk still inserts nothing.
            self._check_expiry(news)
            await self._ready()
            rows = []
            size = chunked.insert_chunk

            def chunks() -> Iterator[builtins.list[NewRow]]:
                for start in range(0, len(news), size):
                    chunk = self._rows(news[start : start + size], trace)
                    rows.extend(chunk)
                    yield chunk

            stored = await chunked.insert_chunked(news, chunks())  # every chunk taken by the time it returns
        else:
            rows = self._rows(news, trace)
            if not rows:
                raise errors.InvalidTask("create_many needs at least one task")
            self._check_expiry([row.new for row in rows])
            if conn is not None:
                return await self._create_joined(rows, conn)
            driver = await self._ready()
            stored = await driver.insert(rows, None)
        created = stored
        if any(task.args is not row.new.args for task, row in zip(stored, rows, strict=True)):
            created, stored = self._deduped(rows, stored)
        self._stored(stored)
        return created

    def _check_expiry(self, news: Sequence[NewTask]) -> None:
        """A task that would expire before it is created is refused (the batch with it)."""
        if any(new.expires_at is not None for new in news):
            now = self.now()
            for new in news:
                expires = new.expires_at
                if expires is not None and expires <= now:
                    raise errors.InvalidTask(
                        f"expires_at {expires.isoformat()} is not in the future (now {now.isoformat()})"
                    )

    def _stored(self, stored: Sequence[Task]) -> None:
        """New tasks in the store: wake claimers and status watchers, tell the observers."""
        if stored:
            self._wake()
            self._touched()
            self._publish(stored, raw=True)
            if self._observers:
                _observe.enqueued(self._observers, stored)

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


def _all_tasks(news: Sequence[object]) -> bool:
    """Only ``NewTask``s: a batch that may go in chunks (anything else goes whole, for _rows to refuse)."""
    return all(isinstance(new, NewTask) for new in news)
