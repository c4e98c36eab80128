"""The worker: claims tasks as capacity frees, runs them, keeps their leases alive, completes them.

One worker is one event loop with these background tasks, all owned by the ``Worker``:

- the claimer claims up to the free capacity (never more than it can run) and starts each task;
- each task runs through the middleware chain: async handlers on the loop, sync ones on threads that
  grow past any a handler never gives back (see ``_threads``);
- the heart-beat renews every in-flight lease in one batched ``report_in_many`` well before it times
  out; a lease found lost (reaped, taken over) cancels its handler and its outcome is not written,
  and a cancel request cancels the handler and records ``cancelled``;
- the cancel watch learns of cancel requests as they are made (``_cancels``): in-process at once, by
  NOTIFY on PostgreSQL, by the ``-shm`` commit watch on SQLite; sync handlers see them through
  ``taskstore.cancel_requested()``;
- the completer writes successes in batches with ``mark_done_many`` (failures are written at once);
  a finished task keeps its lease renewed until its completion is written, and on stop the completer
  writes what finished within the grace;
- maintenance (reaper, archiver, recurring scheduler) and the worker's own heartbeat record.

A handler never crashes the worker: whatever it raises (``SystemExit`` and ``KeyboardInterrupt``
included) becomes the attempt's failure; ``taskstore.Retry``/``Reject`` and ``retry_for`` choose how it is
retried (see ``control``). Unknown kinds and undecodable payloads go to ``dead`` with a clear failure.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import inspect
import itertools
import logging
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import _observe, _otel, errors, limits
from ._connect import redact
from ._loops import loop_name
from ._threads import HandlerThreads, outcome_of
from .client import App, TaskFunction
from .codec import UndecodablePayload, encode
from .context import StopFlag, _current, _stop
from .control import attempt_outcome
from .maintenance import Maintenance, MaintenanceConfig
from .middleware import CallNext, TaskContext, call_with_timeout, chain, log_attempt, log_failure, within
from .model import Claim, Failure, State, Task, WorkerHeartbeat, check_queue
from .store import Store

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

log = logging.getLogger("taskstore.worker")

_RETRY_PAUSE = 0.5  # after the store could not be reached
_CLAIMERS = 2  # claims on their way at once (see _claim_loop)
_MAX_RETRY_PAUSE = 2.0
_FLUSH_TRIES = 10  # a completion the store refuses for another reason than being unreachable
_FAILURE_TRIES = 3
_LAST_FLUSH_MINIMUM = 3.0  # results that finished as the grace ran out still get this long to be written
_CANCEL_WAIT = 3.0  # for handlers cancelled at the end of the grace to unwind
_ENDED: Any = object()  # an attempt whose end is already written (or is not to be written)


@dataclass(eq=False)
class _Job:
    task: Task
    claim: Claim
    beat_at: float  # monotonic time of the next lease renewal
    runner: asyncio.Task[None] | None = None
    lost: bool = False  # the lease was reaped or taken over: the outcome must not be written
    cancel_requested: bool = False
    released: bool = False  # the worker is stopping and gives the task back
    done: bool = False
    error: BaseException | None = None  # what the handler raised (for run_claimed's caller)
    failure: Failure | None = None  # the failure recorded for this attempt
    outcome: str | None = None  # how the attempt ended, when not ``done``: retry, dead, cancelled, lost, released
    stop: StopFlag = field(default_factory=StopFlag)  # what taskstore.cancel_requested() reads


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


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0
    cancelled: int = 0
    released: int = 0
    abandoned: int = 0  # sync handlers still running on a thread after their attempt ended
    started_at: float = field(default_factory=time.monotonic)


class Worker:
    """Runs an App's tasks. Use ``async with Worker(app, queues=…, concurrency=…):`` or ``await w.run()``."""

    def __init__(
        self,
        app: App,
        queues: Iterable[str] | None = None,
        concurrency: int = 10,
        *,
        prefetch: int = 0,
        worker_id: str | None = None,
        grace: float = 30.0,
        threads: int | None = None,
        claim_wait: float = 0.5,
        maintenance: bool = True,
        maintenance_config: MaintenanceConfig | None = None,
        completion_batch: int = 256,
        completion_linger: float = 0.002,
        heartbeat_every: float = 5.0,
        tracer_provider: TracerProvider | None = None,
        observers: Iterable[_observe.Observer] = (),
    ) -> None:
        bad = errors.ConfigError
        limits.integer(concurrency, "concurrency", 1, limits.MAX_CONCURRENCY, error=bad)
        limits.integer(prefetch, "prefetch", 0, limits.MAX_CONCURRENCY, error=bad)
        if threads is not None:
            limits.integer(threads, "threads", 1, limits.MAX_CONCURRENCY, error=bad)
        limits.integer(completion_batch, "completion_batch", 1, limits.MAX_CONCURRENCY, error=bad)
        grace = limits.duration(grace, "grace", error=bad)
        claim_wait = limits.duration(claim_wait, "claim_wait", positive=True, error=bad)  # 0 would spin
        completion_linger = limits.duration(completion_linger, "completion_linger", error=bad)
        heartbeat_every = limits.duration(heartbeat_every, "heartbeat_every", positive=True, error=bad)
        if worker_id is not None:
            limits.name(worker_id, "worker_id", error=bad)
        chosen = sorted({t.queue for t in app.tasks.values()}) if queues is None else [check_queue(q) for q in queues]
        if not chosen:
            raise errors.ConfigError("the worker has no queues: register tasks on the App or pass queues=")
        self.app = app
        self.queues: list[str] = chosen
        self.concurrency = concurrency
        # Claimed tasks held ready beyond the running ones: a slot that frees starts the next at once instead
        # of after a claim's round trip. Their leases are renewed like running ones; 0 (the default) runs every
        # task it claims, which shares a queue most evenly between many workers.
        self.prefetch = prefetch
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.grace = grace
        self.claim_wait = claim_wait
        self.completion_batch = completion_batch
        self.completion_linger = completion_linger
        self.heartbeat_every = heartbeat_every
        self.stats = WorkerStats()
        # Each attempt runs in an OpenTelemetry span of this provider's (default: the global one), when the API
        # is installed, an SDK records, and TASKSTORE_OTEL does not switch it off.
        self._tracing = _otel.Tracing(tracer_provider)
        # Added to the worker's store while it runs: they see its claims and outcomes, and its handlers' durations.
        self._own_observers = tuple(observers)
        self._threads = HandlerThreads(keep=threads or concurrency)
        # ``threads`` below ``concurrency`` caps the sync handlers running at once; an abandoned thread
        # gives its place back.
        self._thread_cap = threads if threads is not None and threads < concurrency else None
        self._thread_slots: asyncio.Semaphore | None = None
        self._maintenance_on = maintenance
        self._maintenance_config = maintenance_config
        self._jobs: dict[str, _Job] = {}  # every task this worker holds a lease on: running or waiting
        self._waiting: collections.deque[_Job] = collections.deque()  # claimed, not yet started (prefetch)
        self._reserved = 0  # slots the claims on their way may fill
        self._claimers: list[asyncio.Task[None]] = []
        self._running = 0
        self._done: list[tuple[_Job, Any]] = []
        self._flushing: list[tuple[_Job, Any]] = []  # the batch the completer is writing
        self._background: list[asyncio.Task[None]] = []
        self._signatures: dict[str, inspect.Signature | None] = {}
        self._pipeline: CallNext | None = None
        self._store: Store | None = None
        self._owns_store = False
        self._started_at: datetime | None = None
        self._started = False
        self._stopping = False
        self._stopped = False
        # Events are made in start(), on the loop that runs the worker.
        self._capacity: asyncio.Event
        self._beat_wake: asyncio.Event
        self._done_ready: asyncio.Event
        self._stop_requested: asyncio.Event
        self._immediate: asyncio.Event
        self._quit_background: asyncio.Event
        self._last_flush: asyncio.Event  # the completer writes what is left, then ends
        self._completer: asyncio.Task[None]

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            raise errors.TaskstoreError("the worker has not started")
        return self._store

    @property
    def forced(self) -> bool:
        """True when a second stop request cut the grace period short."""
        return self._started and self._immediate.is_set()

    @property
    def inflight(self) -> int:
        return len(self._jobs)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._capacity = asyncio.Event()
        self._beat_wake = asyncio.Event()
        self._done_ready = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._immediate = asyncio.Event()
        self._quit_background = asyncio.Event()
        self._last_flush = asyncio.Event()
        if self._thread_cap is not None:
            self._thread_slots = asyncio.Semaphore(self._thread_cap)
        # The App's store when it lives on this loop; a store of the worker's own when the App's was opened on
        # another loop (a store is used from its own loop only).
        self._store, self._owns_store = await self.app.loop_store()
        for observer in self._own_observers:
            self._store.add_observer(observer)
        self._started_at = self._store.now()
        self._pipeline = self._chain()
        removed = await self.app.store_recurring(self._store)
        if removed:
            log.info("removed recurring schedules App %r no longer declares: %s", self.app.name, ", ".join(removed))
        await self._store.set_worker_heartbeat(self._heartbeat())  # visible from the moment start() returns
        spawn = asyncio.get_running_loop().create_task
        self._completer = spawn(self._guard("completer", self._complete_loop), name="taskstore-completer")
        self._claimers = [
            spawn(self._guard("claimer", self._claim_loop), name=f"taskstore-claimer-{n}") for n in range(_CLAIMERS)
        ]
        self._background = [
            *self._claimers,
            spawn(self._guard("heart-beat", self._beat_loop), name="taskstore-heartbeat"),
            self._completer,
            spawn(self._guard("worker record", self._record_loop), name="taskstore-record"),
            spawn(self._guard("cancel watch", self._follow_cancels), name="taskstore-cancels"),
        ]
        if self._maintenance_on:
            maintenance = Maintenance(self._store, self._maintenance_config)
            self._background.append(
                spawn(
                    self._guard("maintenance", lambda: maintenance.run(self._quit_background)), name="taskstore-maint"
                )
            )
        log.info(
            "worker %s started on %s: queues %s, concurrency %d, %s event loop",
            self.worker_id,
            redact(self._store.url),
            ",".join(self.queues),
            self.concurrency,
            loop_name(asyncio.get_running_loop()),
        )

    def request_stop(self, *, immediate: bool = False) -> None:
        """Ask the worker to stop (safe from a signal handler on the worker's loop)."""
        if not self._started:
            return
        if self._stop_requested.is_set() or immediate:
            self._immediate.set()
        self._stop_requested.set()
        self._capacity.set()

    async def wait_stopped(self) -> None:
        await self._stop_requested.wait()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running tasks finish within ``grace`` seconds, release the rest."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stopping = True
        self._stop_requested.set()
        self._capacity.set()
        for claimer in self._claimers:
            with contextlib.suppress(asyncio.CancelledError):
                await claimer  # it returns within claim_wait; tasks it claims meanwhile are released
        grace = self.grace if grace is None else grace
        deadline = time.monotonic() + grace
        await self._drain(grace)
        await self._write_last_results(deadline)
        self._quit_background.set()
        self._done_ready.set()
        self._beat_wake.set()
        for task in self._background[len(self._claimers) :]:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, timeout=max(self.claim_wait, 5.0))
        self._threads.close()
        with contextlib.suppress(errors.TaskstoreError):
            await self.store.set_worker_heartbeat(self._heartbeat(stopping=True))
        for observer in self._own_observers:
            self.store.remove_observer(observer)
        if self._owns_store:
            await self.store.close()
        s = self.stats
        log.info(
            "worker %s stopped: %d succeeded, %d failed, %d released, %d lost",
            self.worker_id,
            s.succeeded,
            s.failed,
            s.released,
            s.lost,
        )

    async def _drain(self, grace: float) -> None:
        runners = [j.runner for j in self._jobs.values() if j.runner is not None]
        if runners and grace > 0 and not self._immediate.is_set():
            everything = asyncio.ensure_future(asyncio.wait(runners))
            cut = asyncio.ensure_future(self._immediate.wait())
            await asyncio.wait([everything, cut], timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            for pending in (everything, cut):
                pending.cancel()
        self._waiting.clear()
        left = list(self._jobs.values())
        for job in left:
            job.released = True
            if job.runner is not None:
                job.runner.cancel()
        if left:
            runners = [j.runner for j in left if j.runner is not None]
            if runners:
                # A handler that swallows its cancellation must not hold the stop: its task is released anyway.
                _, stuck = await asyncio.wait(runners, timeout=_CANCEL_WAIT)
                if stuck:
                    log.warning("worker %s: %d handler(s) ignored their cancellation", self.worker_id, len(stuck))
            outcomes = await asyncio.gather(*(self.store.unclaim(j.claim) for j in left), return_exceptions=True)
            released = sum(1 for o in outcomes if isinstance(o, Task))
            self.stats.released += released
            log.info("worker %s released %d unfinished task(s) for other workers", self.worker_id, released)

    async def run(self, *, install_signals: bool = False) -> None:
        """Run until ``request_stop`` (or SIGTERM/SIGINT when ``install_signals``), then stop gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        installed = []
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        try:
            await self._stop_requested.wait()
            await self.stop()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        again = self._stop_requested.is_set()
        log.warning(
            "worker %s: %s, %s",
            self.worker_id,
            sig.name,
            "stopping now" if again else f"finishing running tasks (up to {self.grace:g}s)",
        )
        self.request_stop(immediate=again)

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _guard(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop; one that fails is logged and restarted, never taking the worker down."""
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: the %s loop failed; restarting it", self.worker_id, name)
                await asyncio.sleep(_RETRY_PAUSE)

    # -- claiming -------------------------------------------------------------------------------

    def _free(self) -> int:
        """Room for more claims. Finished tasks whose results are not yet written keep their leases (and stay
        claimed in the store) until the completer writes them: past one batch of those, claim no more until it
        catches up. Otherwise claims that outpace completions grow that backlog without bound, and with it what
        each completion costs and how long each lease must be renewed."""
        unwritten = len(self._done) + len(self._flushing)
        behind = max(0, unwritten - self.completion_batch)
        return self.concurrency + self.prefetch - len(self._jobs) - self._reserved - behind

    async def _claim_loop(self) -> None:
        """One of the worker's claimers (_CLAIMERS of them): each claims the room no claim on its way has taken.

        With one claimer, the slots that free while its claim is on its way wait for its round trip before they
        are even asked for, and the slots then split into groups that take turns (3 and 7 of 10): two round
        trips per batch, the tail of enqueue->start. A second claimer asks for them meanwhile. Slots are
        reserved before a claim goes out and given back when it returns, so together they never hold more
        than concurrency + prefetch.
        """
        store = self.store
        while not self._stopping and not self._stop_requested.is_set():
            free = self._free()
            if free <= 0:
                self._capacity.clear()
                if self._free() <= 0:
                    await self._capacity.wait()
                continue
            self._reserved += free
            try:
                tasks = await store.claim(
                    self.worker_id,
                    self.queues,
                    limit=free,
                    block_for=self.claim_wait,
                    at_least=1,
                    until=self._stop_requested,
                )
            except errors.TaskstoreError as exc:
                log.warning("worker %s could not claim: %s", self.worker_id, exc)
                await asyncio.sleep(_RETRY_PAUSE)
                continue
            finally:
                self._reserved -= free  # no await from here to the holds below: no other claimer sees the gap
            if self._stop_requested.is_set():
                await self._give_back(tasks)
                return
            for task in tasks:
                self._hold(task)
            if len(tasks) < free:
                self._capacity.set()  # room this claim did not fill: a claimer waiting for room may take it

    async def _give_back(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            with contextlib.suppress(errors.TaskstoreError):
                await self.store.unclaim(task)
                self.stats.released += 1

    def _hold(self, task: Task) -> None:
        assert task.claim is not None
        job = _Job(task=task, claim=task.claim, beat_at=time.monotonic() + task.processing_timeout / 3)
        self._jobs[task.id] = job
        self.stats.claimed += 1
        if self._running < self.concurrency:
            self._start(job)
        else:
            self._waiting.append(job)
        self._beat_wake.set()

    def _start(self, job: _Job) -> None:
        self._running += 1
        job.runner = asyncio.get_running_loop().create_task(self._execute(job), name=f"taskstore:{job.task.id}")

    def _start_waiting(self) -> None:
        # A stopping worker starts nothing new: what waits is given back by stop().
        while self._waiting and self._running < self.concurrency and not self._stop_requested.is_set():
            self._start(self._waiting.popleft())

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

    # -- leases ---------------------------------------------------------------------------------

    def _held(self) -> list[_Job]:
        """Every task whose lease this worker keeps: running, waiting, or finished with its result unwritten."""
        return [*self._jobs.values(), *(j for j, _ in self._done), *(j for j, _ in self._flushing)]

    async def _beat_loop(self) -> None:
        while not self._quit_background.is_set():
            now = time.monotonic()
            due = [j for j in self._held() if j.beat_at <= now and not (j.lost or j.released)]
            if due:
                try:
                    outcomes = await self.store.report_in_many([j.task for j in due])
                except errors.TaskstoreError as exc:
                    log.warning("worker %s could not renew leases: %s", self.worker_id, exc)
                    outcomes = []
                    for j in due:
                        j.beat_at = now + _RETRY_PAUSE
                still_held = set(self._held())  # one finished meanwhile: its renewal's refusal means nothing
                for job, outcome in zip(due, outcomes, strict=False):
                    if job in still_held:
                        self._renewed(job, outcome, now)
            upcoming = [j.beat_at for j in self._held() if not (j.lost or j.released)]
            wait = min(upcoming) - time.monotonic() if upcoming else 1.0
            self._beat_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_wake.wait(), timeout=min(max(wait, 0.01), 1.0))

    def _renewed(self, job: _Job, outcome: Task | errors.TaskstoreError, now: float) -> None:
        if isinstance(outcome, Task):
            job.beat_at = now + outcome.processing_timeout / 3
            if outcome.cancel_requested:
                self._cancel(job)
            return
        if isinstance(outcome, errors.LeaseError | errors.NotFound):
            log.warning("task %s: lease lost (%s); cancelling its handler", job.task.id, outcome)
            job.lost = True
            if job.runner is not None:
                job.runner.cancel()
        else:
            job.beat_at = now + _RETRY_PAUSE

    def _cancel(self, job: _Job) -> None:
        if not job.cancel_requested:
            job.cancel_requested = True  # a waiting job sees it when its turn comes
            job.stop.set()
            if job.runner is not None:
                job.runner.cancel()

    async def _follow_cancels(self) -> None:
        """Learn of cancel requests as they are made, not at the next renewal (see ``_cancels``)."""

        def cancellable() -> list[str]:
            return [i for i, j in self._jobs.items() if not (j.cancel_requested or j.lost or j.released)]

        def requested(ids: set[str]) -> None:
            for job in filter(None, map(self._jobs.get, ids)):
                self._cancel(job)

        await self.store.follow_cancel_requests(cancellable, requested, self._quit_background)

    # -- completion -----------------------------------------------------------------------------

    async def _complete_loop(self) -> None:
        while True:
            if not self._done:
                if self._last_flush.is_set():
                    return
                self._done_ready.clear()  # no await between the check and the wait: no lost wake-up
                await self._done_ready.wait()
                continue
            if len(self._done) < self.completion_batch and not self._last_flush.is_set():
                await asyncio.sleep(self.completion_linger)  # let a batch gather
            batch, self._done = self._done[: self.completion_batch], self._done[self.completion_batch :]
            self._flushing = batch  # the heart-beat keeps these leases until the write is in
            try:
                await self._flush(batch)
            finally:
                self._flushing = []
                self._capacity.set()  # a claimer held back by unwritten results may go on (_free)

    async def _write_last_results(self, deadline: float) -> None:
        """On stop, let the completer write what finished: within the grace, or a short minimum after it."""
        self._last_flush.set()
        self._done_ready.set()
        completer = self._completer
        budget = 1.0 if self._immediate.is_set() else max(deadline - time.monotonic(), _LAST_FLUSH_MINIMUM)
        finished, _ = await asyncio.wait([completer], timeout=budget)
        if finished:
            return
        unwritten = len(self._done) + len(self._flushing)
        completer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await completer
        log.error(
            "worker %s stopped before it could record %d finished task(s); they run again once their leases time out",
            self.worker_id,
            unwritten,
        )

    async def _flush(self, batch: list[tuple[_Job, Any]]) -> None:
        refusals = 0
        for attempt in itertools.count(1):
            try:
                # Tasks, not claims: they carry the same lease, and give the store their queue and kind to report.
                outcomes = await self.store.acknowledge_many([(job.task, value) for job, value in batch])
                break
            except errors.BackendUnavailable as exc:
                problem: errors.TaskstoreError = exc  # the leases are kept meanwhile: wait for the store
            except errors.TaskstoreError as exc:
                problem, refusals = exc, refusals + 1
                if refusals >= _FLUSH_TRIES:
                    log.error(
                        "worker %s gave up recording %d completions (%s); their leases will time out",
                        self.worker_id,
                        len(batch),
                        exc,
                    )
                    return
            log.warning(
                "worker %s could not record %d completions (try %d): %s", self.worker_id, len(batch), attempt, problem
            )
            await asyncio.sleep(min(_RETRY_PAUSE * attempt, _MAX_RETRY_PAUSE))
        for (job, _), outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                self.stats.succeeded += 1
            else:
                self.stats.lost += 1
                log.warning("task %s: completion refused (%s): another worker's result stands", job.task.id, outcome)

    # -- the worker's own record ----------------------------------------------------------------

    def _heartbeat(self, *, stopping: bool = False) -> WorkerHeartbeat:
        from . import __version__

        s = self.stats
        return WorkerHeartbeat(
            worker_id=self.worker_id,
            queues=tuple(self.queues),
            inflight=0 if stopping else len(self._jobs),
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            started_at=self._started_at,
            extras={
                "concurrency": self.concurrency,
                "succeeded": s.succeeded,
                "failed": s.failed,
                "abandoned_threads": s.abandoned,
                "stopping": stopping or self._stop_requested.is_set(),
            },
        )

    async def _record_loop(self) -> None:
        while not self._quit_background.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quit_background.wait(), timeout=self.heartbeat_every)
            if self._quit_background.is_set():
                return
            try:
                await self.store.set_worker_heartbeat(self._heartbeat())
            except errors.TaskstoreError as exc:
                log.warning("worker %s could not write its heartbeat: %s", self.worker_id, exc)
