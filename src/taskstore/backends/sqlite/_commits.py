"""Wakes this process when another process commits to the same SQLite database.

SQLite cannot notify another process. In WAL mode every commit rewrites the WAL-index header at the start of
the ``-shm`` file (https://www.sqlite.org/walformat.html: its change counter and frame count move with each
transaction; readers write elsewhere in the file). Reading those 48 bytes every 2 ms is one ``pread``, so this
process's claimers and status watchers are woken within about 2 ms of any commit, instead of each of them
polling the database. Workers' cancel checks are woken too, but ``Spaced``: a commit cannot say whether it
was a cancel, and on a busy store (the worker's own commits included) each wake would be a read.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable

log = logging.getLogger("taskstore.sqlite")

HEADER_BYTES = 48  # the first copy of the WAL-index header
TICK = 0.002  # ~1 ms on average after a commit; an idle store spends ~1.5% of a core on it here


async def watch_commits(
    db_path: str, on_commit: Callable[[], None], tick: float = TICK, *, started: Callable[[], None] | None = None
) -> None:
    """Call ``on_commit`` whenever the WAL-index header moves; runs until cancelled.

    ``started`` is called once the header has been read first: a commit made before it is not seen as a move,
    so the waiters it wakes read what may have come before.
    """
    try:
        fd = os.open(f"{db_path}-shm", os.O_RDONLY)
    except OSError as exc:  # not fatal: claimers and watchers still poll the database
        log.warning("cannot watch %s-shm for other processes' commits (%s); polling only", db_path, exc)
        return
    try:
        last = os.pread(fd, HEADER_BYTES, 0)
        if started is not None:
            started()
        while True:
            await asyncio.sleep(tick)
            seen = os.pread(fd, HEADER_BYTES, 0)
            if seen != last:
                last = seen
                on_commit()
    finally:
        os.close(fd)


class Spaced:
    """Calls ``fn`` at most once per ``gap`` seconds, on the running loop; a call asked for within the gap is
    made when the gap ends, never dropped (however many were asked for meanwhile)."""

    def __init__(self, fn: Callable[[], None], gap: float) -> None:
        self._fn = fn
        self._gap = gap
        self._last = -math.inf
        self._pending: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        if self._pending is not None:
            return
        wait = self._last + self._gap - time.monotonic()
        if wait <= 0:
            self._fire()
        else:
            self._pending = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last = time.monotonic()
        self._fn()

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
