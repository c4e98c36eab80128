"""Mapping between ``Task`` values and PostgreSQL rows (positional, in migration column order)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...codec import dump_json
from ...model import Claim, Failure, Report, Result, State, Task, trusted_task
from ...retry import DEFAULT_POLICY, RetryPolicy, policy_from_spec

_STATES = {s.value: s for s in State}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _policy(spec: Any) -> RetryPolicy:
    return DEFAULT_POLICY if spec is None else policy_from_spec(spec)


def task_from_row(r: Any) -> Task:
    claim = None
    if r[15] is not None:
        report = Report(at=_utc(r[18]), data=r[19]) if r[18] is not None else None
        claim = Claim(
            task_id=r[1],
            worker_id=r[14],
            token=r[15],
            claimed_at=_utc(r[16]),
            times_out_at=_utc(r[17]),
            last_report=report,
        )
    result = None
    if r[21] is not None:
        failure = None if r[23] is None else Failure.from_json(r[23])
        result = Result(at=_utc(r[21]), value=None if r[22] is None else bytes(r[22]), failure=failure)
    return trusted_task(
        id=r[1],
        queue=r[2],
        kind=r[3],
        args=None if r[4] is None else bytes(r[4]),
        context=r[5],
        reference_id=r[6],
        priority=r[7],
        run_at=_utc(r[8]),
        max_attempts=r[9],
        attempts=r[10],
        processing_timeout=r[11],
        state=_STATES[r[13]],
        claim=claim,
        result=result,
        created_at=_utc(r[24]),
        updated_at=_utc(r[25]),
        last_enqueued_at=_utc(r[26]),
        finished_at=_utc_or_none(r[27]),
        version=r[28],
        recurring_id=r[29],
        group_id=r[30],
        retry=_policy(r[12]),
        cancel_requested=bool(r[20]),
        seq=r[0],
    )


def update_params(task: Task, old_version: int) -> tuple[Any, ...]:
    c = task.claim
    report = c.last_report if c is not None else None
    res = task.result
    return (
        task.state.value,
        task.attempts,
        task.run_at,
        None if c is None else c.worker_id,
        None if c is None else c.token,
        None if c is None else c.claimed_at,
        None if c is None else c.times_out_at,
        None if report is None else report.at,
        None if report is None or report.data is None else dump_json(report.data, "report data"),
        task.cancel_requested,
        None if res is None else res.at,
        None if res is None else res.value,
        None if res is None or res.failure is None else dump_json(res.failure.to_json(), "failure"),
        task.updated_at,
        task.last_enqueued_at,
        task.finished_at,
        task.version,
        task.seq,
        old_version,
    )


def write_statement(old: Task, new: Task) -> tuple[str, tuple[Any, ...]]:
    """A report-in writes five columns; every other transition writes the full mutable set."""
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
