"""The completer: writes successes in batches, and on stop what finished within the grace."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

from .. import errors
from .core import _FLUSH_TRIES, _LAST_FLUSH_MINIMUM, _MAX_RETRY_PAUSE, _RETRY_PAUSE, WorkerCore, _Job, log


class Completer(WorkerCore):
    """Write finished tasks' results in batches."""

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
