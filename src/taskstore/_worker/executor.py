"""The executor: runs one claimed task through the middleware chain and writes how its attempt failed."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

from .. import _otel, errors
from .._threads import outcome_of
from ..client import TaskFunction
from ..codec import UndecodablePayload, encode
from ..context import _current, _stop
from ..control import attempt_outcome
from ..middleware import CallNext, TaskContext, call_with_timeout, chain, log_attempt, log_failure, within
from ..model import Failure, State, Task
from .core import _ENDED, _FAILURE_TRIES, _MAX_RETRY_PAUSE, _RETRY_PAUSE, WorkerCore, _Job, log


def _call_of(payload: Any) -> tuple[list[Any], dict[str, Any]] | str:
    """An App task's stored args as ``(args, kwargs)``, or why they are not an App call.

    ``None`` is a call with no arguments (a raw ``NewTask(queue, kind)`` leaves args ``None``); keys
    other than ``args``/``kwargs`` are refused rather than ignored, so a plain dict such as
    ``{"to": "a@b"}`` is not silently run as a call with no arguments.
    """
    if payload is None:
        return [], {}
    if isinstance(payload, dict):
        args, kwargs = payload.get("args", []), payload.get("kwargs", {})
        extra = sorted(map(str, payload.keys() - {"args", "kwargs"}))
        if not extra and isinstance(args, list) and isinstance(kwargs, dict):
            return args, kwargs
        if extra:
            problem = f"unexpected key(s) {', '.join(map(repr, extra))}"
        else:
            problem = "args must be a list" if not isinstance(args, list) else "kwargs must be an object"
    else:
        problem = f"got {type(payload).__name__}"
    return f'an App task needs args None or {{"args": [...], "kwargs": {{...}}}}: {problem}'


def _cancelled_by_worker() -> bool:
    """Whether the running task was cancelled (lease lost, cancel request, stop), not the handler raising it."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Executor(WorkerCore):
    """Run one task: its handler on the loop or on a thread, its failure written."""

    # -- running one task -----------------------------------------------------------------------

    async def _execute(self, job: _Job) -> None:
        try:
            value = await self._attempt(job)
            if value is not _ENDED:
                self._done.append((job, value))
                self._done_ready.set()
        finally:
            job.done = True
            self._jobs.pop(job.task.id, None)
            self._running -= 1
            self._start_waiting()
            self._capacity.set()

    async def _attempt(self, job: _Job) -> Any:
        """Run one claimed task through the middleware chain: the value to complete it with, or ``_ENDED``
        when its end (failure, cancellation, lost lease) is already taken care of.

        With tracing on, in a CONSUMER span that is current meanwhile: the handler's own spans are its
        children, in its thread too (a sync handler runs in a copy of this context).
        """
        tracer = self._tracing.tracer()
        if tracer is None:
            return await self._run_attempt(job)
        span, token = _otel.start_attempt(tracer, job.task)
        outcome = "interrupted"  # what escapes _run_attempt: the worker's own task was cancelled meanwhile
        try:
            value = await self._run_attempt(job)
            outcome = "done" if value is not _ENDED else job.outcome or "lost"
            return value
        finally:
            failure = job.failure
            text = None if failure is None else f"{failure.type}: {failure.message}"
            _otel.end_attempt(span, token, outcome, job.error, text)

    async def _run_attempt(self, job: _Job) -> Any:
        task = job.task
        token, stop_token = _current.set(task), _stop.set(job.stop)
        try:
            if job.lost or job.cancel_requested:  # found out while it waited (prefetch)
                await self._after_cancel(job)
                return _ENDED
            prepared = self._prepare(task)
            if isinstance(prepared, Failure):
                log_failure(task, prepared)
                await self._write_failure(job, prepared)
                return _ENDED
            assert self._pipeline is not None
            observers = self.store.observers
            started = time.perf_counter()
            try:
                try:
                    value = await self._pipeline(prepared)
                except BaseException as exc:
                    log_attempt(prepared, time.perf_counter() - started, exc)
                    raise
                finally:
                    if observers:
                        seconds = time.perf_counter() - started
                        for observer in observers:
                            observer.handled(task.queue, task.kind, seconds)
            except asyncio.CancelledError as exc:
                if _cancelled_by_worker():
                    await self._after_cancel(job)
                    return _ENDED
                job.error = exc
                await self._write_failure(job, *self._failure_of(exc, prepared))  # the handler raised it itself
                return _ENDED
            except BaseException as exc:  # SystemExit, KeyboardInterrupt too: they end the attempt, not the worker
                job.error = exc
                await self._write_failure(job, *self._failure_of(exc, prepared))
                return _ENDED
            log_attempt(prepared, time.perf_counter() - started)
            if value is not None:
                try:
                    encode(self.store.codec, value, "the handler's result")
                except errors.InvalidTask as exc:
                    job.error = exc
                    await self._write_failure(job, Failure("UnencodableResult", str(exc), retryable=False))
                    return _ENDED
            if job.lost:
                self.stats.lost += 1
                return _ENDED
            return value
        finally:
            _current.reset(token)
            _stop.reset(stop_token)

    async def run_claimed(self, task: Task) -> BaseException | None:
        """Run one task claimed under this worker's id here, in the caller's coroutine, on the claim loop's
        path (middleware, handler, failure mapping), and record its outcome before returning.

        For in-process runs (``taskstore.testing.drain``, an App's eager mode), on a worker that was never
        started; returns what the handler raised (its failure already recorded), or ``None``. Its lease is
        not renewed meanwhile. ``close_threads()`` when done with the worker.
        """
        if task.claim is None or task.claim.worker_id != self.worker_id:
            raise errors.ConfigError(f"task {task.id!r} is not claimed by worker {self.worker_id!r}")
        if self._store is None:
            self._store = await self.app.store()
        if self._pipeline is None:
            self._pipeline = self._chain()
        job = _Job(task=task, claim=task.claim, beat_at=math.inf)
        value = await self._attempt(job)
        current = asyncio.current_task()
        if current is not None and current.cancelling():  # the caller was cancelled: give the task back
            with contextlib.suppress(errors.TaskstoreError):
                await asyncio.shield(self.store.unclaim(job.claim))
            raise asyncio.CancelledError
        if value is not _ENDED:
            (refused,) = await self.store.acknowledge_many([(job.task, value)])
            if refused is not None:
                raise refused
            self.stats.succeeded += 1
        return job.error

    def close_threads(self) -> None:
        """Let the threads that ran sync handlers for ``run_claimed`` end (``stop()`` does it for a started worker)."""
        self._threads.close()

    def _chain(self) -> CallNext:
        # The attempt's log line and the handler timeout wrap this chain from outside and inside (_run_attempt,
        # _call_handler): see the middleware module.
        return chain(self.app.middlewares, self._call_handler)

    def _prepare(self, task: Task) -> TaskContext | Failure:
        handler = self.app.tasks.get(task.kind)
        if handler is None:
            return Failure(
                "UnknownTaskKind", f"no handler for kind {task.kind!r} in this worker's App", retryable=False
            )
        payload = task.args
        if isinstance(payload, UndecodablePayload):
            return Failure("UndecodablePayload", f"the payload could not be decoded: {payload.error}", retryable=False)
        call = _call_of(payload)
        if isinstance(call, str):
            return Failure("InvalidPayload", call, retryable=False)
        args, kwargs = call
        return TaskContext(task=task, handler=handler, args=args, kwargs=kwargs, worker_id=self.worker_id)

    def _failure_of(self, exc: BaseException, ctx: TaskContext) -> tuple[Failure, float | None]:
        """The attempt's failure, and the retry delay the handler asked for (``None``: the task's policy).

        ``Retry``, ``Reject`` and ``retry_for`` are mapped by ``control.attempt_outcome``; whether the
        task then waits or goes dead is decided by ``transitions``. Arguments that do not fit the
        handler are not worth a retry; the signature is checked only after a TypeError, so a good
        call costs no binding.
        """
        if isinstance(exc, TypeError):
            signature = self._signature(ctx.handler)
            if signature is not None:
                try:
                    signature.bind(*ctx.args, **ctx.kwargs)
                except TypeError as mismatch:
                    return Failure("InvalidArguments", f"{ctx.handler.kind}: {mismatch}", retryable=False), None
        return attempt_outcome(exc, ctx.handler.options_.retry_for)

    def _signature(self, handler: TaskFunction[Any, Any]) -> inspect.Signature | None:
        if handler.kind not in self._signatures:
            try:
                self._signatures[handler.kind] = inspect.signature(handler.fn)
            except (TypeError, ValueError):
                self._signatures[handler.kind] = None
        return self._signatures[handler.kind]

    async def _call_handler(self, ctx: TaskContext) -> Any:
        if ctx.handler.options_.timeout is not None:
            return await call_with_timeout(ctx, self._call_now)
        return await self._call_now(ctx)

    async def _call_now(self, ctx: TaskContext) -> Any:
        fn = ctx.handler.fn
        if ctx.handler.is_async:
            return await fn(*ctx.args, **ctx.kwargs)
        contexts = tuple(self.app.thread_contexts)
        target = functools.partial(within, contexts, fn) if contexts else fn
        call = functools.partial(contextvars.copy_context().run, target, *ctx.args, **ctx.kwargs)
        if self._thread_slots is None:
            return await self._in_thread(call, ctx)
        async with self._thread_slots:
            return await self._in_thread(call, ctx)

    async def _in_thread(self, call: Callable[[], Any], ctx: TaskContext) -> Any:
        future = self._threads.run(call)
        try:
            return await outcome_of(future)
        except asyncio.CancelledError:
            flag = _stop.get()
            if flag is not None:
                flag.set()  # the handler may be polling taskstore.cancel_requested(): its outcome is discarded
            if future.cancelled():  # timed out, lost, cancelled or released while its thread still runs
                self.stats.abandoned += 1
                log.warning(
                    "task %s: its sync handler still runs after the attempt ended; its thread is abandoned "
                    "(%d so far) and its outcome will be discarded",
                    ctx.task.id,
                    self.stats.abandoned,
                )
            raise

    async def _after_cancel(self, job: _Job) -> None:
        if job.lost:
            job.outcome = "lost"
            self.stats.lost += 1
        elif job.cancel_requested:
            job.outcome = "cancelled"
            try:
                await self.store.mark_cancelled(job.task)
                self.stats.cancelled += 1
            except errors.TaskstoreError as exc:
                log.warning("task %s: could not record its cancellation: %s", job.task.id, exc)
        else:
            job.outcome = "released"  # the worker is stopping: stop() gives it back with unclaim

    async def _write_failure(self, job: _Job, failure: Failure, retry_in: float | None = None) -> None:
        job.failure = failure
        if job.lost:
            job.outcome = "lost"
            self.stats.lost += 1
            return
        refusals = 0
        for attempt in itertools.count(1):
            try:
                written = await self.store.mark_failed(job.task, failure, retry_in=retry_in)
                job.outcome = "dead" if written.state is State.DEAD else "retry"
                self.stats.failed += 1
                return
            except errors.LeaseError as exc:
                job.outcome = "lost"
                self.stats.lost += 1
                log.warning("task %s: failure not recorded, the lease was lost: %s", job.task.id, exc)
                return
            except errors.BackendUnavailable as exc:  # the lease is kept meanwhile: wait for the store
                log.warning("task %s: could not record its failure (try %d): %s", job.task.id, attempt, exc)
            except errors.TaskstoreError as exc:
                refusals += 1
                if refusals >= _FAILURE_TRIES:
                    log.error("task %s: gave up recording its failure; its lease will time out: %s", job.task.id, exc)
                    return
                log.warning("task %s: could not record its failure (try %d): %s", job.task.id, attempt, exc)
            await asyncio.sleep(min(_RETRY_PAUSE * attempt, _MAX_RETRY_PAUSE))

    # -- starting tasks within the worker's concurrency --

    def _start(self, job: _Job) -> None:
        self._running += 1
        job.runner = asyncio.get_running_loop().create_task(self._execute(job), name=f"taskstore:{job.task.id}")

    def _start_waiting(self) -> None:
        # A stopping worker starts nothing new: what waits is given back by stop().
        while self._waiting and self._running < self.concurrency and not self._stop_requested.is_set():
            self._start(self._waiting.popleft())
