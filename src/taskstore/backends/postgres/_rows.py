"""Mapping between ``Task`` values and PostgreSQL rows (positional, in migration column order)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...codec import dump_json
from ...gates import KeyGate
from ...model import State, Task
from ...retry import DEFAULT_POLICY, RetryPolicy, policy_from_spec
from .._columns import task_from_columns, update_columns
from .._records import limit_from_row


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _policy(spec: Any) -> RetryPolicy:
    return DEFAULT_POLICY if spec is None else policy_from_spec(spec)


def _same(value: Any) -> Any:
    return value


def task_from_row(r: Any) -> Task:
    return task_from_columns(r, _utc, _same, bytes, _policy)


def update_params(task: Task, old_version: int, *, failures: bool = False) -> tuple[Any, ...]:
    return update_columns(task, old_version, _same, failures=failures)


def write_statement(old: Task, new: Task) -> tuple[str, tuple[Any, ...]]:
    """A report-in writes five columns; every other transition writes the full mutable set, and an attempt
    ended without success its ``failures`` too."""
    if new.failures is not old.failures:
        return "update_task_failures", update_params(new, old.version, failures=True)
    c, oc = new.claim, old.claim
    if (
        c is not None
        and oc is not None
        and old.state is State.CLAIMED
        and new.state is State.CLAIMED
        and c.token == oc.token
        and c.last_report is not None
        and old.attempts == new.attempts
        and old.result is new.result
        and old.cancel_requested == new.cancel_requested
        and old.run_at == new.run_at
        and old.last_enqueued_at == new.last_enqueued_at
    ):
        report = c.last_report
        data = None if report.data is None else dump_json(report.data, "report data")
        return "write_report", (c.times_out_at, report.at, data, new.updated_at, new.version, new.seq, old.version)
    return "update_task", update_params(new, old.version)


def gate_from_row(r: Any, running: int) -> KeyGate:
    """A ``limits`` row (key, concurrency, rate, per, tokens, refilled_at, ...) as a claim's gate."""
    return KeyGate(limit=limit_from_row(r), running=running, tokens=float(r[4]), refilled_at=_utc(r[5]))
