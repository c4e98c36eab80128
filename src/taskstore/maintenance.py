"""The reaper, the archiver and the recurring scheduler, run inside every worker.

No leader is needed: each step is an idempotent compare-and-set in the store (a reap re-checks the
lease inside its write, an archive moves each row once, a recurring slot has one task id), so any
number of workers may run this loop at once. A failing step is logged and retried on the next
round; it never stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from . import limits
from .errors import ConfigError, TaskstoreError
from .store import Store

log = logging.getLogger("taskstore.maintenance")


@dataclass(frozen=True, slots=True)
class MaintenanceConfig:
    reap_every: float = 5.0
    archive_after: float = 7 * 86400.0
    archive_every: float = 60.0
    purge_every: float = 60.0
    vacuum_every: float = 30.0
    analyze_every: float = 1.0  # a look at the tables' sizes (one catalog read): see Store.analyze_grown
    recurring_poll: float = 1.0  # at most this long between looks at the schedules

    def __post_init__(self) -> None:
        # Every interval > 0 (a zero would spin the loop); archive_after may be 0 (archive at once).
        for name in ("reap_every", "archive_every", "purge_every", "vacuum_every", "analyze_every", "recurring_poll"):
            value = limits.duration(getattr(self, name), name, positive=True, error=ConfigError)
            object.__setattr__(self, name, value)
        object.__setattr__(
            self, "archive_after", limits.duration(self.archive_after, "archive_after", error=ConfigError)
        )


class Maintenance:
    def __init__(self, store: Store, config: MaintenanceConfig | None = None) -> None:
        self.store = store
        self.config = config or MaintenanceConfig()
        self.reaped = 0
        self.archived = 0
        self.fired = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        cfg = self.config
        due = {"reap": 0.0, "archive": 0.0, "purge": 0.0, "vacuum": cfg.vacuum_every, "analyze": 0.0}
        while not stop.is_set():
            now = time.monotonic()
            if now >= due["reap"]:
                self.reaped += await self._step("reap", self.store.reap())
                await self._step("fold counts", self.store.fold_counts())
                due["reap"] = now + cfg.reap_every
            if now >= due["archive"]:
                self.archived += await self._step("archive", self.store.archive(older_than=cfg.archive_after))
                due["archive"] = now + cfg.archive_every
            if now >= due["purge"]:
                await self._step("purge heartbeats", self.store.purge_worker_heartbeats())
                await self._step("purge groups", self.store.purge_groups())
                await self._step("purge statuses", self.store.purge_statuses())
                due["purge"] = now + cfg.purge_every
            if now >= due["vacuum"]:
                await self._step("vacuum", self._on_tables("vacuumed", self.store.vacuum()))
                due["vacuum"] = now + cfg.vacuum_every
            if now >= due["analyze"]:
                await self._step("analyze", self._on_tables("analyzed", self.store.analyze_grown()))
                due["analyze"] = now + cfg.analyze_every
            self.fired += await self._step("recurring", self.store.enqueue_due_recurring())
            wait = min(due.values()) - time.monotonic()
            wait = min(max(wait, 0.0), await self._until_next_slot())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.01))

    async def _until_next_slot(self) -> float:
        try:
            schedules = await self.store.list_recurring()
        except TaskstoreError as exc:
            log.warning("could not read recurring schedules: %s", exc)
            return self.config.recurring_poll
        now = self.store.now()
        waits = [(r.next_at - now).total_seconds() for r in schedules if r.next_at is not None]
        return min([self.config.recurring_poll, *waits])

    async def _on_tables(self, done: str, work: Awaitable[list[str]]) -> int:
        """A step that runs on some of the store's tables (vacuum, analyze): how many, named in the debug log."""
        tables = await work
        if tables:
            log.debug("%s %s", done, ", ".join(tables))
        return len(tables)

    async def _step(self, name: str, work: Awaitable[int]) -> int:
        try:
            return await work
        except TaskstoreError as exc:
            log.warning("maintenance step %s failed, will retry: %s", name, exc)
            return 0
