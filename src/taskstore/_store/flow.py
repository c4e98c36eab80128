"""Flow control (SPEC §9) and the operator's views: queues, limits, activity, health, why."""

from __future__ import annotations

import builtins
import math
from datetime import UTC, datetime, timedelta

from .. import _why, errors, limits
from ..health import DEFAULT_THRESHOLDS, HealthReport, Thresholds
from ..model import (
    TERMINAL_STATES,
    Activity,
    DeadSummary,
    Limit,
    QueueInfo,
    State,
    as_seconds,
    check_id,
    check_queue,
)
from .core import (
    FINISHES_KEPT,
    StoreCore,
)


class StoreFlowControl(StoreCore):
    """Pause queues, limit keys, and look at how the store is doing."""

    # -- flow control (SPEC §9) -----------------------------------------------------------------

    async def pause_queue(self, name: str) -> None:
        """Claims skip the queue from now on (durable, across processes); running tasks finish."""
        driver = await self._ready()
        await driver.set_paused(check_queue(name), True)

    async def resume_queue(self, name: str) -> None:
        driver = await self._ready()
        await driver.set_paused(check_queue(name), False)
        self._wake()

    async def list_queues(self) -> builtins.list[QueueInfo]:
        """Every queue with tasks or a pause record: paused or not, counts per state, oldest ready, live workers."""
        driver = await self._ready()
        rows = await driver.queue_rows()
        beats = await driver.list_heartbeats(self._heartbeat_cutoff())
        return [
            QueueInfo(
                name=row.name,
                paused=row.paused,
                counts={state: row.counts.get(state, 0) for state in State},
                oldest_ready_at=row.oldest_ready_at,
                workers=sum(1 for b in beats if not b.queues or row.name in b.queues),
            )
            for row in rows
        ]

    async def activity(
        self, window: float | timedelta = 3600.0, bucket: float | timedelta = 60.0
    ) -> builtins.list[Activity]:
        """Tasks finished per ``bucket`` over the last ``window`` (oldest first, every slot present).

        The store keeps finishes per minute as they happen (a task reaching done, dead or cancelled counts
        in the minute of its ``finished_at``; archiving or retrying it later does not take that back), so a
        big store answers without counting its tasks. ``bucket`` is a whole number of minutes; the slots
        lie on that grid (counted from the Unix epoch) and the last one holds the store's clock now, so its
        count is of the part gone by. Finishes are kept for ``FINISHES_KEPT`` (7 days).
        """
        span = as_seconds(window, "window", positive=True)
        step = as_seconds(bucket, "bucket", positive=True)
        if step % 60:
            raise errors.InvalidTask(f"bucket must be a whole number of minutes, got {step:g} s")
        slots = math.ceil(span / step)
        if slots > 10_000:
            raise errors.InvalidTask(f"window / bucket gives {slots} slots; at most 10000")
        driver = await self._ready()
        now = self.now().timestamp()
        end = datetime.fromtimestamp((now // step + 1) * step, UTC)
        since = end - timedelta(seconds=slots * step)
        counts: builtins.list[dict[State, int]] = [{} for _ in range(slots)]
        for slot, state, n in await driver.finished_counts(since, step):
            if 0 <= slot < slots:
                counts[slot][state] = counts[slot].get(state, 0) + n
        return [
            Activity(
                start=since + timedelta(seconds=i * step),
                done=c.get(State.DONE, 0),
                dead=c.get(State.DEAD, 0),
                cancelled=c.get(State.CANCELLED, 0),
            )
            for i, c in enumerate(counts)
        ]

    async def dead_summaries(self, limit: int = 10_000) -> builtins.list[DeadSummary]:
        """The newest ``limit`` dead tasks (newest first) with only what grouping their failures needs: id,
        queue, kind, ``finished_at``, the failure's type and the start of its message (``DeadSummary``). Read
        along an index of dead tasks, never their payloads or tracebacks: cheap on a big store."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100_000:
            raise errors.InvalidTask(f"limit must be an int from 1 to 100000, got {limit!r}")
        driver = await self._ready()
        return await driver.dead_summaries(limit)

    async def vacuum(self) -> builtins.list[str]:
        """On PostgreSQL, VACUUM and ANALYZE the store's churning tables (tasks, the kept counts' deltas, ...) whose
        dead rows passed 5,000 plus 10% of their live rows, whether or not autovacuum runs: a queue table updates
        every row several times and deletes it at archive, and left to autovacuum's defaults (or with autovacuum
        off) it grows and slows every claim. Workers' maintenance calls this every ``vacuum_every`` (30 s).
        Returns the tables vacuumed; elsewhere a no-op."""
        driver = await self._ready()
        return await driver.vacuum()

    async def analyze_grown(self) -> builtins.list[str]:
        """On PostgreSQL, ANALYZE the store's tables whose live rows have grown to twice their count at their last
        VACUUM or ANALYZE (a table never analyzed: once it has 20 pages). PostgreSQL keeps one plan for a prepared
        statement, chosen for the table's size when it was planned, until the table is next vacuumed or analyzed,
        and a plan chosen while the tasks table was small reads all of it for every claim and completion. Workers'
        maintenance calls this every ``analyze_every`` (1 s); it costs one catalog read when nothing grew. Returns
        the tables analyzed; elsewhere a no-op."""
        driver = await self._ready()
        return await driver.analyze_grown()

    async def fold_counts(self) -> int:
        """Tidy the counts the store keeps for ``list_queues`` and ``activity`` (workers' maintenance does this
        every reap pass): on PostgreSQL fold the changes written since into the totals, and everywhere drop the
        per-minute finishes older than ``FINISHES_KEPT``. Returns how many rows it folded or dropped."""
        driver = await self._ready()
        return await driver.fold_counts(self.now() - FINISHES_KEPT)

    async def set_limit(
        self, key: str, concurrency: int | None = None, rate: int | None = None, per: float | timedelta = 1.0
    ) -> Limit:
        """Limit the tasks of ``concurrency_key=key``: at most ``concurrency`` claimed at once across every
        worker, at most ``rate`` claims per ``per`` seconds (a token bucket; see ``Limit``). Replaces a
        previous limit of the key."""
        limit = Limit(key=key, concurrency=concurrency, rate=rate, per=as_seconds(per, "per", positive=True))
        driver = await self._ready()
        await driver.put_limit(limit)
        self._wake()
        return limit

    async def clear_limit(self, key: str) -> bool:
        """Remove a key's limit (its tasks are unlimited again); False if it had none."""
        driver = await self._ready()
        removed = await driver.delete_limit(limits.name(key, "limit key"))
        if removed:
            self._wake()
        return removed

    async def list_limits(self) -> builtins.list[Limit]:
        driver = await self._ready()
        return await driver.list_limits()

    async def health(self, thresholds: Thresholds | None = None) -> HealthReport:
        """The store's health: sizes, dead tuples, vacuum, what holds back the xmin horizon, NOTIFY (see ``health``).

        What ``taskstore doctor`` prints and ``taskstore serve`` exports; ``thresholds`` say where a figure
        turns ``warn`` or ``bad``.
        """
        driver = await self._ready()
        return await driver.health(DEFAULT_THRESHOLDS if thresholds is None else thresholds)

    async def why(self, id: str) -> builtins.list[str]:
        """Every gate holding the task back, in plain words; empty when a claim would take it now.

        Archived tasks are read too (they have finished). ``NotFound`` when the id is unknown.
        """
        driver = await self._ready()
        task_id_ = check_id(id)
        try:
            task = await driver.get(task_id_)
        except errors.NotFound:
            try:
                task = await driver.get(task_id_, archived=True)
            except errors.NotFound:
                raise errors.NotFound(task_id_) from None
        now = self.now()
        gate, holders, paused = None, [], False
        if task.state not in TERMINAL_STATES:
            paused = task.queue in await driver.paused_queues()
            if task.concurrency_key is not None:
                gate = await driver.key_gate(task.concurrency_key)
                if gate is not None:
                    holders = await driver.claimed_with_key(task.concurrency_key, 10)
        workers = await driver.list_heartbeats(self._heartbeat_cutoff())
        facts = _why.Facts(
            task=task,
            now=now,
            paused=paused,
            gate=gate,
            holders=holders,
            workers=workers,
            worker_window=self.heartbeat_retention,
        )
        return _why.reasons(facts)
