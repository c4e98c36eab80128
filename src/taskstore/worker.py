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

The roles live in ``_worker/``, one module each, over ``_worker.core.WorkerCore``; this class owns their
background tasks, starts and stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable

from . import errors
from ._connect import redact
from ._loops import loop_name
from ._worker.claimer import Claimer
from ._worker.completer import Completer
from ._worker.core import (
    _CANCEL_WAIT,
    _CLAIMERS,
    _RETRY_PAUSE,
    WorkerStats,
    log,
)
from ._worker.executor import Executor
from ._worker.leases import LeaseKeeper
from ._worker.record import Record
from .maintenance import Maintenance
from .model import Task

__all__ = ["Worker", "WorkerStats"]


class Worker(Claimer, Executor, LeaseKeeper, Completer, Record):
    """Runs an App's tasks. Use ``async with Worker(app, queues=…, concurrency=…):`` or ``await w.run()``."""

    # -- lifecycle ------------------------------------------------------------------------------

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
