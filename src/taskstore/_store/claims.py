"""Claims: blocking claims that also recover lost leases, and the release of unused claims."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from .. import _observe, errors
from .._ids import lease_token
from .._wakeup import HUB, LOST_WAKEUPS_POLL, Waiter
from ..backend import (
    Change,
    Driver,
)
from ..changes import Unclaim
from ..model import (
    Task,
    as_seconds,
    check_id,
)
from .core import (
    _RECOVERY_RETRY,
    LEASE_END_CHECK,
    StoreCore,
    _limit,
    _queues,
)


class StoreClaims(StoreCore):
    """Claim tasks, one or many, blocking for a while when none is ready."""

    # -- claims ---------------------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        queues: str | Iterable[str] | None = None,
        limit: int = 1,
        block_for: float | timedelta = 0.0,
        *,
        at_least: int | None = None,
        until: asyncio.Event | None = None,
    ) -> builtins.list[Task]:
        """Claim up to ``limit`` ready tasks; wait up to ``block_for`` seconds for more to arrive.

        It returns as soon as ``limit`` tasks are claimed, or ``at_least`` of them when given: a
        worker with room for 100 passes ``at_least=1`` to start the first task without waiting
        for the other 99 to be enqueued. Setting ``until`` ends the wait early (a stopping worker).
        """
        return await self._claim(worker_id, queues, limit, block_for, at_least=at_least, until=until)

    async def _claim_waiter(self) -> Waiter:
        """A waiter woken by new work in this store, for ``_claim(waiter=…)``; ``_drop_claim_waiter`` ends it."""
        driver = await self._ready()
        return HUB.subscribe(driver.wake_key)

    def _drop_claim_waiter(self, waiter: Waiter) -> None:
        HUB.unsubscribe(self._driver.wake_key, waiter)

    async def _claim(
        self,
        worker_id: str,
        queues: str | Iterable[str] | None,
        limit: int,
        block_for: float | timedelta,
        *,
        at_least: int | None,
        until: asyncio.Event | None,
        waiter: Waiter | None = None,
        drained: bool = False,
    ) -> builtins.list[Task]:
        """``claim``; a worker's claimer also passes the ``waiter`` it keeps (``_claim_waiter``) and ``drained``.

        ``drained``: this caller's last claim, made while ``waiter`` was already subscribed, took fewer tasks than
        it asked for, so the queues held no more as it read them. This claim then waits for a wake-up before it
        asks, instead of asking at once for nothing: at a few hundred tasks a second each task cost a claimer two
        claims, the one that took it and an empty one right after. Nothing created since is missed: its wake-up
        has set the waiter, and the wait returns at once.
        """
        check_id(worker_id, "worker_id")
        qs = _queues(queues)
        _limit(limit)
        enough = limit if at_least is None else min(_limit(at_least, "at_least"), limit)
        wait = as_seconds(block_for, "block_for")
        driver = await self._ready()
        if wait <= 0:
            claimed = await self._claim_batch(driver, worker_id, qs, limit)
            if claimed:
                self._keyed(claimed)
                self._touched()
                self._publish(claimed, raw=True)
                if self._observers:
                    _observe.claimed(self._observers, claimed, self._labels)
            return [self._decoded(t) for t in claimed]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        # Subscribe before the first attempt, so a task created in between still wakes us.
        own = waiter is None
        if waiter is None:
            waiter = HUB.subscribe(driver.wake_key)
        elif not drained:
            waiter.clear()  # this claim looks now: a wake-up from before it is answered by it
        got: builtins.list[Task] = []
        try:
            if own or not drained:  # drained: the caller's waiter says when there is more to ask for
                got = await self._claim_batch(driver, worker_id, qs, limit)
            while len(got) < enough and not (until is not None and until.is_set()):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                # Woken by new work, or by the end of a lease that may have been lost (SPEC §2, recovery).
                ends = await self._lease_end(driver, tuple(qs))
                pause = min(remaining, self._claim_poll(driver))
                if ends is not None:
                    pause = min(pause, max((ends - self.clock.now()).total_seconds(), _RECOVERY_RETRY))
                woke = await waiter.wait(pause, until)
                if until is not None and until.is_set():
                    break
                if woke or self._recovery_due(tuple(qs)) or await driver.has_claimable(qs):
                    got += await self._claim_woken(driver, worker_id, qs, limit - len(got))
        except BaseException:
            # Cancelled or failed while waiting for more: what was claimed goes back, not to the reaper.
            if got:
                await self._release_shielded(got)
            raise
        finally:
            if own:
                HUB.unsubscribe(driver.wake_key, waiter)
        if got:
            self._keyed(got)
            self._touched()
            self._publish(got, raw=True)
            if self._observers:
                _observe.claimed(self._observers, got, self._labels)
        return [self._decoded(t) for t in got]

    async def _claim_woken(
        self, driver: Driver, worker_id: str, queues: Sequence[str], limit: int
    ) -> builtins.list[Task]:
        """A blocked claim's claim once woken: one at a time per set of queues in this store.

        One wake-up wakes every blocked claim of the process (a worker runs two claimers), and for one new task
        all but one would ask the database for nothing. So a woken claim that finds another of the same queues
        on its way waits for its answer, and asks only if that one took all it asked for (there may be more);
        otherwise it goes back to waiting. A task created after that claim read the queues is not missed: its
        wake-up comes after this one and sets the waiter again, so the next wait returns at once.
        """
        key = tuple(queues)
        while (ahead := self._woken_claims.get(key)) is not None:
            if not await asyncio.shield(ahead):
                return []
        flight: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._woken_claims[key] = flight
        full = True  # a claim that failed tells the others to ask for themselves
        try:
            claimed = await self._claim_batch(driver, worker_id, queues, limit)
            full = len(claimed) >= limit
            return claimed
        finally:
            del self._woken_claims[key]
            flight.set_result(full)

    def _claim_poll(self, driver: Driver) -> float:
        """How long a blocked claim waits before it looks again: shorter while wake-ups are known to be lost.

        The driver decides that (PostgreSQL probes its LISTEN, see ``backends.postgres``); claimers then
        poll by themselves, even below a ``poll_interval`` chosen on the promise of being woken.
        """
        if driver.notifications_lost:
            return min(self.poll_interval, LOST_WAKEUPS_POLL)
        return self.poll_interval

    async def _claim_batch(
        self, driver: Driver, worker_id: str, queues: Sequence[str], limit: int
    ) -> builtins.list[Task]:
        """One driver claim that is never lost: a caller cancelled mid-claim gives back what it took.

        It also recovers the leases of its queues that have ended (the driver reaps them just before it
        claims) once the earliest known lease end has passed, so a crashed or frozen worker's tasks run again
        about a lease after they were last renewed, not after the next reaper pass.
        """
        qs = tuple(queues)
        await self._lease_end(driver, qs)
        recover = self._recovery_due(qs)
        if recover:
            del self._lease_ends[qs]  # read again after this claim: the next lease to end is another
        job = asyncio.ensure_future(driver.claim(worker_id, queues, limit, lease_token, recover))
        try:
            claimed = await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(self._give_back_when_done)
            raise
        if claimed:
            self._leases_taken(claimed)
        return claimed

    async def _lease_end(self, driver: Driver, qs: tuple[str, ...]) -> datetime | None:
        """The earliest end of a lease in ``qs`` (store clock), as read at most ``LEASE_END_CHECK`` ago."""
        known = self._lease_ends.get(qs)
        now = asyncio.get_running_loop().time()
        if known is None or now - known[0] >= LEASE_END_CHECK:
            known = (now, await driver.lease_expiry(qs))
            self._lease_ends[qs] = known
        return known[1]

    def _recovery_due(self, qs: tuple[str, ...]) -> bool:
        known = self._lease_ends.get(qs)
        return known is not None and known[1] is not None and known[1] <= self.clock.now()

    def _leases_taken(self, claimed: Sequence[Task]) -> None:
        """Leases handed out here may end before the earliest one known: count them in without waiting for a read
        (a claimer that holds a lease this store gave it recovers it in time even if it was the only one)."""
        ends = min((t.claim.times_out_at for t in claimed if t.claim is not None), default=None)
        if ends is None:
            return
        for qs, (read_at, known) in list(self._lease_ends.items()):
            if (known is None or ends < known) and (not qs or any(t.queue in qs for t in claimed)):
                self._lease_ends[qs] = (read_at, ends)

    def _give_back_when_done(self, job: asyncio.Future[builtins.list[Task]]) -> None:
        if job.cancelled() or job.exception() is not None or not job.result():
            return
        self._keep(asyncio.ensure_future(self._release(job.result())))

    async def _release_shielded(self, tasks: Sequence[Task]) -> None:
        release = asyncio.ensure_future(self._release(tasks))
        self._keep(release)
        with contextlib.suppress(BaseException):
            await asyncio.shield(release)

    def _keep(self, task: asyncio.Future[Any]) -> None:
        """Hold a strong reference to a background release until it is done (the loop keeps only weak ones)."""
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _release(self, tasks: Sequence[Task]) -> None:
        leases = [t.claim for t in tasks if t.claim is not None]
        changes: builtins.list[tuple[str, Change]] = [(lease.task_id, Unclaim(lease)) for lease in leases]
        with contextlib.suppress(errors.TaskstoreError):
            outcomes = await self._driver.apply(changes)
            self._freed(outcomes)
            self._wake()
            if self._observers:
                _observe.ended(self._observers, outcomes, leases, self._labels)
            self._publish((o for o in outcomes if isinstance(o, Task)), raw=True)

    async def claim_task(self, id: str, worker_id: str, ttl: float | timedelta | None = None) -> Task | None:
        """Claim one specific task; ``None`` while it is not claimable (also for its current owner)."""
        check_id(id)
        check_id(worker_id, "worker_id")
        lease = None if ttl is None else as_seconds(ttl, "ttl", positive=True)
        driver = await self._ready()
        task = await driver.claim_task(id, worker_id, lease, lease_token())
        self._touched()
        if task is None:
            return None
        self._keyed([task])
        decoded = self._decoded(task)
        self._publish([decoded])
        if self._observers:
            _observe.claimed(self._observers, [task], self._labels)
        return decoded

    async def find_available(self, queues: str | Iterable[str] | None = None, limit: int = 10) -> builtins.list[Task]:
        driver = await self._ready()
        return [self._decoded(t) for t in await driver.find_available(_queues(queues), _limit(limit))]
