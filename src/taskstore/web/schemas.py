"""The JSON shapes of the HTTP API: one ``msgspec.Struct`` per body, response and problem.

These classes are the single definition of the wire format: request bodies are decoded (and refused, naming
the field) by them, responses are encoded from them, and ``/api/openapi.json`` is generated from them. A
field added here is documented and validated at once; nothing is kept in a second copy.

Bounds that the store enforces anyway (``limits``) are repeated as schema constraints where JSON Schema can
say them, so clients and property-based tests see them; the store's own check stays the authority.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from .. import limits
from ..model import QUEUE_NAME, State, StatusState

# No NUL: the store refuses it in every name (PostgreSQL cannot hold it), so the schema says so and the
# refusal names the field (a worker_id with NUL once reached PostgreSQL and came back a 503).
Name = Annotated[str, Meta(min_length=1, max_length=limits.MAX_NAME_LENGTH, pattern="^[^\x00]+$")]
# An id the API itself will be asked for by path (``/tasks/{id}``, ``/groups/{id}``): no ``/``, which no path
# segment can carry, and no control characters. Ids made in Python may hold either; the API still lists them.
PathId = Annotated[str, Meta(min_length=1, max_length=limits.MAX_NAME_LENGTH, pattern="^[^/\x00-\x1f\x7f]+$")]
# RFC 3339 (JSON Schema's date-time) requires an offset; a naive time would be refused by the store anyway, but
# here the refusal names the field.
AwareDatetime = Annotated[datetime, Meta(tz=True)]
QueueName = Annotated[str, Meta(pattern=f"^{QUEUE_NAME.pattern}$")]
Int32 = Annotated[int, Meta(ge=limits.INT32_MIN, le=limits.INT32_MAX)]
Seconds = Annotated[float, Meta(ge=0, le=limits.MAX_DURATION)]
PositiveSeconds = Annotated[float, Meta(gt=0, le=limits.MAX_DURATION)]
Count = Annotated[int, Meta(ge=1, le=1000)]
JsonObject = dict[str, Any]


class _In(Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Request bodies: an unknown field is an error (a typo must not be silently dropped)."""


class _Out(Struct, kw_only=True):
    """Response bodies."""


# -- requests -----------------------------------------------------------------------------------


class RetrySpecIn(_In):
    """A retry policy: ``exponential`` (base, cap, jitter), ``binary_exponential`` (base, cap) or ``polynomial``;
    any of them with ``lost_lease_delay``, the longest wait after a lease lost to a crashed worker (default 0)."""

    policy: Literal["exponential", "binary_exponential", "polynomial"]
    base: PositiveSeconds | None = None
    cap: PositiveSeconds | None = None
    jitter: Annotated[float, Meta(ge=0, le=1)] | None = None
    lost_lease_delay: Seconds | None = None


class NewTaskIn(_In):
    """One task to create; absent options take the store's defaults (SPEC §8, §9)."""

    queue: QueueName
    kind: Name
    args: Any = None
    id: PathId | None = None
    priority: Int32 = 0
    run_at: AwareDatetime | None = None
    max_attempts: Annotated[int, Meta(ge=1, le=limits.INT32_MAX)] | None = None
    processing_timeout: PositiveSeconds | None = None
    retry: RetrySpecIn | None = None
    context: JsonObject | None = None
    reference_id: Name | None = None
    group_id: PathId | None = None
    unique_key: Name | None = None
    unique_for: PositiveSeconds | None = None
    unique_states: list[State] | None = None
    concurrency_key: Name | None = None
    expires_at: AwareDatetime | None = None


class NewTasksIn(_In):
    """Several tasks, created all-or-nothing."""

    tasks: Annotated[list[NewTaskIn], Meta(min_length=1, max_length=10_000)]


class ClaimIn(_In):
    worker_id: Name
    queues: list[QueueName] | None = None
    limit: Count = 1
    block_for: Annotated[float, Meta(ge=0, le=60)] = 0.0


class LeaseIn(_In):
    """What every worker write carries: the lease it holds (from the claim response)."""

    worker_id: Name
    token: Name


class ReportIn(LeaseIn):
    data: Any = None
    extend_by: PositiveSeconds | None = None


class DoneIn(LeaseIn):
    result: Any = None


class FailureIn(_In):
    type: Name
    message: str = ""
    traceback: str | None = None
    retryable: bool = True
    data: Any = None


class FailIn(LeaseIn):
    failure: FailureIn
    retry_in: Seconds | None = None


class CompletionIn(_In):
    """One finished task in a batch: ``result`` when it succeeded, ``failure`` when it did not."""

    id: Name
    token: Name
    result: Any = None
    failure: FailureIn | None = None
    retry_in: Seconds | None = None


class CompletionsIn(_In):
    """Many finished tasks of one worker, each fenced by its own token."""

    worker_id: Name
    tasks: Annotated[list[CompletionIn], Meta(min_length=1, max_length=1000)]


# -- responses ----------------------------------------------------------------------------------


class FailureOut(_Out):
    type: str
    message: str
    traceback: str | None
    retryable: bool
    data: Any


class ResultOut(_Out):
    at: datetime
    value: Any
    failure: FailureOut | None


class ReportOut(_Out):
    at: datetime
    data: Any


class ClaimOut(_Out):
    """A task's current lease, without its token (only the claimer gets that)."""

    worker_id: str
    claimed_at: datetime
    times_out_at: datetime
    last_report: ReportOut | None


class AttemptOut(_Out):
    attempt: int
    ended_at: datetime
    worker_id: str | None
    failure: FailureOut


class TaskOut(_Out):
    """A task: the fields of ``taskstore.Task`` under their Python names; times in RFC 3339 UTC."""

    id: str
    queue: str
    kind: str
    state: State
    args: Any
    context: JsonObject | None
    reference_id: str | None
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    processing_timeout: float
    retry: JsonObject | None
    claim: ClaimOut | None
    cancel_requested: bool
    result: ResultOut | None
    created_at: datetime
    updated_at: datetime
    last_enqueued_at: datetime
    finished_at: datetime | None
    version: int
    recurring_id: str | None
    group_id: str | None
    unique_key: str | None
    concurrency_key: str | None
    expires_at: datetime | None
    failures: list[AttemptOut]


class ClaimedTaskOut(TaskOut):
    """A task just claimed: also its lease ``token``, which every worker write must carry."""

    token: str


class TasksOut(_Out):
    tasks: list[TaskOut]


class ClaimedOut(_Out):
    tasks: list[ClaimedTaskOut]


class TaskPageOut(_Out):
    items: list[TaskOut]
    next_cursor: str | None


class WhyOut(_Out):
    """Every gate holding a task back (``store.why``); empty when nothing does."""

    id: str
    reasons: list[str]


class OutcomeOut(_Out):
    """One item of a batch: ``state`` when it was accepted, else the problem that refused it."""

    id: str
    ok: bool
    state: State | None = None
    error: Problem | None = None


class OutcomesOut(_Out):
    outcomes: list[OutcomeOut]


class QueueOut(_Out):
    name: str
    paused: bool
    counts: dict[State, int]
    oldest_ready_at: datetime | None
    workers: int


class QueuesOut(_Out):
    queues: list[QueueOut]


class WorkerOut(_Out):
    worker_id: str
    queues: list[str]
    inflight: int
    host: str
    pid: int
    version: str
    started_at: datetime | None
    timestamp: datetime | None
    extras: JsonObject | None


class WorkersOut(_Out):
    workers: list[WorkerOut]


class RecurringOut(_Out):
    id: str
    schedule: str
    queue: str
    kind: str
    args: Any
    skip_if_outstanding: bool
    next_at: datetime | None
    owner: str | None


class RecurringListOut(_Out):
    recurring: list[RecurringOut]


class StatusOut(_Out):
    id: str
    state: StatusState
    payload: Any
    error: JsonObject | None
    attempt: int
    meta: JsonObject
    created_at: datetime | None
    updated_at: datetime | None


class GroupOut(_Out):
    id: str
    expected: int
    completed: int
    is_complete: bool
    results: dict[str, StatusOut]
    meta: JsonObject
    created_at: datetime | None
    updated_at: datetime | None
    expires_at: datetime | None


class Problem(_Out, omit_defaults=True):
    """An error as RFC 9457 ``application/problem+json``: ``type`` is the taskstore error's name."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None


# -- query strings ------------------------------------------------------------------------------


class TaskListQuery(_In):
    queue: QueueName | None = None
    state: State | None = None
    kind: Name | None = None
    cursor: Annotated[str, Meta(max_length=1000)] | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    descending: bool = False
    archived: bool = False


class EventsQuery(_In):
    """``id`` (repeated, up to 100): those tasks' or status records' statuses; none: queue snapshots."""

    id: Annotated[list[Name], Meta(min_length=1, max_length=100)] | None = None
    interval: Annotated[float, Meta(ge=0.1, le=60)] = 1.0
    timeout: Annotated[float, Meta(gt=0, le=86_400)] | None = None


JSON_ENCODER = msgspec.json.Encoder()
