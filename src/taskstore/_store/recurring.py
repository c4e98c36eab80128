"""Recurring schedules (SPEC §2, §8): stored schedules, and firing the slots that are due."""

from __future__ import annotations

import builtins
from datetime import datetime

from .. import _observe, _recurring, errors, limits
from ..backend import (
    Driver,
    NewRow,
    RecurringRow,
)
from ..model import (
    RecurringTask,
    check_id,
)
from ..schedule import parse_schedule, slot_task_id
from .core import (
    StoreCore,
    log,
)


class StoreRecurring(StoreCore):
    """Add, list and fire recurring schedules."""

    # -- recurring schedules (SPEC §2, §8) -------------------------------------------------------

    async def add_recurring(self, recurring: RecurringTask) -> RecurringTask:
        """Add or replace a schedule by id. An unchanged schedule keeps its next slot."""
        if not isinstance(recurring, RecurringTask):
            raise errors.InvalidTask(f"expected a RecurringTask, got {type(recurring).__name__}")
        next_at = parse_schedule(recurring.schedule).next_slot(self.now())
        driver = await self._ready()
        stored = await driver.put_recurring(_recurring.to_row(recurring, self.codec, next_at))
        return _recurring.from_row(stored, self.codec)

    async def remove_recurring(self, id: str) -> bool:
        driver = await self._ready()
        return await driver.delete_recurring(check_id(id, "recurring id"))

    async def list_recurring(self) -> builtins.list[RecurringTask]:
        driver = await self._ready()
        return [_recurring.from_row(row, self.codec) for row in await driver.list_recurring()]

    async def enqueue_due_recurring(self) -> int:
        """Create the task of every schedule whose slot has come; returns how many were created.

        Safe in any number of processes at once: a slot's task id is derived from the schedule's id
        and the slot, so a slot creates one task, and ``next_at`` moves on by compare-and-set. A
        scheduler that was down fires only the latest missed slot, not every one it missed.
        """
        driver = await self._ready()
        now = self.now()
        created = 0
        for row in await driver.list_recurring():
            if row.next_at > now:
                continue
            try:
                created += await self._fire(driver, row, now)
            except errors.InvalidTask as exc:
                # One schedule that can no longer fire (no further cron slot, a template stored by an
                # older version that today's checks refuse) must not stop the others: park it.
                log.warning("recurring %r cannot fire and is parked: %s", row.id, exc)
                await driver.advance_recurring(row.id, row.next_at, limits.LATEST)
        if created:
            self._wake()
        return created

    async def _fire(self, driver: Driver, row: RecurringRow, now: datetime) -> int:
        schedule = parse_schedule(row.schedule)
        slot = schedule.latest_slot(now)
        created = 0
        if not (row.skip_if_outstanding and await driver.outstanding_count(row.id) > 0):
            new = _recurring.template_of(
                row, self.codec, id=slot_task_id(row.id, slot), run_at=slot, recurring_id=row.id
            )
            try:
                inserted = await driver.insert([NewRow(new=new, id=new.id or "", args=row.args)])
                created = 1
                if self._observers:  # not a unique template's holder handed back
                    _observe.enqueued(self._observers, [t for t in inserted if t.id == new.id])
            except errors.AlreadyExists:
                pass  # another scheduler fired this slot first
        try:
            following = schedule.next_slot(slot)
        except errors.InvalidTask as exc:  # its last slot (a cron year field) has fired
            log.warning("recurring %r has no further slot and is parked: %s", row.id, exc)
            following = limits.LATEST
        await driver.advance_recurring(row.id, row.next_at, following)
        return created
