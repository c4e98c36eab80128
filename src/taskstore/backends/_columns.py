"""The ``tasks`` table's column layout, shared by the SQL backends.

SQLite and PostgreSQL keep the same columns in the same order; they differ only in how a value is stored
(a timestamp as microseconds or ``timestamptz``, a JSON document as text or ``jsonb``, bytes as ``bytes`` or a
buffer). Each backend passes its converters, and the mapping itself is written once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from ..codec import dump_json
from ..model import AttemptFailure, Claim, DeadSummary, Failure, Report, Result, State, Task, trusted_task
from ..retry import DEFAULT_POLICY, RetryPolicy, policy_from_spec

_STATES = {s.value: s for s in State}


def dead_summary(row: Any, time: Callable[[Any], datetime]) -> DeadSummary:
    """A ``dead_summaries`` row (id, queue, kind, finished_at, failure type, cut message) as a ``DeadSummary``."""
    task_id, queue, kind, at, type_, message = row
    return DeadSummary(task_id, queue, kind, None if at is None else time(at), str(type_ or ""), str(message or ""))


@lru_cache(maxsize=64)
def hold_of(text: str | None) -> frozenset[State] | None:
    """A ``unique_hold`` column (",queued,claimed,failed,") as a set of states; NULL is None."""
    return None if text is None else frozenset(_STATES[s] for s in text.split(",") if s)


@lru_cache(maxsize=64)
@lru_cache(maxsize=64)  # a few sets recur (most tasks keep the default): once per set, not per row of a batch
def hold_text(hold: frozenset[State] | None) -> str | None:
    """The column form of ``unique_hold``: delimited on both sides, so a state matches with one ``instr``."""
    if hold is None:
        return None
    return "," + ",".join(s.value for s in State if s in hold) + ","


def failures_of(document: Any) -> tuple[AttemptFailure, ...]:
    """The ``failures`` column, parsed: a JSON array of ``AttemptFailure.to_json`` objects."""
    return tuple(AttemptFailure.from_json(entry) for entry in document)


def failures_json(task: Task) -> str | None:
    """The ``failures`` column of ``task``: NULL while it has none (rows from before the column read the same)."""
    if not task.failures:
        return None
    return dump_json([entry.to_json() for entry in task.failures], "failures")


def task_from_columns(
    r: Any,
    time: Callable[[Any], datetime],
    document: Callable[[Any], Any],
    blob: Callable[[Any], bytes],
    policy: Callable[[Any], RetryPolicy],
) -> Task:
    """A ``Task`` from a row in column order; ``document`` and ``blob`` are only called on non-NULL values."""
    claim = None
    if r[15] is not None:
        report = None if r[18] is None else Report(at=time(r[18]), data=None if r[19] is None else document(r[19]))
        claim = Claim(
            task_id=r[1],
            worker_id=r[14],
            token=r[15],
            claimed_at=time(r[16]),
            times_out_at=time(r[17]),
            last_report=report,
        )
    result = None
    if r[21] is not None:
        failure = None if r[23] is None else Failure.from_json(document(r[23]))
        result = Result(at=time(r[21]), value=None if r[22] is None else blob(r[22]), failure=failure)
    return trusted_task(
        id=r[1],
        queue=r[2],
        kind=r[3],
        args=None if r[4] is None else blob(r[4]),
        context=None if r[5] is None else document(r[5]),
        reference_id=r[6],
        priority=r[7],
        run_at=time(r[8]),
        max_attempts=r[9],
        attempts=r[10],
        processing_timeout=r[11],
        state=_STATES[r[13]],
        claim=claim,
        result=result,
        created_at=time(r[24]),
        updated_at=time(r[25]),
        last_enqueued_at=time(r[26]),
        finished_at=None if r[27] is None else time(r[27]),
        version=r[28],
        recurring_id=r[29],
        group_id=r[30],
        retry=policy(r[12]),
        cancel_requested=bool(r[20]),
        unique_key=r[31],
        concurrency_key=r[34],
        expires_at=None if r[35] is None else time(r[35]),
        unique_hold=hold_of(r[32]),
        unique_until=None if r[33] is None else time(r[33]),
        failures=() if r[36] is None else failures_of(document(r[36])),
        seq=r[0],
    )


def update_columns(
    task: Task, old_version: int, time: Callable[[datetime], Any], *, failures: bool = False
) -> tuple[Any, ...]:
    """The parameters of ``update_task``: every mutable column, then the row's seq and the version it had.

    With ``failures``, those of ``update_task_failures``: ``failures`` follows the other mutable columns. Only
    a transition that changed ``Task.failures`` writes the column (see ``transitions``); others leave it be.
    """
    c = task.claim
    report = c.last_report if c is not None else None
    res = task.result
    return (
        task.state.value,
        task.attempts,
        time(task.run_at),
        None if c is None else c.worker_id,
        None if c is None else c.token,
        None if c is None else time(c.claimed_at),
        None if c is None else time(c.times_out_at),
        None if report is None else time(report.at),
        None if report is None or report.data is None else dump_json(report.data, "report data"),
        task.cancel_requested,
        None if res is None else time(res.at),
        None if res is None else res.value,
        None if res is None or res.failure is None else dump_json(res.failure.to_json(), "failure"),
        time(task.updated_at),
        time(task.last_enqueued_at),
        None if task.finished_at is None else time(task.finished_at),
        task.version,
        hold_text(task.unique_hold),
        *((failures_json(task),) if failures else ()),
        task.seq,
        old_version,
    )


# A retry policy as the SQLite and Redis backends keep it, JSON text (PostgreSQL's jsonb column hands a dict).
# Few policies recur across many tasks: both directions are cached.
@lru_cache(maxsize=256)
def policy_from_text(spec: str | None) -> RetryPolicy:
    return DEFAULT_POLICY if spec is None else policy_from_spec(json.loads(spec))


@lru_cache(maxsize=256)
def _spec_text(policy: Hashable) -> str | None:
    assert isinstance(policy, RetryPolicy)
    return None if policy == DEFAULT_POLICY else json.dumps(policy.to_spec(), sort_keys=True)


def policy_spec(policy: RetryPolicy | None) -> str | None:
    """``policy`` as JSON text; None for the default (stored as NULL)."""
    if policy is None or policy is DEFAULT_POLICY:
        return None
    try:
        return _spec_text(cast(Hashable, policy))
    except TypeError:  # an unhashable user policy: encode it every time
        return json.dumps(policy.to_spec(), sort_keys=True)
