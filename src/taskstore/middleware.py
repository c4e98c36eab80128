"""One ``call_next`` chain around handler execution.

A middleware is ``async def mw(ctx: TaskContext, call_next) -> Any``: it may act before and after
``await call_next(ctx)``, change ``ctx``, turn an exception into another, or not call on at all.
An App's own middleware runs between the attempt's log line (outermost: it sees what user middleware
made of the outcome) and the handler timeout (innermost: it covers only the handler). The worker does
those two itself, around and inside the chain (``log_attempt``, ``call_with_timeout``), rather than as two
more links: each link is a coroutine frame per attempt, a cost every task pays.

Middleware runs on the worker's event loop. What must happen in a *sync* handler's own thread (per-thread
resources: Django's database connections) is a thread context instead: ``app.thread_context(factory)``
registers a factory of context managers, and each sync handler call runs inside ``factory()``, entered and
exited in the handler's thread (see ``within``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._render import printable
from .control import attempt_outcome
from .errors import TaskstoreError
from .model import Failure, Task
from .transitions import will_retry

if TYPE_CHECKING:
    from .client import TaskFunction

log = logging.getLogger("taskstore.worker")


@dataclass
class TaskContext:
    """What a middleware sees of one execution."""

    task: Task
    handler: TaskFunction[Any, Any]
    args: Sequence[Any]
    kwargs: Mapping[str, Any]
    worker_id: str
    extras: dict[str, Any] = field(default_factory=dict)


CallNext = Callable[[TaskContext], Awaitable[Any]]
Middleware = Callable[[TaskContext, CallNext], Awaitable[Any]]
ThreadContext = Callable[[], AbstractContextManager[Any]]
"""A factory of the context manager that a sync handler call runs inside, in the handler's thread."""


def within(contexts: Sequence[ThreadContext], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` inside each of ``contexts`` (the first outermost), in the calling thread."""
    with contextlib.ExitStack() as stack:
        for factory in contexts:
            stack.enter_context(factory())
        return fn(*args, **kwargs)


class HandlerTimeout(TaskstoreError, TimeoutError):
    """A handler ran past its ``@app.task(timeout=…)``; the worker cancelled it and failed the attempt."""


async def call_with_timeout(ctx: TaskContext, call: CallNext) -> Any:
    """``call(ctx)`` within the handler's ``timeout``: past it, cancelled and failed with ``HandlerTimeout``."""
    limit = ctx.handler.options_.timeout
    if limit is None:
        return await call(ctx)
    try:
        async with asyncio.timeout(limit):
            return await call(ctx)
    except TimeoutError as exc:
        raise HandlerTimeout(f"{ctx.handler.kind} ran past its {limit:g}s timeout") from exc


def log_attempt(ctx: TaskContext, seconds: float, exc: BaseException | None = None) -> None:
    """One line per attempt: INFO when it is done or was interrupted, WARNING when it failed and will retry,
    ERROR when it ends dead (with the failure's traceback).

    At 10,000 tasks a second the INFO line is the worker's largest cost after the store (see README), so
    each level is checked before anything is formatted.
    """
    if exc is None:
        if log.isEnabledFor(logging.INFO):
            log.info("%s: done in %.3fs", _attempt(ctx.task), seconds)
    elif isinstance(exc, asyncio.CancelledError):  # the worker says why (lease lost, cancel, stop) where it knows
        if log.isEnabledFor(logging.INFO):
            log.info("%s: interrupted after %.3fs", _attempt(ctx.task), seconds)
    else:  # SystemExit and the like fail the attempt too (the worker catches them)
        log_failure(ctx.task, attempt_outcome(exc, ctx.handler.options_.retry_for)[0], seconds)


def _attempt(task: Task) -> str:
    return f"task {task.id} ({task.kind}) on queue {task.queue}, attempt {task.attempts}/{task.max_attempts}"


def log_failure(task: Task, failure: Failure, seconds: float | None = None) -> None:
    """Log a failed attempt with its failure's traceback: ERROR if it leaves the task dead, else WARNING.

    The traceback is the text the store keeps (``Failure.traceback``), each line escaped as task data is
    (a handler's exception text may hold terminal controls), attached as the record's exception text so
    that any formatter prints it under the line.
    """
    dead = not will_retry(task, failure)
    level = logging.ERROR if dead else logging.WARNING
    if not log.isEnabledFor(level):
        return
    when = "before it ran" if seconds is None else f"in {seconds:.3f}s"
    record = log.makeRecord(
        log.name,
        level,
        __file__,
        0,
        "%s: failed %s, %s: %s: %s",
        (_attempt(task), when, "dead" if dead else "will retry", failure.type, failure.message),
        None,
    )
    if failure.traceback:
        record.exc_text = "\n".join(printable(line) for line in failure.traceback.rstrip("\n").splitlines())
    log.handle(record)


def chain(middlewares: Sequence[Middleware], endpoint: CallNext) -> CallNext:
    """Compose ``middlewares`` (outermost first) around ``endpoint`` into one ``call_next``."""
    call = endpoint
    for mw in reversed(middlewares):
        call = _bind(mw, call)
    return call


def _bind(mw: Middleware, call_next: CallNext) -> CallNext:
    async def step(ctx: TaskContext) -> Any:
        return await mw(ctx, call_next)

    return step
