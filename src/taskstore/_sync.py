"""The one thin sync facade: run the async core on a private event loop in a daemon thread.

Sync callers (``fn.enqueue_sync``, ``handle.result_sync``) submit coroutines here and wait for
them. There is one implementation of every operation, the async one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

from .errors import ConfigError

R = TypeVar("R")


class LoopThread:
    def __init__(self, name: str = "taskstore-sync") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the private loop and wait for its result (exceptions propagate)."""
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            coro.close()
            raise ConfigError(
                "a sync taskstore call was made on the App's own loop thread and would wait for itself: "
                "use the async form (await ...)"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()


def run_inline(coro: Coroutine[Any, Any, R]) -> R:
    """Run a coroutine that never waits on an event loop, here, in the calling thread, with no loop at all.

    For a joined insert on a sync connection (``enqueue_sync(conn=…)``): every step is a blocking call on
    the caller's connection, which belongs to the caller's thread. Anything that really waits is a bug.
    """
    try:
        coro.send(None)
    except StopIteration as finished:
        return cast(R, finished.value)
    coro.close()
    raise RuntimeError("internal error: a joined insert waited on an event loop")
