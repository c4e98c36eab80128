"""The ``Store``: the public API of SPEC §7 over any backend driver.

The facade validates, encodes payloads with the codec, waits for ``block_for`` and decodes what the
driver returns; the driver applies transitions atomically. One implementation for every backend.

It is put together from one class per concern, each in ``_store/`` over ``_store.core.StoreCore``.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Iterable

from . import errors
from ._store.claims import StoreClaims
from ._store.core import _limit, _queues
from ._store.flow import StoreFlowControl
from ._store.groups import StoreGroups
from ._store.heartbeats import StoreHeartbeats
from ._store.recurring import StoreRecurring
from ._store.statuses import StoreStatuses
from ._store.tasks import StoreTasks
from .model import Task


class Store(StoreTasks, StoreClaims, StoreFlowControl, StoreRecurring, StoreStatuses, StoreGroups, StoreHeartbeats):
    """A durable task store. Use ``async with taskstore.open(url) as store``."""

    # -- the worker side (SPEC §5) ---------------------------------------------------------------

    async def poll(
        self, worker_id: str, queues: str | Iterable[str] | None = None, *, batch: int = 1, block_for: float = 1.0
    ) -> AsyncGenerator[Task, None]:
        """Yield claimed tasks as the consumer asks for them; idles in blocking claims, never busy-loops.

        With ``batch > 1`` it claims up to that many at a time and hands them out one by one; a task
        that waited in the buffer for over a third of its lease (on the store's clock) is renewed
        (``report_in``) before it is handed out, and one whose lease was lost meanwhile is skipped.
        Tasks claimed but not handed out are released (``unclaim``) when the iteration stops.
        """
        qs = _queues(queues)
        _limit(batch, "batch")
        pending: builtins.list[Task] = []
        try:
            while True:
                if not pending:
                    claimed = await self.claim(worker_id, qs, limit=batch, block_for=block_for, at_least=1)
                    pending = claimed[::-1]
                    continue
                task = pending.pop()
                lease = task.claim
                if (
                    lease is not None
                    and (lease.times_out_at - self.now()).total_seconds() < task.processing_timeout * 2 / 3
                ):
                    try:
                        task = await self.report_in(task)
                    except errors.LeaseError:
                        continue  # reaped or taken over while it waited here
                yield task
        finally:
            if pending:
                await self._release_shielded(pending)

    def __repr__(self) -> str:
        from ._connect import redact  # _connect builds stores: imported late, only to print

        return f"<taskstore.Store {redact(self.url) if self.url else type(self._driver).__name__}>"
