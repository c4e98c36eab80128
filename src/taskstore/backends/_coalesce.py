"""Group commit in the client: single creates that queue up while inserts are on their way go together in one.

An open-loop producer (a web app enqueuing one task per request) sends single creates faster than one round trip
each can carry them: each would hold a pool connection for its own statement and commit, and past the pool's
size they queued for connections until they timed out. Here a create joins a queue instead; at most ``flights``
inserts are on their way at a time, and each takes everything that queued meanwhile (up to ``max_rows``) as one
multi-row insert: one statement, one commit, one NOTIFY. Nothing waits on a timer for a batch to fill: when no
insert is on its way, a create leaves at once, alone, as before.

On PostgreSQL a batch is one multi-row statement on a pool connection; on SQLite, whose one connection lives on one
thread, it is one ``BEGIN IMMEDIATE`` transaction: one hop to that thread and one commit for the whole batch
instead of one each (``flights=1`` there, as that thread runs one call at a time).

Each caller gets its own result or its own error: ``send`` answers per row (see each driver's ``_send_batch``).
A caller cancelled while its row waits is left out of the batch; one cancelled once its batch has left may
still be created, as a single create cancelled mid-round-trip may.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from .. import errors
from ..backend import NewRow
from ..model import Task

# What ``send`` answers for each row of a batch, in order: the task it created, or the error that row alone met.
Send = Callable[[Sequence[NewRow]], Awaitable[list[Task | BaseException]]]


class Coalescer:
    def __init__(self, send: Send, *, max_rows: int = 500, flights: int = 2) -> None:
        if max_rows < 1 or flights < 1:
            raise ValueError("max_rows and flights must be at least 1")
        self._send = send
        self._max_rows = max_rows
        self._flights = flights
        self._waiting: deque[tuple[NewRow, asyncio.Future[Task]]] = deque()
        self._flying: set[asyncio.Task[None]] = set()
        self._closed = False
        self.batches = 0  # inserts sent (a test counts them: fewer than the creates when they coalesced)
        self.rows = 0  # rows they carried

    async def insert(self, row: NewRow) -> Task:
        if self._closed:
            raise errors.BackendUnavailable("the store is closed")
        done: asyncio.Future[Task] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, done))
        if len(self._flying) < self._flights:
            self._flying.add(asyncio.get_running_loop().create_task(self._fly(), name="taskstore-insert"))
        return await done

    def _take(self) -> list[tuple[NewRow, asyncio.Future[Task]]]:
        """The oldest waiting rows, at most ``max_rows``; a second row with an id already taken here waits.

        Two creates of one id in one statement would conflict with each other; sent one after the other, the
        second finds the first's row and gets ``AlreadyExists`` as it would have alone.
        """
        batch: list[tuple[NewRow, asyncio.Future[Task]]] = []
        ids: set[str] = set()
        later: list[tuple[NewRow, asyncio.Future[Task]]] = []
        while self._waiting and len(batch) < self._max_rows:
            row, done = self._waiting.popleft()
            if done.done():  # its caller was cancelled while it waited
                continue
            if row.id in ids:
                later.append((row, done))
            else:
                ids.add(row.id)
                batch.append((row, done))
        self._waiting.extendleft(reversed(later))
        return batch

    async def _fly(self) -> None:
        try:
            await self._carry()
        finally:
            # At once, not in a done callback: the caller its last batch answered may create again before such a
            # callback runs, and would then find this flight still counted though it takes nothing more.
            self._flying.discard(asyncio.current_task())

    async def _carry(self) -> None:
        while self._waiting:
            batch = self._take()
            if not batch:
                continue
            self.batches += 1
            self.rows += len(batch)
            try:
                answers = await self._send([row for row, _ in batch])
            except asyncio.CancelledError:  # the store is closing
                for _, done in batch:
                    if not done.done():
                        done.set_exception(errors.BackendUnavailable("the store closed while the task was sent"))
                raise
            except Exception as exc:  # the whole batch met it (the server is down): every caller sees it
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), answer in zip(batch, answers, strict=True):
                if done.done():
                    continue
                if isinstance(answer, BaseException):
                    done.set_exception(answer)
                else:
                    done.set_result(answer)

    async def close(self) -> None:
        """Let the inserts on their way finish (their callers get their answers), then refuse new ones."""
        self._closed = True
        if self._flying:
            await asyncio.gather(*self._flying, return_exceptions=True)
        while self._waiting:
            _, done = self._waiting.popleft()
            if not done.done():
                done.set_exception(errors.BackendUnavailable("the store is closed"))
