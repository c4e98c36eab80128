"""Waiting for a connection of the pool: a busy pool is backpressure, a dead server is an error at once.

psycopg_pool gives a waiting caller one fixed timeout. Under a burst that was wrong both ways: callers queued
behind a pool that was busy but working failed after ``pool_timeout`` ("couldn't get a connection after 10.00
sec") although the server was fine, while callers queued behind a pool that could not connect at all waited
those same 10 s to learn that the server was down. Here a caller waits in slices and looks, after each, at what
the pool did meanwhile:

- a connection came back from work: the pool is busy, not broken; the caller keeps its place in the wait
  (backpressure: it waits as long as the pool keeps working, its wait growing with the queue ahead of it);
- nothing came back from work and the pool failed to connect: the server is down or refuses; one probe
  connection (shared by every waiter) says why, and the caller gets ``BackendUnavailable`` with that reason
  (if the probe connects, the server is back and the caller waits on);
- nothing came back from work for ``pool_timeout``: every connection is held by something that does not end
  (a long transaction, a server that stopped answering): ``BackendUnavailable`` saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ... import errors

# How long a waiter waits for a connection before it looks at what the pool did meanwhile (seconds); at most
# pool_timeout. A short slice makes an outage prompt; a waiter that is cut off joins the queue's end again,
# which under a queue longer than one slice's work delays it by up to one slice.
WAIT_SLICE = 0.5


class Connections:
    """The pool as the driver's operations take connections from it (see the module's docstring)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        timeout: float,
        pool_max: int,
        probe: Callable[[], Coroutine[Any, Any, str | None]],
    ) -> None:
        self.pool = pool
        self._timeout = timeout
        self._pool_max = pool_max
        self._probe = probe  # one connection attempt: None if it connected, else why not (one line)
        self._probing: asyncio.Task[str | None] | None = None
        self.worked_at = time.monotonic()  # when a connection last came back from a statement the server answered

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await self._acquire()
        lost = False
        try:
            async with conn:  # commit or roll back, as the pool's own connection() does
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError):
            lost = True
            raise
        finally:
            if not lost:
                self.worked_at = time.monotonic()
            await self.pool.putconn(conn)

    async def _acquire(self) -> psycopg.AsyncConnection[Any]:
        since = time.monotonic()  # the last time the pool was seen working, for this waiter
        failures = self._failures()
        while True:
            try:
                conn: psycopg.AsyncConnection[Any] = await self.pool.getconn(timeout=min(self._timeout, WAIT_SLICE))
                return conn
            except PoolTimeout:
                pass
            now = time.monotonic()
            if self.worked_at > since:  # busy, not broken: wait on
                since, failures = self.worked_at, self._failures()
                continue
            if self._failures() > failures:
                why = await self._why_down()
                if why is not None:
                    raise errors.BackendUnavailable(f"PostgreSQL is unavailable: {why}") from None
                since, failures = time.monotonic(), self._failures()  # it connects again: wait on
                continue
            if now - since >= self._timeout:
                raise errors.BackendUnavailable(
                    f"PostgreSQL is unavailable: none of the pool's {self._pool_max} connections came free and "
                    f"none finished any work for {self._timeout:g}s (pool_timeout): they are held by operations "
                    "that do not end, or the server stopped answering"
                ) from None

    def _failures(self) -> int:
        return self.pool.get_stats().get("connections_errors", 0)

    async def _why_down(self) -> str | None:
        """One probe at a time, whatever the number of waiters; each waiter that asks meanwhile gets its answer."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.get_running_loop().create_task(self._probe(), name="taskstore-probe")
        return await asyncio.shield(self._probing)
