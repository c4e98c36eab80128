"""The claimer: claims up to the free capacity (never more than the worker can run) and starts each task."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from .. import errors
from ..model import Task
from .core import _RETRY_PAUSE, _Job, log
from .executor import Executor


class Claimer(Executor):
    """Claim tasks as capacity frees, and start them."""

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
        # Subscribed for the claimer's life, so a claim that came back short is followed by a wait for new work
        # rather than by a claim that finds none (``Store._claim``'s ``drained``).
        waiter = None
        drained = False
        try:
            while not self._stopping and not self._stop_requested.is_set():
                free = self._free()
                if free <= 0:
                    self._capacity.clear()
                    if self._free() <= 0:
                        await self._capacity.wait()
                    continue
                self._reserved += free
                try:
                    if waiter is None:
                        waiter = await store._claim_waiter()
                    tasks = await store._claim(
                        self.worker_id,
                        self.queues,
                        limit=free,
                        block_for=self.claim_wait,
                        at_least=1,
                        until=self._stop_requested,
                        waiter=waiter,
                        drained=drained,
                    )
                except errors.TaskstoreError as exc:
                    log.warning("worker %s could not claim: %s", self.worker_id, exc)
                    drained = False
                    await asyncio.sleep(_RETRY_PAUSE)
                    continue
                finally:
                    self._reserved -= free  # no await from here to the holds below: no other claimer sees the gap
                if self._stop_requested.is_set():
                    await self._give_back(tasks)
                    return
                for task in tasks:
                    self._hold(task)
                drained = len(tasks) < free
                if drained:
                    self._capacity.set()  # room this claim did not fill: a claimer waiting for room may take it
        finally:
            if waiter is not None:
                store._drop_claim_waiter(waiter)

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
