"""Mapping between taskstore's values and what the Redis backend stores: a task as a hash, the rest as JSON.

A task's hash has one field per column of the SQL backends' ``tasks`` table (``FIELDS``, in that table's column
order, so ``_columns.task_from_columns`` builds the ``Task``); a NULL column is an absent field. Timestamps are
integer microseconds since the epoch (exact in a Lua number, a double, up to year 2255), so the Lua scripts
compare and write them without losing a microsecond. ``om`` (not a column) is the task's member in its queue's
ready set: its claim order as a string (see ``order_member``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from ...backend import ChordRow, GroupRow, RecurringRow, StatusRow
from ...codec import dump_json
from ...model import Limit, State, Task, WorkerHeartbeat
from .._columns import failures_json, hold_text, policy_from_text, policy_spec, task_from_columns
from .._groups import links_from_json, links_json

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

# Column order of ``_columns.task_from_columns``; the Lua scripts name the same fields.
FIELDS = (
    "seq",
    "id",
    "queue",
    "kind",
    "args",
    "ctx",
    "ref",
    "prio",
    "run",
    "maxa",
    "att",
    "pto",
    "retry",
    "state",
    "cw",
    "ct",
    "cat",
    "cto",
    "rat",
    "rdata",
    "creq",
    "resat",
    "resval",
    "resfail",
    "created",
    "updated",
    "enq",
    "fin",
    "v",
    "rec",
    "grp",
    "uk",
    "hold",
    "until",
    "ck",
    "exp",
    "fails",
)
_INTS = frozenset({0, 7, 8, 9, 10, 16, 17, 18, 20, 21, 24, 25, 26, 27, 28, 33, 35})
_TEXTS = frozenset({1, 2, 3, 6, 12, 13, 14, 15, 29, 30, 31, 32, 34})
_FLOATS = frozenset({11})
# Widths of the ready-set member's two numbers: run_at in microseconds (17 digits reach year 5138) and seq.
RUN_DIGITS = 17
SEQ_DIGITS = 15


def to_us(value: datetime) -> int:
    return (value - EPOCH) // _US


def us_or_none(value: datetime | None) -> int | None:
    return None if value is None else (value - EPOCH) // _US


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


# The timestamps of tasks read together mostly repeat (created by one insert, claimed by one claim: the same
# microsecond), and a datetime is immutable: a cached one costs a tenth of making it (0.3 against 3.5 us here).
_time = lru_cache(maxsize=4096)(from_us)


def order_member(task: Task) -> str:
    """The task's member in its queue's ready set, whose score is ``-priority``.

    Members of one score sort as strings, so fixed-width ``run_at`` then ``seq`` then the id give exactly
    ``transitions.claim_order``; the claim script reads the id back from offset ``RUN_DIGITS + SEQ_DIGITS``.
    """
    return f"{max(to_us(task.run_at), 0):0{RUN_DIGITS}d}{task.seq:0{SEQ_DIGITS}d}{task.id}"


def encode_task(task: Task, args: bytes | None) -> dict[str, Any]:
    """The task's hash, without its absent (NULL) fields; ``args`` is the encoded payload to store."""
    c = task.claim
    report = c.last_report if c is not None else None
    res = task.result
    values: tuple[Any, ...] = (
        task.seq,
        task.id,
        task.queue,
        task.kind,
        args,
        None if task.context is None else dump_json(task.context, "context"),
        task.reference_id,
        task.priority,
        to_us(task.run_at),
        task.max_attempts,
        task.attempts,
        repr(float(task.processing_timeout)),
        policy_spec(task.retry),
        task.state.value,
        None if c is None else c.worker_id,
        None if c is None else c.token,
        None if c is None else to_us(c.claimed_at),
        None if c is None else to_us(c.times_out_at),
        None if report is None else to_us(report.at),
        None if report is None or report.data is None else dump_json(report.data, "report data"),
        1 if task.cancel_requested else 0,
        None if res is None else to_us(res.at),
        None if res is None else res.value,
        None if res is None or res.failure is None else dump_json(res.failure.to_json(), "failure"),
        to_us(task.created_at),
        to_us(task.updated_at),
        to_us(task.last_enqueued_at),
        us_or_none(task.finished_at),
        task.version,
        task.recurring_id,
        task.group_id,
        task.unique_key,
        hold_text(task.unique_hold),
        us_or_none(task.unique_until),
        task.concurrency_key,
        us_or_none(task.expires_at),
        failures_json(task),
    )
    fields = {name: value for name, value in zip(FIELDS, values, strict=True) if value is not None}
    fields["om"] = order_member(task)
    return fields


def _blob(value: Any) -> bytes:
    return bytes(value)


def decode_task(raw: Sequence[Any]) -> Task | None:
    """A task from ``HMGET key *FIELDS`` (None when the hash does not exist)."""
    if raw[1] is None:
        return None
    row: list[Any] = list(raw)
    for i in _INTS:
        if row[i] is not None:
            row[i] = int(row[i])
    for i in _TEXTS:
        if row[i] is not None:
            row[i] = row[i].decode()
    row[11] = float(row[11])
    return task_from_columns(row, _time, json.loads, _blob, policy_from_text)


def _j(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_BLOBS = (4, 22)  # args, result value: bytes as stored


def decode_packed(raw: bytes) -> Task | None:
    """A task from ``cjson.encode(HMGET key *FIELDS)`` as the scripts return it (None when the hash does not
    exist): one reply per task instead of one per field.

    Lua's cjson writes a stored value's bytes as they are (escaping only control characters, quotes, ``\\``
    and ``/``), so a payload need not be UTF-8: decoded with ``surrogateescape``, its bytes come back exactly.
    """
    row: list[Any] = json.loads(raw.decode("utf-8", "surrogateescape"))
    if row[1] is False:
        return None
    row = [None if v is False else v for v in row]
    for i in _INTS:
        if row[i] is not None:
            row[i] = int(row[i])
    for i in _BLOBS:
        if row[i] is not None:
            row[i] = row[i].encode("utf-8", "surrogateescape")
    row[11] = float(row[11])
    return task_from_columns(row, _time, json.loads, _blob, policy_from_text)


def recurring_json(row: RecurringRow) -> str:
    return _j(
        {
            "id": row.id,
            "schedule": row.schedule,
            "template": row.template,
            "args": _b64(row.args),
            "skip": row.skip_if_outstanding,
            "next_at": to_us(row.next_at),
            "owner": row.owner,
        }
    )


def recurring_from(text: bytes) -> RecurringRow:
    d = json.loads(text)
    return RecurringRow(
        d["id"], d["schedule"], d["template"], base64.b64decode(d["args"]), d["skip"], from_us(d["next_at"]), d["owner"]
    )


def status_json(row: StatusRow) -> str:
    return _j(
        {
            "id": row.id,
            "state": row.state,
            "payload": row.payload,
            "error": row.error,
            "attempt": row.attempt,
            "meta": row.meta,
            "created_at": to_us(row.created_at),
            "updated_at": to_us(row.updated_at),
            "expires_at": to_us(row.expires_at),
        }
    )


def status_from(text: bytes) -> StatusRow:
    d = json.loads(text)
    return StatusRow(
        d["id"],
        d["state"],
        d["payload"],
        d["error"],
        d["attempt"],
        d["meta"],
        from_us(d["created_at"]),
        from_us(d["updated_at"]),
        from_us(d["expires_at"]),
    )


def group_json(group: GroupRow) -> str:
    """The group as stored: everything but its member tasks, which are read from the tasks themselves."""
    cb = group.callback
    return _j(
        {
            "id": group.id,
            "expected": group.expected,
            "results": group.results,
            "meta": group.meta,
            "claimed": group.chord_claimed,
            "callback_id": group.chord_callback_id,
            "dispatched_at": us_or_none(group.chord_dispatched_at),
            "created_at": to_us(group.created_at),
            "updated_at": to_us(group.updated_at),
            "expires_at": to_us(group.expires_at),
            "member_ids": None if group.member_ids is None else list(group.member_ids),
            "callback": None if cb is None else {"id": cb.id, "template": cb.template, "args": _b64(cb.args)},
            "ttl": group.ttl,
            "links": None if group.links is None else links_json(group.links),
        }
    )


def group_from(text: bytes) -> GroupRow:
    d = json.loads(text)
    cb = d["callback"]
    return GroupRow(
        id=d["id"],
        expected=d["expected"],
        results=d["results"],
        meta=d["meta"],
        chord_claimed=d["claimed"],
        chord_callback_id=d["callback_id"],
        chord_dispatched_at=None if d["dispatched_at"] is None else from_us(d["dispatched_at"]),
        created_at=from_us(d["created_at"]),
        updated_at=from_us(d["updated_at"]),
        expires_at=from_us(d["expires_at"]),
        member_ids=None if d["member_ids"] is None else tuple(d["member_ids"]),
        callback=None if cb is None else ChordRow(cb["id"], cb["template"], base64.b64decode(cb["args"])),
        ttl=d["ttl"],
        links=links_from_json(d["links"]),
    )


def heartbeat_json(hb: WorkerHeartbeat) -> str:
    return _j(
        {
            "worker_id": hb.worker_id,
            "queues": list(hb.queues),
            "inflight": hb.inflight,
            "host": hb.host,
            "pid": hb.pid,
            "version": hb.version,
            "started_at": us_or_none(hb.started_at),
            "timestamp": us_or_none(hb.timestamp),
            "extras": None if hb.extras is None else dict(hb.extras),
        }
    )


def heartbeat_from(text: bytes) -> WorkerHeartbeat:
    d = json.loads(text)
    return WorkerHeartbeat(
        worker_id=d["worker_id"],
        queues=tuple(d["queues"]),
        inflight=d["inflight"],
        host=d["host"],
        pid=d["pid"],
        version=d["version"],
        started_at=None if d["started_at"] is None else from_us(d["started_at"]),
        timestamp=None if d["timestamp"] is None else from_us(d["timestamp"]),
        extras=d["extras"],
    )


def limit_fields(limit: Limit) -> dict[str, str]:
    """A limit's own fields in its gate hash (the bucket's ``tok``/``at`` sit beside them); absent is None."""
    fields = {"per": repr(float(limit.per))}
    if limit.concurrency is not None:
        fields["c"] = str(limit.concurrency)
    if limit.rate is not None:
        fields["r"] = str(limit.rate)
    return fields


def limit_from(key: str, raw: Sequence[Any]) -> Limit:
    """``HMGET gate c r per``."""
    c, r, per = raw
    return Limit(key, None if c is None else int(c), None if r is None else int(r), float(per))


__all__ = ["FIELDS", "State", "decode_packed", "decode_task", "encode_task", "from_us", "to_us"]
