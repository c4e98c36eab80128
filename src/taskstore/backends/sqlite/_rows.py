"""Mapping between ``Task`` values and SQLite rows (positional, in schema column order)."""

from __future__ import annotations

import json
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from ...codec import dump_json
from ...model import Claim, Failure, Report, Result, State, Task, trusted_task
from ...retry import DEFAULT_POLICY, RetryPolicy, policy_from_spec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_STATES = {s.value: s for s in State}


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


def _from_us_or_none(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


@lru_cache(maxsize=256)
def _policy(spec: str | None) -> RetryPolicy:
    return DEFAULT_POLICY if spec is None else policy_from_spec(json.loads(spec))


@lru_cache(maxsize=256)
def _spec(policy: Hashable) -> str | None:
    assert isinstance(policy, RetryPolicy)
    return None if policy == DEFAULT_POLICY else json.dumps(policy.to_spec(), sort_keys=True)


def policy_spec(policy: RetryPolicy | None) -> str | None:
    if policy is None or policy is DEFAULT_POLICY:
        return None
    try:
        return _spec(cast(Hashable, policy))
    except TypeError:  # an unhashable user policy: encode it every time
        return json.dumps(policy.to_spec(), sort_keys=True)


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
    )


def task_from_row(r: Any) -> Task:
    claim = None
    if r[15] is not None:
        report = (
            Report(at=from_us(r[18]), data=None if r[19] is None else json.loads(r[19])) if r[18] is not None else None
        )
        claim = Claim(
            task_id=r[1],
            worker_id=r[14],
            token=r[15],
            claimed_at=from_us(r[16]),
            times_out_at=from_us(r[17]),
            last_report=report,
        )
    result = None
    if r[21] is not None:
        failure = None if r[23] is None else Failure.from_json(json.loads(r[23]))
        result = Result(at=from_us(r[21]), value=r[22], failure=failure)
    return trusted_task(
        id=r[1],
        queue=r[2],
        kind=r[3],
        args=r[4],
        context=None if r[5] is None else json.loads(r[5]),
        reference_id=r[6],
        priority=r[7],
        run_at=from_us(r[8]),
        max_attempts=r[9],
        attempts=r[10],
        processing_timeout=r[11],
        state=_STATES[r[13]],
        claim=claim,
        result=result,
        created_at=from_us(r[24]),
        updated_at=from_us(r[25]),
        last_enqueued_at=from_us(r[26]),
        finished_at=_from_us_or_none(r[27]),
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
        to_us(task.run_at),
        None if c is None else c.worker_id,
        None if c is None else c.token,
        None if c is None else to_us(c.claimed_at),
        None if c is None else to_us(c.times_out_at),
        None if report is None else to_us(report.at),
        None if report is None or report.data is None else dump_json(report.data, "report data"),
        int(task.cancel_requested),
        None if res is None else to_us(res.at),
        None if res is None else res.value,
        None if res is None or res.failure is None else dump_json(res.failure.to_json(), "failure"),
        to_us(task.updated_at),
        to_us(task.last_enqueued_at),
        to_us_or_none(task.finished_at),
        task.version,
        task.seq,
        old_version,
    )


def write_statement(old: Task, new: Task) -> tuple[str, tuple[Any, ...]]:
    """The narrowest named UPDATE that writes ``new`` over ``old``, with its parameters.

    A claim, a completion and a report-in each change a known set of columns; the cheap checks
    here confirm that nothing else changed before the narrow statement is chosen, so any other
    change still goes through the full ``update_task``.
    """
    c = new.claim
    same_rest = old.run_at == new.run_at and old.last_enqueued_at == new.last_enqueued_at
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
