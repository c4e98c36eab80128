"""In-process wake-ups for blocked claimers, status watchers and workers' cancel checks.

A claimer blocked in ``claim(block_for=…)`` waits on a ``Waiter``; any store in this process that
writes to the same underlying database (same key) wakes it at once. Waiters may live on different
event loops or threads, so wake-ups go through ``call_soon_threadsafe``. Across processes, backends
fall back to polling (SQLite) or a server-side channel (PostgreSQL LISTEN/NOTIFY).

Channels of one database: its key itself (new claimable work), ``("status", key)`` (a task or status
changed) and ``cancel_key`` (a cancel of a claimed task may have been requested).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable

# How often a blocked claimer looks for work while its driver says other processes' wake-ups are lost
# (``Driver.notifications_lost``: PostgreSQL's LISTEN behind a pooler in transaction mode).
LOST_WAKEUPS_POLL = 0.05


class Waiter:
    __slots__ = ("__weakref__", "_event", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def _fire(self) -> None:
        self._event.set()

    def clear(self) -> None:
        """Forget a wake-up not yet waited for (the caller is about to look anyway)."""
        self._event.clear()

    def wake(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._event.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    async def wait(self, seconds: float, until: asyncio.Event | None = None) -> bool:
        """Wait up to ``seconds`` (or until ``until`` is set); True when woken. Clears the signal."""
        if seconds <= 0:
            woke = self._event.is_set()
        elif until is None:
            try:
                await asyncio.wait_for(self._event.wait(), seconds)
                woke = True
            except TimeoutError:
                woke = False
        else:
            waits = [asyncio.ensure_future(self._event.wait()), asyncio.ensure_future(until.wait())]
            try:
                await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when the waiting claim is cancelled: no helper task outlives it
                for pending in waits:
                    pending.cancel()
            woke = self._event.is_set()
        self._event.clear()
        return woke


class WakeHub:
    """Waiters grouped by the database they watch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[Hashable, weakref.WeakSet[Waiter]] = {}
        self._wanted: dict[Hashable, list[Callable[[], None]]] = {}

    def subscribe(self, key: Hashable, waiter: Waiter | None = None) -> Waiter:
        """A waiter woken by ``key``; pass one already subscribed to another key to wait on both."""
        waiter = Waiter() if waiter is None else waiter
        with self._lock:
            self._waiters.setdefault(key, weakref.WeakSet()).add(waiter)
            wanted = self._wanted.pop(key, None)
        for call in wanted or ():
            call()
        return waiter

    def when_wanted(self, key: Hashable, call: Callable[[], None]) -> None:
        """Call ``call`` (once) when a waiter first subscribes to ``key``, or at once if one already has.

        A backend that hears other processes' wake-ups over a connection of its own (PostgreSQL's LISTEN) opens
        it only once someone in this process waits: a process that only enqueues needs none.
        """
        with self._lock:
            if not self._waiters.get(key):
                self._wanted.setdefault(key, []).append(call)
                return
        call()

    def unwanted(self, key: Hashable, call: Callable[[], None]) -> None:
        """Forget ``call`` if it has not been called yet (its store closed)."""
        with self._lock:
            calls = self._wanted.get(key)
            if calls is not None and call in calls:
                calls.remove(call)
                if not calls:
                    del self._wanted[key]

    def unsubscribe(self, key: Hashable, waiter: Waiter) -> None:
        with self._lock:
            group = self._waiters.get(key)
            if group is not None:
                group.discard(waiter)
                if not group:
                    del self._waiters[key]

    def notify(self, key: Hashable) -> None:
        with self._lock:
            group = self._waiters.get(key)
            targets = list(group) if group else []
        for waiter in targets:
            waiter.wake()


class StartWhenWanted:
    """Calls ``start`` on the current loop once a waiter of this process first subscribes to one of ``keys``.

    A backend that hears other processes' writes by a means of its own (PostgreSQL's LISTEN connection, SQLite's
    ``-shm`` watch) starts it only when someone in this process waits: a process that only enqueues needs none.
    ``start`` must tell the waiters to read again once it hears (what came before it was started is not heard).
    """

    def __init__(self, keys: Iterable[Hashable], start: Callable[[], None]) -> None:
        self._keys = tuple(keys)
        self._start = start
        self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        for key in self._keys:
            HUB.when_wanted(key, self.want)

    def want(self) -> None:
        """Start now (from any thread: it runs on the loop this was made on); a closed one does nothing."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._start()
        else:
            loop.call_soon_threadsafe(self._start)

    def close(self) -> None:
        self._loop = None
        for key in self._keys:
            HUB.unwanted(key, self.want)


def cancel_key(database: Hashable) -> Hashable:
    return ("cancel", database)


# One hub per process: stores opened on the same SQLite file in one process must wake each other.
HUB = WakeHub()
