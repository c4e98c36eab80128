"""Statuses (SPEC §4): status records of tasks run elsewhere, and watching a status change."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import _statuses, errors, limits
from .._feed import FEED, StatusChange
from .._wakeup import HUB
from ..backend import (
    Driver,
    ListQuery,
    StatusRow,
)
from ..model import (
    Failure,
    Page,
    StatusState,
    TaskStatus,
    as_seconds,
    check_id,
    check_queue,
)
from .core import (
    StoreCore,
    _json,
    _limit,
    _mapping,
    _status_state,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_us(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


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


class StoreStatuses(StoreCore):
    """Set, read, list and watch task statuses."""

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

    async def purge_statuses(self) -> int:
        """Delete expired status records (the maintenance loop does this)."""
        driver = await self._ready()
        return await driver.purge_statuses()
