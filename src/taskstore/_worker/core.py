"""The Worker's shared state: its settings, its in-flight jobs and counters, the pauses it keeps.

Each role (``claimer``, ``executor``, ``leases``, ``completer``, ``record``) is a class over this one;
``taskstore.worker.Worker`` inherits them all and runs them as its background tasks.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _observe, _otel, errors, limits
from .._threads import HandlerThreads
from ..client import App
from ..context import StopFlag
from ..maintenance import MaintenanceConfig
from ..middleware import CallNext
from ..model import Claim, Failure, Task, check_queue
from ..store import Store

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


class WorkerCore:
    """What every role of the Worker shares; not used on its own."""

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

    @property
    def store(self) -> Store:
        if self._store is None:
            raise errors.TaskstoreError("the worker has not started")
        return self._store
