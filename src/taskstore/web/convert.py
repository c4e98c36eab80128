"""Between the store's values and the API's wire shapes (``schemas``), both ways."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .._render import payload_json
from ..model import (
    AttemptFailure,
    Claim,
    Failure,
    GroupStatus,
    NewTask,
    QueueInfo,
    RecurringTask,
    Result,
    Task,
    TaskStatus,
    WorkerHeartbeat,
)
from ..retry import policy_from_spec
from .schemas import (
    AttemptOut,
    ClaimedTaskOut,
    ClaimOut,
    FailureIn,
    FailureOut,
    GroupOut,
    NewTaskIn,
    QueueOut,
    RecurringOut,
    ReportOut,
    ResultOut,
    StatusOut,
    TaskOut,
    WorkerOut,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(value: datetime | None) -> datetime | None:
    """A time in UTC, as SPEC §10 writes every time (the memory store keeps the offset it was given)."""
    return None if value is None else value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _utc_in(value: datetime | None) -> datetime | None:
    """A given time in UTC; one that has no UTC form (year 1 at +03:00) goes on as is, for the store to refuse."""
    try:
        return utc(value)
    except OverflowError:
        return value


def failure_out(failure: Failure) -> FailureOut:
    return FailureOut(
        type=failure.type,
        message=failure.message,
        traceback=failure.traceback,
        retryable=failure.retryable,
        data=failure.data,
    )


def _result(result: Result | None) -> ResultOut | None:
    if result is None:
        return None
    failure = None if result.failure is None else failure_out(result.failure)
    return ResultOut(at=_utc(result.at), value=payload_json(result.value), failure=failure)


def _claim(claim: Claim | None) -> ClaimOut | None:
    if claim is None:
        return None
    report = claim.last_report
    return ClaimOut(
        worker_id=claim.worker_id,
        claimed_at=_utc(claim.claimed_at),
        times_out_at=_utc(claim.times_out_at),
        last_report=None if report is None else ReportOut(at=_utc(report.at), data=report.data),
    )


def _attempt(entry: AttemptFailure) -> AttemptOut:
    return AttemptOut(
        attempt=entry.attempt,
        ended_at=_utc(entry.ended_at),
        worker_id=entry.worker_id,
        failure=failure_out(entry.failure),
    )


def _fields(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "queue": task.queue,
        "kind": task.kind,
        "state": task.state,
        "args": payload_json(task.args),
        "context": None if task.context is None else dict(task.context),
        "reference_id": task.reference_id,
        "priority": task.priority,
        "run_at": _utc(task.run_at),
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "processing_timeout": task.processing_timeout,
        "retry": None if task.retry is None else task.retry.to_spec(),
        "claim": _claim(task.claim),
        "cancel_requested": task.cancel_requested,
        "result": _result(task.result),
        "created_at": _utc(task.created_at),
        "updated_at": _utc(task.updated_at),
        "last_enqueued_at": _utc(task.last_enqueued_at),
        "finished_at": utc(task.finished_at),
        "version": task.version,
        "recurring_id": task.recurring_id,
        "group_id": task.group_id,
        "unique_key": task.unique_key,
        "concurrency_key": task.concurrency_key,
        "expires_at": utc(task.expires_at),
        "failures": [_attempt(entry) for entry in task.failures],
    }


def task_out(task: Task) -> TaskOut:
    """A task without its lease token."""
    return TaskOut(**_fields(task))


def claimed_out(task: Task) -> ClaimedTaskOut:
    """A task just claimed, with the token its worker's writes must carry."""
    assert task.claim is not None
    return ClaimedTaskOut(**_fields(task), token=task.claim.token)


def new_task(body: NewTaskIn) -> NewTask:
    """The ``NewTask`` a body describes; ``NewTask`` itself checks what the schema cannot (naive times …)."""
    retry = None
    if body.retry is not None:
        spec = {name: getattr(body.retry, name) for name in ("base", "cap", "jitter", "lost_lease_delay")}
        retry = policy_from_spec({"policy": body.retry.policy, **{k: v for k, v in spec.items() if v is not None}})
    return NewTask(
        body.queue,
        body.kind,
        body.args,
        id=body.id,
        priority=body.priority,
        # In UTC: an offset Python allows (up to ±23:59) can be past what PostgreSQL reads (±15:59).
        run_at=_utc_in(body.run_at),
        max_attempts=body.max_attempts,
        processing_timeout=body.processing_timeout,
        retry=retry,
        context=body.context,
        reference_id=body.reference_id,
        group_id=body.group_id,
        unique_key=body.unique_key,
        unique_for=body.unique_for,
        unique_states=body.unique_states,
        concurrency_key=body.concurrency_key,
        expires_at=_utc_in(body.expires_at),
    )


def lease(task_id: str, worker_id: str, token: str) -> Claim:
    """The claim a worker's write is fenced by: the store compares only the worker id and the token."""
    return Claim(task_id=task_id, worker_id=worker_id, token=token, claimed_at=_EPOCH, times_out_at=_EPOCH)


def failure_in(body: FailureIn) -> Failure:
    return Failure(
        type=body.type, message=body.message, traceback=body.traceback, retryable=body.retryable, data=body.data
    )


def queue_out(info: QueueInfo) -> QueueOut:
    return QueueOut(
        name=info.name,
        paused=info.paused,
        counts=dict(info.counts),
        oldest_ready_at=utc(info.oldest_ready_at),
        workers=info.workers,
    )


def worker_out(beat: WorkerHeartbeat) -> WorkerOut:
    return WorkerOut(
        worker_id=beat.worker_id,
        queues=list(beat.queues),
        inflight=beat.inflight,
        host=beat.host,
        pid=beat.pid,
        version=beat.version,
        started_at=utc(beat.started_at),
        timestamp=utc(beat.timestamp),
        extras=None if beat.extras is None else dict(beat.extras),
    )


def recurring_out(r: RecurringTask) -> RecurringOut:
    return RecurringOut(
        id=r.id,
        schedule=r.schedule,
        queue=r.template.queue,
        kind=r.template.kind,
        args=payload_json(r.template.args),
        skip_if_outstanding=r.skip_if_outstanding,
        next_at=utc(r.next_at),
        owner=r.owner,
    )


def status_out(s: TaskStatus) -> StatusOut:
    return StatusOut(
        id=s.id,
        state=s.state,
        payload=payload_json(s.payload),
        error=None if s.error is None else dict(s.error),
        attempt=s.attempt,
        meta=dict(s.meta),
        created_at=utc(s.created_at),
        updated_at=utc(s.updated_at),
    )


def group_out(g: GroupStatus) -> GroupOut:
    return GroupOut(
        id=g.id,
        expected=g.expected,
        completed=g.completed,
        is_complete=g.is_complete,
        results={k: status_out(v) for k, v in g.results.items()},
        meta=dict(g.meta),
        created_at=utc(g.created_at),
        updated_at=utc(g.updated_at),
        expires_at=utc(g.expires_at),
    )
