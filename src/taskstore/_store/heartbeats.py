"""Worker heartbeats (SPEC §4): who is alive, as the workers last told the store."""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Mapping, Sequence

from .. import errors, limits
from ..model import (
    WorkerHeartbeat,
    check_aware,
    check_id,
)
from .core import (
    StoreCore,
    _json,
)


def _check_heartbeat(beat: WorkerHeartbeat) -> None:
    check_id(beat.worker_id, "worker_id")
    if isinstance(beat.queues, str) or not isinstance(beat.queues, Sequence):
        raise errors.InvalidTask(f"heartbeat queues must be a list of queue names, got {beat.queues!r}")
    for queue in beat.queues:
        limits.name(queue, "heartbeat queue")
    limits.integer(beat.inflight, "heartbeat inflight", 0)
    limits.integer(beat.pid, "heartbeat pid", 0)
    limits.name(beat.host, "heartbeat host", empty=True)
    limits.name(beat.version, "heartbeat version", empty=True)
    if beat.started_at is not None:
        check_aware(beat.started_at, "heartbeat started_at")
    if beat.extras is not None:
        if not isinstance(beat.extras, Mapping):
            raise errors.InvalidTask(f"heartbeat extras must be a dict or None, got {type(beat.extras).__name__}")
        _json(beat.extras, "heartbeat extras")


class StoreHeartbeats(StoreCore):
    """Record and list worker heartbeats."""

    # -- worker heartbeats (SPEC §4) -------------------------------------------------------------

    async def set_worker_heartbeat(self, heartbeat: WorkerHeartbeat) -> WorkerHeartbeat:
        """Upsert a worker's heartbeat; its ``timestamp`` is set from the store's clock."""
        if not isinstance(heartbeat, WorkerHeartbeat):
            raise errors.InvalidTask(f"expected a WorkerHeartbeat, got {type(heartbeat).__name__}")
        _check_heartbeat(heartbeat)
        if heartbeat.started_at is not None:  # in UTC when its offset is one PostgreSQL cannot read
            heartbeat = dataclasses.replace(heartbeat, started_at=check_aware(heartbeat.started_at, "started_at"))
        driver = await self._ready()
        return await driver.put_heartbeat(heartbeat)

    async def get_worker_heartbeat(self, worker_id: str) -> WorkerHeartbeat | None:
        """The worker's last heartbeat, or ``None`` when there is none within the retention window."""
        driver = await self._ready()
        return await driver.get_heartbeat(check_id(worker_id, "worker_id"), self._heartbeat_cutoff())

    async def list_worker_heartbeats(self) -> builtins.list[WorkerHeartbeat]:
        driver = await self._ready()
        return await driver.list_heartbeats(self._heartbeat_cutoff())

    async def purge_worker_heartbeats(self) -> int:
        """Delete heartbeats older than the retention window (the maintenance loop does this)."""
        driver = await self._ready()
        return await driver.purge_heartbeats(self._heartbeat_cutoff())
