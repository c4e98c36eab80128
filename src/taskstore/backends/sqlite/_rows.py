"""Mapping between ``Task`` values and SQLite rows (positional, in schema column order)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ...codec import dump_json
from ...model import State, Task
from .._columns import hold_text, policy_from_text, policy_spec, task_from_columns, update_columns

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    return (value - EPOCH) // _US


def to_us_or_none(value: datetime | None) -> int | None:
    return None if value is None else (value - EPOCH) // _US


# Rows read together share most of their timestamps (a batch is created, claimed and finished at
# one instant), so a small memo of recent conversions saves most datetime arithmetic.
_recent: dict[int, datetime] = {}


def from_us(value: int) -> datetime:
    found = _recent.get(value)
    if found is None:
        if len(_recent) >= 4096:
            _recent.clear()
        found = _recent[value] = EPOCH + timedelta(microseconds=value)
    return found


def insert_params(task: Task, payload: bytes) -> tuple[Any, ...]:
    now_us = to_us(task.created_at)
    return (
        task.seq,
        task.id,
        task.queue,
        task.kind,
        payload,
        None if task.context is None else dump_json(task.context, "context"),
        task.reference_id,
        task.priority,
        to_us(task.run_at),
        task.max_attempts,
        task.processing_timeout,
        policy_spec(task.retry),
        now_us,
        now_us,
        now_us,
        task.recurring_id,
        task.group_id,
        task.unique_key,
        hold_text(task.unique_hold),
        to_us_or_none(task.unique_until),
        task.concurrency_key,
        to_us_or_none(task.expires_at),
    )


def task_from_row(r: Any) -> Task:
    return task_from_columns(r, from_us, json.loads, _same, policy_from_text)


def update_params(task: Task, old_version: int, *, failures: bool = False) -> tuple[Any, ...]:
    return update_columns(task, old_version, to_us, failures=failures)


def _same(value: Any) -> Any:
    return value


def write_statement(old: Task, new: Task) -> tuple[str, tuple[Any, ...]]:
    """The narrowest named UPDATE that writes ``new`` over ``old``, with its parameters.

    A claim, a completion and a report-in each change a known set of columns; the cheap checks
    here confirm that nothing else changed before the narrow statement is chosen, so any other
    change still goes through the full ``update_task``.
    """
    if new.failures is not old.failures:  # an attempt ended without success: only then is the column written
        return "update_task_failures", update_params(new, old.version, failures=True)
    c = new.claim
    same_rest = (
        old.run_at == new.run_at and old.last_enqueued_at == new.last_enqueued_at and old.unique_hold is new.unique_hold
    )
    if c is not None and old.state is not State.CLAIMED and new.state is State.CLAIMED:
        if same_rest and old.result is new.result and old.finished_at == new.finished_at and c.last_report is None:
            return "write_claim", (
                new.attempts,
                c.worker_id,
                c.token,
                to_us(c.claimed_at),
                to_us(c.times_out_at),
                to_us(new.updated_at),
                new.version,
                new.seq,
                old.version,
            )
    elif new.state is State.DONE and old.state is State.CLAIMED:
        res = new.result
        if same_rest and old.attempts == new.attempts and res is not None and res.failure is None and c is None:
            finished = to_us_or_none(new.finished_at)
            return "write_done", (
                to_us(res.at),
                res.value,
                finished,
                to_us(new.updated_at),
                new.version,
                new.seq,
                old.version,
            )
    elif new.state is State.CLAIMED and old.state is State.CLAIMED and c is not None and old.claim is not None:
        report = c.last_report
        if (
            same_rest
            and old.attempts == new.attempts
            and old.result is new.result
            and old.cancel_requested == new.cancel_requested
            and old.claim.token == c.token
            and report is not None
        ):
            data = None if report.data is None else dump_json(report.data, "report data")
            return "write_report", (
                to_us(c.times_out_at),
                to_us(report.at),
                data,
                to_us(new.updated_at),
                new.version,
                new.seq,
                old.version,
            )
    return "update_task", update_params(new, old.version)
