"""The threads that run sync handlers.

A thread cannot be killed, so a sync handler past its timeout (or cancelled, or released at stop)
keeps its thread until it returns by itself. A fixed pool would let such threads starve every later
handler; here a handler that finds no idle thread gets a new one, so an abandoned thread only costs
itself. Threads are daemons: one that never returns must not keep the process from exiting after the
worker has released its task (a ``ThreadPoolExecutor`` joins its threads at interpreter exit).
An abandoned thread's late outcome is discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

_Work = tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class HandlerThreads:
    """Daemon threads that run one call each at a time, kept for reuse up to ``keep`` idle ones."""

    def __init__(self, keep: int, name: str = "taskstore-task") -> None:
        self._keep = keep
        self._name = name
        self._numbers = itertools.count(1)
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for work, not yet promised to a submitted call
        self._closed = False

    def run(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Start ``fn`` on a thread; the future gets its result or exception (any ``BaseException``)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the handler threads are closed")
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._work.put((fn, future, loop))
        if spawn:
            name = f"{self._name}-{next(self._numbers)}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()
        return future

    def close(self) -> None:
        """Let idle threads end; busy ones end when their call returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._work.put(None)

    def _serve(self) -> None:
        while (work := self._work.get()) is not None:
            fn, future, loop = work
            _run_one(fn, future, loop)
            del work, fn, future  # drop the result before waiting for the next call
            with self._lock:
                if self._closed or self._idle >= self._keep:
                    return
                self._idle += 1


def _run_one(fn: Callable[[], Any], future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
    try:
        outcome: tuple[bool, Any] = (True, fn())
    except BaseException as exc:  # SystemExit, KeyboardInterrupt and the like end the attempt, not the thread
        outcome = (False, exc)
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for this outcome any more
        loop.call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # cancelled: the handler was abandoned, its late outcome is discarded
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_result(_Raised(value))


class _Raised:
    """An exception carried as a value: asyncio futures refuse some (``StopIteration``) and would hang."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def outcome_of(future: asyncio.Future[Any]) -> Any:
    """Await a call started by ``HandlerThreads.run``: its value, or its exception raised here."""
    value = await future
    if isinstance(value, _Raised):
        raise value.exc
    return value
