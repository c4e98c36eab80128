"""Rows of the side tables (recurring schedules, statuses, groups, heartbeats, limits) as the values the store uses.

SQLite and PostgreSQL keep these tables with the same columns in the same order and differ only in how a
value comes back: times as microseconds or as datetimes, JSON as text or as parsed objects. So each mapper
takes those conversions (as ``_columns.task_from_columns`` does for tasks); ``document`` and ``blob`` are
only called on non-NULL values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..backend import ChordRow, GroupRow, RecurringRow, StatusRow
from ..model import Limit, WorkerHeartbeat
from . import _groups

Time = Callable[[Any], datetime]
Document = Callable[[Any], Any]
Blob = Callable[[Any], bytes]


def same(value: Any) -> Any:
    """The conversion for a value the database driver already returns as the store wants it."""
    return value


def recurring_from_row(r: Any, time: Time, blob: Blob) -> RecurringRow:
    """(id, schedule, template, args, skip_if_outstanding, next_at, owner); NULL args read as JSON null."""
    return RecurringRow(
        id=r[0],
        schedule=r[1],
        template=r[2],
        args=b"null" if r[3] is None else blob(r[3]),
        skip_if_outstanding=bool(r[4]),
        next_at=time(r[5]),
        owner=r[6],
    )


def status_from_row(r: Any, time: Time, document: Document) -> StatusRow:
    """(id, state, payload, error, attempt, meta, queue, created_at, updated_at, expires_at)."""
    return StatusRow(
        id=r[0],
        state=r[1],
        payload=None if r[2] is None else document(r[2]),
        error=None if r[3] is None else document(r[3]),
        attempt=r[4],
        meta=document(r[5]),
        created_at=time(r[7]),
        updated_at=time(r[8]),
        expires_at=time(r[9]),
    )


def group_from_row(r: Any, time: Time, document: Document, blob: Blob) -> GroupRow:
    """A group row, with its chord callback's columns (11-13) and its chain's later links (15)."""
    return GroupRow(
        id=r[0],
        expected=r[1],
        results=document(r[2]),
        meta=document(r[3]),
        chord_claimed=bool(r[4]),
        chord_callback_id=r[5],
        chord_dispatched_at=None if r[6] is None else time(r[6]),
        created_at=time(r[7]),
        updated_at=time(r[8]),
        expires_at=time(r[9]),
        member_ids=None if r[10] is None else tuple(document(r[10])),
        callback=None if r[11] is None else ChordRow(id=r[11], template=r[12], args=blob(r[13])),
        ttl=r[14],
        links=_groups.links_from_json(r[15]),
    )


def heartbeat_from_row(r: Any, time: Time, document: Document) -> WorkerHeartbeat:
    """(worker_id, queues, inflight, host, pid, version, started_at, timestamp, extras)."""
    return WorkerHeartbeat(
        worker_id=r[0],
        queues=tuple(document(r[1])),
        inflight=r[2],
        host=r[3],
        pid=r[4],
        version=r[5],
        started_at=None if r[6] is None else time(r[6]),
        timestamp=time(r[7]),
        extras=None if r[8] is None else document(r[8]),
    )


def limit_from_row(r: Any) -> Limit:
    """A ``limits`` row (key, concurrency, rate, per, ...) as the ``Limit`` it stores."""
    return Limit(key=r[0], concurrency=r[1], rate=r[2], per=r[3])
