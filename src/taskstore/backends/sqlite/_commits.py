"""Wakes this process when another process commits to the same SQLite database.

SQLite cannot notify another process. In WAL mode every commit rewrites the WAL-index header at the start of
the ``-shm`` file (https://www.sqlite.org/walformat.html: its change counter and frame count move with each
transaction; readers write elsewhere in the file). Reading those 48 bytes every 2 ms is one ``pread``, so this
process's claimers and status watchers are woken within about 2 ms of any commit, instead of each of them
polling the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

log = logging.getLogger("taskstore.sqlite")

HEADER_BYTES = 48  # the first copy of the WAL-index header
TICK = 0.002  # ~1 ms on average after a commit; an idle store spends ~1.5% of a core on it here


async def watch_commits(db_path: str, on_commit: Callable[[], None], tick: float = TICK) -> None:
    """Call ``on_commit`` whenever the WAL-index header moves; runs until cancelled."""
    try:
        fd = os.open(f"{db_path}-shm", os.O_RDONLY)
    except OSError as exc:  # not fatal: claimers and watchers still poll the database
        log.warning("cannot watch %s-shm for other processes' commits (%s); polling only", db_path, exc)
        return
    try:
        last = os.pread(fd, HEADER_BYTES, 0)
        while True:
            await asyncio.sleep(tick)
            seen = os.pread(fd, HEADER_BYTES, 0)
            if seen != last:
                last = seen
                on_commit()
    finally:
        os.close(fd)
