"""The lease keeper: renews every in-flight lease in one batched write, and follows cancel requests."""

from __future__ import annotations

import asyncio
import contextlib
import time

from .. import errors
from ..model import Task
from .core import _RETRY_PAUSE, WorkerCore, _Job, log


class LeaseKeeper(WorkerCore):
    """Keep the leases of in-flight tasks alive; cancel handlers whose lease is lost or cancelled."""

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
