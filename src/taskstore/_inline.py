"""Running an App's tasks in this process, without a worker's loops: eager mode and ``taskstore.testing``.

Each task is claimed as a worker claims it (so pauses, limits and the claim order hold) and run by
``Worker.run_claimed``: the same middleware, handler call and failure mapping as a running worker,
with the outcome recorded before the next task is claimed. One task at a time, so a task that a
handler enqueues with a higher priority runs next, as it would on a worker with one slot.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from . import errors
from .client import DEFAULT_QUEUE, App
from .model import Task
from .store import Store
from .worker import Worker


class InlineRunner:
    """One never-started ``Worker`` whose ``run_claimed`` runs what this runner claims. Close it after use."""

    def __init__(self, app: App) -> None:
        # The queue list only names the worker's record; claims here say their own queues.
        self.worker = Worker(
            app, queues=[DEFAULT_QUEUE], concurrency=1, maintenance=False, worker_id=f"inline-{uuid.uuid4().hex[:12]}"
        )

    async def run_next_due(self, store: Store, queues: Sequence[str]) -> Task | None:
        """Claim the next due task of ``queues`` (every queue when empty) and run it; ``None`` when none is due."""
        claimed = await store.claim(self.worker.worker_id, list(queues), limit=1)
        if not claimed:
            return None
        await self.worker.run_claimed(claimed[0])
        return claimed[0]

    async def run_ids(self, store: Store, ids: Sequence[str]) -> BaseException | None:
        """Run each of these tasks that is there and due now, in order; the first exception a handler raised."""
        first: BaseException | None = None
        for task_id in ids:
            try:
                task = await store.claim_task(task_id, self.worker.worker_id)
            except errors.NotFound:  # a chain's later link, never created after a link that failed
                continue
            if task is None:  # finished, delayed, or held by someone else: not for now
                continue
            raised = await self.worker.run_claimed(task)
            if first is None:
                first = raised
        return first

    def close(self) -> None:
        self.worker.close_threads()


async def run_now(app: App, store: Store, ids: Sequence[str]) -> BaseException | None:
    """Eager mode's run of just-enqueued tasks (a chain's links and a chord's callback follow in ``ids``)."""
    runner = InlineRunner(app)
    try:
        return await runner.run_ids(store, ids)
    finally:
        runner.close()
