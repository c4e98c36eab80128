"""Pure state transitions with fencing: ``(task, now, …) -> task``, or a typed error.

Every backend decides with these functions and applies the outcome as one compare-and-set, so no
backend invents a rule of its own. Nothing here reads a clock, a random source or a database: the
caller passes ``now``, lease tokens and ``rand`` in.

Each transition returns a new ``Task`` with ``version`` incremented and ``updated_at = now``.

An attempt that ends without success adds an entry to ``Task.failures`` (``_record``): a handler's failure
(``mark_failed``), a lease timed out (``reap``, or taken over by ``take_over``), and a running attempt cancelled
(``mark_cancelled``, or a cancel honoured at ``mark_failed``/``unclaim``). Nothing else does: a release
(``unclaim``) gives the attempt back, a waiting task that expires or is cancelled had no attempt running, and
the outbox ``update`` is a raw write that decides nothing. A manual ``retry`` keeps the entries (it gives a new
attempt budget, not a new task), and so does the archive. A success writes none: ``result`` holds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from . import errors
from .model import (
    CLAIMABLE_STATES,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PROCESSING_TIMEOUT,
    AttemptFailure,
    Claim,
    Failure,
    NewTask,
    Report,
    Result,
    State,
    Task,
    trusted_task,
)
from .retry import DEFAULT_POLICY, Rand, after_lost_lease

TIMED_OUT = "timed_out"
CANCELLED = "cancelled"
EXPIRED = "Expired"

# At most this many failed attempts are kept per task, the latest. A poison task with a large ``max_attempts``
# fails again and again, each failure with a traceback of a few KB; the entries are rewritten with the row at
# every failure and read with it by every claim, so they must stay bounded. Twenty show a flaky task's pattern
# and the run-up to a dead one in tens of KB with typical tracebacks; ``attempts`` still counts every attempt.
MAX_FAILURES_KEPT = 20


def _touch(task: Task, now: datetime, **changes: Any) -> Task:
    """The next version of ``task``. A unique task leaving its ``unique_hold`` states releases its key for good."""
    hold = task.unique_hold
    if hold is not None and changes.get("state", task.state) not in hold:
        changes["unique_hold"] = None
    return task.replace(version=task.version + 1, updated_at=now, **changes)


def create(new: NewTask, *, task_id: str, now: datetime, args: Any = None, seq: int = 0) -> Task:
    """A new ``queued`` task with every default filled in. ``args`` is the codec-encoded payload."""
    timeout = new.processing_timeout  # NewTask normalised it to float seconds, or None
    return trusted_task(
        id=task_id,
        queue=new.queue,
        kind=new.kind,
        args=args,
        context=dict(new.context) if new.context is not None else None,
        reference_id=new.reference_id,
        priority=new.priority,
        run_at=new.run_at if new.run_at is not None else now,
        max_attempts=new.max_attempts if new.max_attempts is not None else DEFAULT_MAX_ATTEMPTS,
        attempts=0,
        processing_timeout=DEFAULT_PROCESSING_TIMEOUT if timeout is None else timeout,
        state=State.QUEUED,
        claim=None,
        result=None,
        created_at=now,
        updated_at=now,
        last_enqueued_at=now,
        finished_at=None,
        version=1,
        recurring_id=new.recurring_id,
        group_id=new.group_id,
        retry=new.retry if new.retry is not None else DEFAULT_POLICY,
        cancel_requested=False,
        unique_key=new.unique_key,
        concurrency_key=new.concurrency_key,
        expires_at=new.expires_at,
        unique_hold=new.unique_hold,
        unique_until=None if new.unique_for is None else now + as_timedelta(new.unique_for),
        failures=(),
        seq=seq,
    )


def create_all(news: Sequence[NewTask], ids: Sequence[str], seqs: Sequence[int], now: datetime) -> list[Task]:
    """``create(new, task_id=id, now=now, args=new.args, seq=seq)`` for each, as one loop: bulk enqueue's hot path.

    The same tasks field for field (tests/unit/test_create_all.py holds them equal). Each starts from a copy
    of the fields every new task shares; two keyword calls of 30 arguments per task cost three times as much.
    """
    shared: dict[str, Any] = {
        "attempts": 0,
        "state": State.QUEUED,
        "claim": None,
        "result": None,
        "created_at": now,
        "updated_at": now,
        "last_enqueued_at": now,
        "finished_at": None,
        "version": 1,
        "cancel_requested": False,
        "failures": (),
    }
    tasks: list[Task] = []
    append, copy, new_task, adopt = tasks.append, shared.copy, object.__new__, object.__setattr__
    for new, task_id, seq in zip(news, ids, seqs, strict=True):
        timeout, context, run_at, unique_for = new.processing_timeout, new.context, new.run_at, new.unique_for
        fields = copy()
        fields["id"] = task_id
        fields["queue"] = new.queue
        fields["kind"] = new.kind
        fields["args"] = new.args
        fields["context"] = None if context is None else dict(context)
        fields["reference_id"] = new.reference_id
        fields["priority"] = new.priority
        fields["run_at"] = now if run_at is None else run_at
        fields["max_attempts"] = DEFAULT_MAX_ATTEMPTS if new.max_attempts is None else new.max_attempts
        fields["processing_timeout"] = DEFAULT_PROCESSING_TIMEOUT if timeout is None else timeout
        fields["recurring_id"] = new.recurring_id
        fields["group_id"] = new.group_id
        fields["retry"] = DEFAULT_POLICY if new.retry is None else new.retry
        fields["unique_key"] = new.unique_key
        fields["concurrency_key"] = new.concurrency_key
        fields["expires_at"] = new.expires_at
        fields["unique_hold"] = new.unique_hold
        fields["unique_until"] = None if unique_for is None else now + as_timedelta(unique_for)
        fields["seq"] = seq
        task = new_task(Task)
        adopt(task, "__dict__", fields)  # as trusted_task does: the dict is this task's alone
        append(task)
    return tasks


def as_timedelta(value: float | timedelta) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


def is_expired(task: Task, now: datetime) -> bool:
    """Past its ``expires_at``: never claimed again (SPEC §9); the reaper ends it with ``expire``."""
    return task.expires_at is not None and task.expires_at <= now


def is_claimable(task: Task, now: datetime) -> bool:
    """Waiting, ready and not expired. Paused queues and key limits are the claim's own gates (see ``gates``)."""
    return task.state in CLAIMABLE_STATES and task.run_at <= now and not is_expired(task, now)


def holds_key(task: Task, now: datetime) -> bool:
    """Whether ``task`` still keeps its unique key from a new create: in its hold states and within ``unique_for``."""
    hold = task.unique_hold
    return hold is not None and task.state in hold and (task.unique_until is None or task.unique_until > now)


def release_key(task: Task, now: datetime) -> Task:
    """A holder past ``unique_for`` gives its key up to a new create of the same key (nothing else changes)."""
    return _touch(task, now, unique_hold=None)


def expire(task: Task, *, now: datetime) -> Task | None:
    """A waiting task past ``expires_at`` ends ``cancelled`` with failure type ``Expired``; None otherwise.

    A claimed task is left to finish (it was claimed in time); a claimed task's retry is still refused
    by ``is_claimable``, and the reaper ends it once it is waiting again.
    """
    if task.state not in CLAIMABLE_STATES or not is_expired(task, now):
        return None
    assert task.expires_at is not None
    return _cancelled(task, now, f"expired at {task.expires_at.isoformat()} before it ran", failure_type=EXPIRED)


def _record(task: Task, failure: Failure, now: datetime) -> tuple[AttemptFailure, ...]:
    """``task.failures`` with the attempt now ending added, the oldest dropped past ``MAX_FAILURES_KEPT``."""
    claim = task.claim
    entry = AttemptFailure(
        attempt=task.attempts,
        ended_at=now,
        worker_id=None if claim is None else claim.worker_id,
        failure=failure,
    )
    kept = task.failures[max(len(task.failures) - MAX_FAILURES_KEPT + 1, 0) :]
    return (*kept, entry)


def _timed_out(task: Task) -> Failure:
    assert task.claim is not None
    return Failure(
        type=TIMED_OUT,
        message=f"lease of worker {task.claim.worker_id!r} timed out at {task.claim.times_out_at.isoformat()}",
    )


def claim_order(task: Task) -> tuple[int, datetime, int]:
    """The order claims take tasks in (SPEC §2): priority descending, then ``run_at``, then enqueue order."""
    return (-task.priority, task.run_at, task.seq)


def is_timed_out(task: Task, now: datetime) -> bool:
    return task.state is State.CLAIMED and task.claim is not None and task.claim.times_out_at <= now


def claim(task: Task, *, worker_id: str, token: str, now: datetime, lease: float | None = None) -> Task:
    """``queued``/ready ``failed`` -> ``claimed`` under a new lease; spends one attempt."""
    if not is_claimable(task, now):
        raise errors.InvalidTask(f"task {task.id!r} is not claimable (state {task.state}, run_at {task.run_at})")
    length = task.processing_timeout if lease is None else lease
    lease_claim = Claim(
        task_id=task.id,
        worker_id=worker_id,
        token=token,
        claimed_at=now,
        times_out_at=now + timedelta(seconds=length),
    )
    return _touch(task, now, state=State.CLAIMED, attempts=task.attempts + 1, claim=lease_claim, cancel_requested=False)


def take_over(
    task: Task, *, worker_id: str, token: str, now: datetime, lease: float | None, rand: Rand | None = None
) -> Task | None:
    """``claim_task``: claim one specific task, taking over an expired lease.

    Returns ``None`` (and no change) when the task is not claimable now: finished, ``run_at`` in the
    future, or under a live lease, also the caller's own (not re-entrant). An expired lease whose
    attempts are used up is reaped to ``dead`` instead; the caller writes that and gets ``None``.
    """
    if is_timed_out(task, now):
        if task.attempts >= task.max_attempts or task.cancel_requested:
            return reap(task, now=now, rand=rand)  # dead, or cancelled as requested: not taken over
        # The expired attempt was already counted at its claim (and is recorded as timed out); the takeover
        # starts a new one.
        failures = _record(task, _timed_out(task), now)
        task = task.replace(state=State.QUEUED, claim=None, run_at=min(task.run_at, now), failures=failures)
    if not is_claimable(task, now):
        return None
    return claim(task, worker_id=worker_id, token=token, now=now, lease=lease)


def check_lease(task: Task, lease: Claim) -> Claim:
    """Fencing: the write is the current lease holder's, or it is refused. Returns the stored claim."""
    if task.state is not State.CLAIMED or task.claim is None:
        raise errors.NotClaimed(task.id, f"not claimed (state {task.state.value})")
    current = task.claim
    if current.worker_id != lease.worker_id:
        raise errors.NotOwned(task.id, f"claimed by worker {current.worker_id!r}, not {lease.worker_id!r}")
    if current.token != lease.token:
        raise errors.NotOwned(task.id, "claimed under another lease token")
    return current


def report_in(task: Task, lease: Claim, *, now: datetime, data: Any = None, extend_by: float | None = None) -> Task:
    """Renew the lease: ``times_out_at = now + (extend_by or processing_timeout)`` (absolute)."""
    current = check_lease(task, lease)
    if current.last_report is not None and now < current.last_report.at:
        raise errors.ReportFromThePast(task.id)
    length = task.processing_timeout if extend_by is None else extend_by
    renewed = Claim(
        task_id=current.task_id,
        worker_id=current.worker_id,
        token=current.token,
        claimed_at=current.claimed_at,
        times_out_at=now + timedelta(seconds=length),
        last_report=Report(at=now, data=data),
    )
    return _touch(task, now, claim=renewed)


def mark_done(task: Task, lease: Claim, *, now: datetime, value: Any = None) -> Task:
    check_lease(task, lease)
    return _touch(
        task,
        now,
        state=State.DONE,
        claim=None,
        result=Result(at=now, value=value),
        finished_at=now,
        cancel_requested=False,
    )


def will_retry(task: Task, failure: Failure) -> bool:
    """Whether an attempt of ``task`` (claimed, ``attempts`` spent) failing with ``failure`` leaves it to retry."""
    return failure.retryable and task.attempts < task.max_attempts


def _fail(task: Task, failure: Failure, now: datetime, rand: Rand | None, retry_in: float | None = None) -> Task:
    """``failed`` with a backoff while attempts remain and the failure is retryable, else ``dead``.

    The backoff is ``retry_in`` seconds when given (a handler's ``Retry(delay=…)``), else the task's
    policy's. A task whose cancellation was requested while it ran is not tried again: it ends ``cancelled``.
    """
    failures = _record(task, failure, now)
    if task.cancel_requested:
        message = f"cancelled while running (the attempt ended with {failure.type})"
        return _cancelled(task, now, message, failures=failures)
    result = Result(at=now, failure=failure)
    if will_retry(task, failure):
        if retry_in is not None:
            backoff = max(retry_in, 0.0)
        else:
            policy = task.retry if task.retry is not None else DEFAULT_POLICY
            backoff = max(policy.delay(max(task.attempts, 1), rand), 0.0)
        return _touch(
            task,
            now,
            state=State.FAILED,
            claim=None,
            result=result,
            run_at=now + timedelta(seconds=backoff),
            last_enqueued_at=now,
            cancel_requested=False,
            failures=failures,
        )
    return _touch(
        task,
        now,
        state=State.DEAD,
        claim=None,
        result=result,
        finished_at=now,
        cancel_requested=False,
        failures=failures,
    )


def mark_failed(
    task: Task,
    lease: Claim,
    *,
    now: datetime,
    failure: Failure,
    rand: Rand | None = None,
    retry_in: float | None = None,
) -> Task:
    """The attempt failed: see ``_fail``. ``retry_in`` (seconds, bounded by the caller) overrides the policy."""
    check_lease(task, lease)
    return _fail(task, failure, now, rand, retry_in)


def reap(task: Task, *, now: datetime, rand: Rand | None = None) -> Task | None:
    """A timed-out lease fails like ``mark_failed`` (spending its attempt); ``None`` if not timed out.

    The next attempt waits ``retry.after_lost_lease`` (0 unless the task's policy says otherwise).

    Re-checked against the stored row inside the write, so a task finished between a reaper's read
    and its write is never reverted.
    """
    if not is_timed_out(task, now):
        return None
    # A lost lease is not the task's fault: the attempt is spent, but the next one need not back off, and a
    # task due again at once keeps its place in claim order (its run_at) instead of going behind the backlog.
    policy = task.retry if task.retry is not None else DEFAULT_POLICY
    changed = _fail(task, _timed_out(task), now, rand, after_lost_lease(policy, rand))
    if changed.state is State.FAILED and changed.run_at <= now:
        return changed.replace(run_at=min(task.run_at, now))
    return changed


def unclaim(task: Task, lease: Claim, *, now: datetime) -> Task:
    """Release: back to ``queued`` without spending an attempt; ``run_at`` unchanged.

    A task asked to cancel while it was held is not put back: it ends ``cancelled``.
    """
    check_lease(task, lease)
    if task.cancel_requested:
        return _cancelled_running(task, now, "cancelled while running (released before it finished)")
    return _touch(
        task,
        now,
        state=State.QUEUED,
        claim=None,
        attempts=max(task.attempts - 1, 0),
        last_enqueued_at=now,
        cancel_requested=False,
    )


def _cancelled(
    task: Task,
    now: datetime,
    message: str,
    *,
    failure_type: str = CANCELLED,
    failures: tuple[AttemptFailure, ...] | None = None,
) -> Task:
    failure = Failure(type=failure_type, message=message, retryable=False)
    return _touch(
        task,
        now,
        state=State.CANCELLED,
        claim=None,
        finished_at=now,
        result=Result(at=now, failure=failure),
        cancel_requested=False,
        failures=task.failures if failures is None else failures,
    )


def _cancelled_running(task: Task, now: datetime, message: str) -> Task:
    """A running attempt ends cancelled, and is recorded as such in ``failures``."""
    failures = _record(task, Failure(type=CANCELLED, message=message, retryable=False), now)
    return _cancelled(task, now, message, failures=failures)


def cancel(task: Task, *, now: datetime) -> Task:
    """``queued``/``failed`` -> ``cancelled``; on ``claimed`` record a request the worker sees at report-in.

    Finished tasks, and a claimed task already asked to cancel, are returned unchanged (no write).
    """
    if task.state in CLAIMABLE_STATES:
        return _cancelled(task, now, "cancelled before it ran")
    if task.state is State.CLAIMED and not task.cancel_requested:
        return _touch(task, now, cancel_requested=True)
    return task


def mark_cancelled(task: Task, lease: Claim, *, now: datetime) -> Task:
    """The worker honours a cancel request: ``claimed`` -> ``cancelled``."""
    check_lease(task, lease)
    return _cancelled_running(task, now, "cancelled while running")


def retry(task: Task, *, now: datetime) -> Task:
    """Manual retry. ``dead``/``cancelled`` -> ``queued`` with a fresh attempt budget and run_at now.

    ``failures`` is kept: the attempts before the retry stay visible (their numbers start again after it).

    A waiting task (``queued``/``failed``) is made to run now; ``claimed`` and ``done`` tasks are
    returned unchanged (a running task is not disturbed, a success is not redone).
    """
    if task.state in (State.DEAD, State.CANCELLED):
        return _touch(
            task,
            now,
            state=State.QUEUED,
            attempts=0,
            run_at=now,
            finished_at=None,
            last_enqueued_at=now,
            claim=None,
            cancel_requested=False,
        )
    if task.state in CLAIMABLE_STATES and task.run_at > now:
        return _touch(task, now, run_at=now)
    return task


def update(stored: Task, wanted: Task, *, now: datetime) -> Task:
    """The outbox compare-and-set: write ``state``, ``attempts`` and ``run_at`` if ``version`` matches."""
    if wanted.id != stored.id:
        raise errors.InvalidTask("update() cannot change a task's id")
    if wanted.version != stored.version:
        raise errors.StaleVersion(stored.id, wanted.version, stored.version)
    state = State(wanted.state)
    if state is State.CLAIMED and stored.state is not State.CLAIMED:
        raise errors.InvalidTask("update() cannot claim a task; use claim() or claim_task()")
    if isinstance(wanted.attempts, bool) or not isinstance(wanted.attempts, int) or wanted.attempts < 0:
        raise errors.InvalidTask("attempts must be an int >= 0")
    if not isinstance(wanted.run_at, datetime) or wanted.run_at.tzinfo is None:
        raise errors.InvalidTask("run_at must be a timezone-aware datetime")
    changes: dict[str, Any] = {"state": state, "attempts": wanted.attempts, "run_at": wanted.run_at}
    if state is not State.CLAIMED:
        changes["claim"] = None
        changes["cancel_requested"] = False
    if state.is_terminal and not stored.state.is_terminal:
        changes["finished_at"] = now
    elif not state.is_terminal:
        changes["finished_at"] = None
    if state in CLAIMABLE_STATES and stored.state not in CLAIMABLE_STATES:
        changes["last_enqueued_at"] = now
    return _touch(stored, now, **changes)


def settle_group(expected: int, states: Sequence[State]) -> tuple[bool, bool]:
    """A group is its members: ``(finished, succeeded)`` from their states, in member order.

    Finished once no member is unfinished; succeeded (its chord may fire) once all ``expected``
    members are ``done``. A member ``dead`` or ``cancelled`` fails the group at once, but the group
    is only finished when the others have ended too (a manual retry may still revive the failed one).
    """
    finished = all(state.is_terminal for state in states)
    succeeded = finished and len(states) == expected and all(state is State.DONE for state in states)
    return finished, succeeded


__all__ = [
    "MAX_FAILURES_KEPT",
    "cancel",
    "check_lease",
    "claim",
    "claim_order",
    "create",
    "is_claimable",
    "is_timed_out",
    "mark_cancelled",
    "mark_done",
    "mark_failed",
    "reap",
    "report_in",
    "retry",
    "settle_group",
    "take_over",
    "unclaim",
    "update",
]
