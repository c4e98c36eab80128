"""The result backend's view of tasks: one documented mapping from task states to statuses.

| task state  | status      |
|-------------|-------------|
| queued      | queued      |
| claimed     | running     |
| failed      | retried     |  (waiting for its next attempt)
| done        | succeeded   |
| dead        | failed      |
| cancelled   | cancelled   |

A task that lives in the store *is* its status (one source of truth): ``payload`` is its result
value, ``error`` its last failure, ``attempt`` its attempts and ``meta`` its context plus ``queue`` and
``kind``. Status-only records hold tasks the store never saw (run elsewhere) until they expire.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from . import limits
from .backend import StatusRow
from .errors import InvalidTask
from .model import State, StatusState, Task, TaskStatus

TASK_TO_STATUS = {
    State.QUEUED: StatusState.QUEUED,
    State.CLAIMED: StatusState.RUNNING,
    State.FAILED: StatusState.RETRIED,
    State.DONE: StatusState.SUCCEEDED,
    State.DEAD: StatusState.FAILED,
    State.CANCELLED: StatusState.CANCELLED,
}
STATUS_TO_TASK = {status: state for state, status in TASK_TO_STATUS.items()}


def status_of(task: Task) -> TaskStatus:
    result = task.result
    return TaskStatus(
        id=task.id,
        state=TASK_TO_STATUS[task.state],
        payload=result.value if result is not None and task.state is State.DONE else None,
        error=None if result is None or result.failure is None else result.failure.to_json(),
        attempt=task.attempts,
        meta={**(task.context or {}), "queue": task.queue, "kind": task.kind},
        created_at=task.created_at,
        updated_at=task.updated_at,
    )


def status_from_row(row: StatusRow) -> TaskStatus:
    return TaskStatus(
        id=row.id,
        state=StatusState(row.state),
        payload=row.payload,
        error=row.error,
        attempt=row.attempt,
        meta=row.meta,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def meta_matches(meta: Any, wanted: dict[str, Any] | None) -> bool:
    """``{k: None}`` asks for key ``k`` to be present; any other value must be equal."""
    if not wanted:
        return True
    if not isinstance(meta, dict):
        return False
    return all(k in meta if v is None else meta.get(k) == v for k, v in wanted.items())


def encode_cursor(task_seq: int | None, record: tuple[int, str] | None, tasks_done: bool, records_done: bool) -> str:
    t = "x" if tasks_done else ("" if task_seq is None else str(task_seq))
    r = "x" if records_done else ("" if record is None else f"{record[0]}:{record[1]}")
    return f"st{t}|{r}"


def decode_cursor(cursor: str) -> tuple[int | None, tuple[int, str] | None, bool, bool]:
    try:
        if not isinstance(cursor, str) or not cursor.startswith("st"):
            raise ValueError
        t, r = cursor[2:].split("|", 1)
        tasks_done, records_done = t == "x", r == "x"
        seq = None if t in ("", "x") else _number(t, 0, 2**63 - 1)
        record = None
        if r not in ("", "x"):
            at, rid = r.split(":", 1)
            record = (_number(at, _EARLIEST_US, _LATEST_US), limits.name(rid, "status id"))
        return seq, record, tasks_done, records_done
    except ValueError:  # InvalidTask is one too
        raise InvalidTask(f"invalid status cursor {cursor!r}") from None


# A cursor is caller input: its numbers must be plain digits that the store can compare and convert back.
_NUMBER = re.compile(r"-?[0-9]{1,19}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST_US = (limits.EARLIEST - _EPOCH) // timedelta(microseconds=1)
_LATEST_US = (limits.LATEST - _EPOCH) // timedelta(microseconds=1)


def _number(text: str, low: int, high: int) -> int:
    if _NUMBER.fullmatch(text) is None or not low <= int(text) <= high:
        raise ValueError(text)
    return int(text)
