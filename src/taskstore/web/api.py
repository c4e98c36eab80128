"""The JSON API of SPEC §10 under ``/api/v1``: the same Store methods the CLI calls, one endpoint each.

Producers create tasks; workers in any language claim them (``POST /claims``, with ``block_for`` to wait),
report in and finish them with the lease ``token`` the claim returned, so every write is fenced exactly as a
Python worker's is; operators list, cancel, retry and pause. ``POST /completions`` finishes many tasks of one
worker in one request (one fenced write in the store), for workers that batch as the Python worker does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.routing import BaseRoute

from .. import _otel, errors
from ..model import Failure, State
from . import convert, events
from .auth import Role
from .problems import HTTPProblem, problem_of
from .routes import Call, Endpoint, read_body
from .routes import routes as route_table
from .schemas import (
    ClaimedOut,
    ClaimIn,
    CompletionsIn,
    DoneIn,
    FailIn,
    GroupOut,
    LeaseIn,
    NewTaskIn,
    NewTasksIn,
    OutcomeOut,
    OutcomesOut,
    QueueName,
    QueueOut,
    QueuesOut,
    RecurringListOut,
    ReportIn,
    StatusOut,
    TaskListQuery,
    TaskOut,
    TaskPageOut,
    TasksOut,
    WhyOut,
    WorkersOut,
)

# -- producers and operators ----------------------------------------------------------------------


_ONE = msgspec.json.Decoder(NewTaskIn)
_MANY = msgspec.json.Decoder(NewTasksIn)
_TASKS_KEY = "Object contains unknown field `tasks`"


def _create_body(raw: bytes) -> NewTaskIn | NewTasksIn:
    """One task, or ``{"tasks": [...]}``: told apart by the ``tasks`` key (the two shapes share no field).

    Decoded straight into the one shape (the common case, parsed once); a batch is refused by it at its
    ``tasks`` key, before anything else is parsed, and then decoded as a batch.
    """
    try:
        return _ONE.decode(raw)
    except msgspec.ValidationError as exc:
        if str(exc) != _TASKS_KEY:
            raise
    return _MANY.decode(raw)


async def create_tasks(call: Call) -> TaskOut | TasksOut:
    raw = await read_body(call.request, call.state.max_body)
    body = _create_body(raw)
    with _otel.extracted(call.request.headers):  # a client's traceparent: the tasks carry its trace
        if isinstance(body, NewTasksIn):
            created = await call.store.create_many([convert.new_task(item) for item in body.tasks])
            return TasksOut(tasks=[convert.task_out(t) for t in created])
        return convert.task_out(await call.store.create(convert.new_task(body)))


async def list_tasks(call: Call) -> TaskPageOut:
    q: TaskListQuery = call.query
    page = await call.store.list(
        state=q.state,
        queue=q.queue,
        cursor=q.cursor,
        limit=q.limit,
        descending=q.descending,
        archived=q.archived,
        kind=q.kind,
    )
    return TaskPageOut(items=[convert.task_out(t) for t in page.items], next_cursor=page.next_cursor)


async def get_task(call: Call) -> TaskOut:
    """A live task, or the archived one of that id: a client checking a result must not lose it to archiving."""
    task_id = call.path["id"]
    try:
        return convert.task_out(await call.store.get(task_id))
    except errors.NotFound:
        return convert.task_out(await call.store.get_archived(task_id))


async def cancel_task(call: Call) -> TaskOut:
    return convert.task_out(await call.store.cancel(call.path["id"]))


async def retry_task(call: Call) -> TaskOut:
    return convert.task_out(await call.store.retry(call.path["id"]))


async def why_task(call: Call) -> WhyOut:
    return WhyOut(id=call.path["id"], reasons=await call.store.why(call.path["id"]))


# -- workers --------------------------------------------------------------------------------------


async def claim(call: Call) -> ClaimedOut:
    body: ClaimIn = call.body
    tasks = await call.store.claim(body.worker_id, body.queues, limit=body.limit, block_for=body.block_for)
    if tasks and body.block_for > 0 and await call.request.is_disconnected():
        # The worker gave up waiting: hand the tasks back now rather than leave them to the lease's expiry.
        with contextlib.suppress(errors.TaskstoreError):
            await asyncio.gather(*(call.store.unclaim(t) for t in tasks))
        return ClaimedOut(tasks=[])
    return ClaimedOut(tasks=[convert.claimed_out(t) for t in tasks])


def _lease(call: Call, body: LeaseIn) -> Any:
    return convert.lease(call.path["id"], body.worker_id, body.token)


async def report(call: Call) -> TaskOut:
    body: ReportIn = call.body
    task = await call.store.report_in(_lease(call, body), body.data, extend_by=body.extend_by)
    return convert.task_out(task)


async def done(call: Call) -> TaskOut:
    body: DoneIn = call.body
    return convert.task_out(await call.store.mark_done(_lease(call, body), body.result))


async def fail(call: Call) -> TaskOut:
    body: FailIn = call.body
    task = await call.store.mark_failed(_lease(call, body), convert.failure_in(body.failure), retry_in=body.retry_in)
    return convert.task_out(task)


async def unclaim(call: Call) -> TaskOut:
    return convert.task_out(await call.store.unclaim(_lease(call, call.body)))


async def cancelled(call: Call) -> TaskOut:
    """The worker honours a cancel request (``cancel_requested`` in a report's answer): ``cancelled``."""
    return convert.task_out(await call.store.mark_cancelled(_lease(call, call.body)))


async def completions(call: Call) -> OutcomesOut:
    """Successes in one fenced batch write; failures one by one (each is its own retry decision)."""
    body: CompletionsIn = call.body
    ids = [item.id for item in body.tasks]
    if len(set(ids)) < len(ids):
        raise HTTPProblem(422, "InvalidTask", "a task id appears twice in one batch", field="tasks")
    outcomes: dict[str, OutcomeOut] = {}
    successes = [item for item in body.tasks if item.failure is None]
    if successes:
        leases = [(convert.lease(i.id, body.worker_id, i.token), i.result) for i in successes]
        for item, refused in zip(successes, await call.store.acknowledge_many(leases), strict=True):
            outcomes[item.id] = _outcome(item.id, refused, State.DONE)
    for item in body.tasks:
        if item.failure is None:
            continue
        lease = convert.lease(item.id, body.worker_id, item.token)
        failure: Failure = convert.failure_in(item.failure)
        try:
            task = await call.store.mark_failed(lease, failure, retry_in=item.retry_in)
        except errors.TaskstoreError as exc:
            if isinstance(exc, errors.BackendUnavailable):
                raise
            outcomes[item.id] = _outcome(item.id, exc, None)
        else:
            outcomes[item.id] = _outcome(item.id, None, task.state)
    return OutcomesOut(outcomes=[outcomes[i] for i in ids])


def _outcome(task_id: str, refused: BaseException | None, state: State | None) -> OutcomeOut:
    if refused is None:
        return OutcomeOut(id=task_id, ok=True, state=state)
    return OutcomeOut(id=task_id, ok=False, error=problem_of(refused))


# -- queues, workers, schedules, results ----------------------------------------------------------


async def list_queues(call: Call) -> QueuesOut:
    return QueuesOut(queues=[convert.queue_out(q) for q in await call.store.list_queues()])


async def _queue(call: Call, name: str) -> QueueOut:
    for info in await call.store.list_queues():
        if info.name == name:
            return convert.queue_out(info)
    return QueueOut(name=name, paused=False, counts=dict.fromkeys(State, 0), oldest_ready_at=None, workers=0)


async def pause_queue(call: Call) -> QueueOut:
    await call.store.pause_queue(call.path["name"])
    return await _queue(call, call.path["name"])


async def resume_queue(call: Call) -> QueueOut:
    await call.store.resume_queue(call.path["name"])
    return await _queue(call, call.path["name"])


async def list_workers(call: Call) -> WorkersOut:
    return WorkersOut(workers=[convert.worker_out(b) for b in await call.store.list_worker_heartbeats()])


async def list_recurring(call: Call) -> RecurringListOut:
    return RecurringListOut(recurring=[convert.recurring_out(r) for r in await call.store.list_recurring()])


async def get_status(call: Call) -> StatusOut:
    status = await call.store.get_status(call.path["id"])
    if status is None:
        raise errors.NotFound(call.path["id"], "status")
    return convert.status_out(status)


async def get_group(call: Call) -> GroupOut:
    group = await call.store.get_group(call.path["id"])
    if group is None:
        raise errors.NotFound(call.path["id"], "group")
    return convert.group_out(group)


# -- the table ------------------------------------------------------------------------------------

_WRITE_ERRORS = (401, 403, 404, 409, 413, 422, 503)
_READ_ERRORS = (401, 403, 404, 422, 503)

ENDPOINTS: Sequence[Endpoint] = (
    Endpoint(
        "POST", "/tasks", "create_tasks", "Create one task, or several all-or-nothing", Role.WORKER, create_tasks,
        response=TaskOut | TasksOut, status=201, body=NewTaskIn | NewTasksIn, decode_body=False,
        errors=(401, 403, 409, 413, 422, 503),
        description=(
            "A unique task whose key is held returns the existing task (SPEC §9), still with 201. A W3C "
            "`traceparent` header (with `tracestate`) puts the tasks in that trace: their `context` gets those "
            "keys unless the body sets them, and workers link each attempt's span to it."
        ),
    ),
    Endpoint("GET", "/tasks", "list_tasks", "List tasks in enqueue order", Role.READ, list_tasks,
             response=TaskPageOut, query=TaskListQuery, errors=_READ_ERRORS),
    Endpoint("GET", "/tasks/{id}", "get_task", "One task (live, else archived)", Role.READ, get_task,
             response=TaskOut, errors=_READ_ERRORS),
    Endpoint("GET", "/tasks/{id}/why", "why_task", "Every gate holding a task back", Role.READ, why_task,
             response=WhyOut, errors=_READ_ERRORS),
    Endpoint("POST", "/tasks/{id}/cancel", "cancel_task", "Cancel a task (a running one is asked to stop)",
             Role.ADMIN, cancel_task, response=TaskOut, errors=_WRITE_ERRORS),
    Endpoint("POST", "/tasks/{id}/retry", "retry_task", "Queue a dead or cancelled task again", Role.ADMIN,
             retry_task, response=TaskOut, errors=_WRITE_ERRORS),
    Endpoint("POST", "/claims", "claim", "Claim ready tasks, waiting up to block_for seconds", Role.WORKER, claim,
             response=ClaimedOut, body=ClaimIn, errors=(401, 403, 413, 422, 503), tag="workers"),
    Endpoint("POST", "/tasks/{id}/report", "report", "Report progress and renew the lease", Role.WORKER, report,
             response=TaskOut, body=ReportIn, errors=_WRITE_ERRORS, tag="workers"),
    Endpoint("POST", "/tasks/{id}/done", "done", "Finish a claimed task with its result", Role.WORKER, done,
             response=TaskOut, body=DoneIn, errors=_WRITE_ERRORS, tag="workers"),
    Endpoint("POST", "/tasks/{id}/fail", "fail", "Fail an attempt (retried with backoff, or dead)", Role.WORKER,
             fail, response=TaskOut, body=FailIn, errors=_WRITE_ERRORS, tag="workers"),
    Endpoint("POST", "/tasks/{id}/unclaim", "unclaim", "Give a claimed task back (no attempt spent)", Role.WORKER,
             unclaim, response=TaskOut, body=LeaseIn, errors=_WRITE_ERRORS, tag="workers"),
    Endpoint("POST", "/tasks/{id}/cancelled", "cancelled", "Honour a cancel request: the task ends cancelled",
             Role.WORKER, cancelled, response=TaskOut, body=LeaseIn, errors=_WRITE_ERRORS, tag="workers"),
    Endpoint("POST", "/completions", "completions", "Finish many claimed tasks of one worker in one request",
             Role.WORKER, completions, response=OutcomesOut, body=CompletionsIn, errors=(401, 403, 413, 422, 503),
             tag="workers"),
    Endpoint("GET", "/queues", "list_queues", "Queues with their counts per state", Role.READ, list_queues,
             response=QueuesOut, errors=_READ_ERRORS, tag="queues"),
    Endpoint("POST", "/queues/{name}/pause", "pause_queue", "Pause a queue: claims skip it", Role.ADMIN,
             pause_queue, response=QueueOut, errors=_WRITE_ERRORS, tag="queues", params={"name": QueueName}),
    Endpoint("POST", "/queues/{name}/resume", "resume_queue", "Resume a paused queue", Role.ADMIN, resume_queue,
             response=QueueOut, errors=_WRITE_ERRORS, tag="queues", params={"name": QueueName}),
    Endpoint("GET", "/workers", "list_workers", "Live workers' heartbeats", Role.READ, list_workers,
             response=WorkersOut, errors=_READ_ERRORS, tag="workers"),
    Endpoint("GET", "/recurring", "list_recurring", "Recurring schedules and their next run", Role.READ,
             list_recurring, response=RecurringListOut, errors=_READ_ERRORS, tag="queues"),
    Endpoint("GET", "/statuses/{id}", "get_status", "A task's or a status record's status", Role.READ, get_status,
             response=StatusOut, errors=_READ_ERRORS, tag="results"),
    Endpoint("GET", "/groups/{id}", "get_group", "A group or chord and its members' statuses", Role.READ,
             get_group, response=GroupOut, errors=_READ_ERRORS, tag="results"),
    events.ENDPOINT,
)  # fmt: skip


def routes(state: Any) -> list[BaseRoute]:
    return list(route_table(ENDPOINTS, state))
