"""The worker's own record: the heartbeat it keeps in the store while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from .. import errors
from ..model import WorkerHeartbeat
from .core import WorkerCore, log


class Record(WorkerCore):
    """Keep this worker's heartbeat in the store."""

    # -- the worker's own record ----------------------------------------------------------------

    def _heartbeat(self, *, stopping: bool = False) -> WorkerHeartbeat:
        from .. import __version__

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
