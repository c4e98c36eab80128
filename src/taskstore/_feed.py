"""Every status change this process makes, handed in order to this process's watchers of that id.

A watcher that reads the store when woken sees only the latest status: a consumer slower than the
changes would miss the states in between. So each change made through a ``Store`` of this process is
also appended to the queue of every watcher of that task (or status record), and the watcher yields
from its queue. Changes made by other processes still arrive by wake-up or polling, and quick
successive ones may merge there.

Watchers may live on other event loops or threads: a ``deque`` takes appends from any thread, and the
watcher's ``Waiter`` is woken thread-safely.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Hashable
from typing import NamedTuple

from ._wakeup import Waiter
from .model import TaskStatus


class StatusChange(NamedTuple):
    """A status as written (``version`` orders a task's changes; ``None`` for a status record).

    ``status`` is ``None`` when the writer knows the id changed but not how (a batch acknowledgement
    returns no rows): the watcher reads it back.
    """

    version: int | None
    status: TaskStatus | None


class Subscription:
    __slots__ = ("__weakref__", "changes", "waiter")

    def __init__(self, waiter: Waiter) -> None:
        self.changes: deque[StatusChange] = deque()
        self.waiter = waiter


class StatusFeed:
    """Subscriptions by ``(database key, status id)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[Hashable, weakref.WeakSet[Subscription]] = {}

    @property
    def active(self) -> bool:
        """Whether anyone in this process watches anything: writers skip all work when not."""
        return bool(self._subscriptions)

    def subscribe(self, key: Hashable, waiter: Waiter) -> Subscription:
        subscription = Subscription(waiter)
        with self._lock:
            self._subscriptions.setdefault(key, weakref.WeakSet()).add(subscription)
        return subscription

    def unsubscribe(self, key: Hashable, subscription: Subscription) -> None:
        with self._lock:
            group = self._subscriptions.get(key)
            if group is not None:
                group.discard(subscription)
                if not group:
                    del self._subscriptions[key]

    def watched(self, key: Hashable) -> bool:
        return key in self._subscriptions

    def publish(self, key: Hashable, change: StatusChange) -> None:
        with self._lock:  # appends under the lock: every watcher of an id gets the changes in one order
            group = self._subscriptions.get(key)
            targets = list(group) if group else []
            for subscription in targets:
                subscription.changes.append(change)
        for subscription in targets:
            subscription.waiter.wake()


# One feed per process, like the wake-up hub: every store on the same database shares it.
FEED = StatusFeed()
