"""Prompt delivery of cancel requests to the worker holding a task.

A cancel of a claimed task only sets its ``cancel_requested`` flag; the worker holding it must find out.
Its lease renewal reads the flag, but only every ``processing_timeout / 3`` (20 s by default). So a worker
also waits on its database's cancel channel (``_wakeup.cancel_key``), woken:

- at once by ``Store.cancel`` through any store of this process on the same database;
- on PostgreSQL, by the NOTIFY that a cancel of a claimed task sends in its transaction (one round trip);
- on SQLite, by any commit of another process, seen by the ``-shm`` watch (``backends.sqlite._commits``)
  within its 2 ms tick: SQLite cannot say what a commit changed.

Each wake costs one read of the in-flight tasks' flags by id, and only when the worker holds tasks; wakes
that arrive during a read are merged into one more read. On SQLite every commit (the worker's own included)
would wake it, so the driver spaces those wakes (``CANCEL_CHECK_GAP``, 20 ms): a busy store costs at most
~50 small reads a second, and a cancel from another process is seen within ~2 ms on a quiet store, within
the gap on a busy one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from . import errors
from ._wakeup import HUB, cancel_key
from .backend import Driver

log = logging.getLogger("taskstore.worker")

_IDLE = 5.0  # re-check the stop event this often even with no wake (it also ends the wait when set)


async def follow(
    driver: Driver,
    held: Callable[[], Collection[str]],
    on_requested: Callable[[set[str]], None],
    until: asyncio.Event,
) -> None:
    """Until ``until`` is set: after each wake, call ``on_requested`` with the held tasks whose cancel was asked."""
    key = cancel_key(driver.wake_key)
    waiter = HUB.subscribe(key)
    try:
        while not until.is_set():
            if not await waiter.wait(_IDLE, until=until) or until.is_set():
                continue
            ids = held()
            if not ids:
                continue
            try:
                requested = await driver.cancel_requested_among(list(ids))
            except errors.TaskstoreError as exc:  # not fatal: the next lease renewal reads the flags too
                log.debug("could not read cancel requests: %s", exc)
                requested = set()
            if requested:
                on_requested(requested)
    finally:
        HUB.unsubscribe(key, waiter)
