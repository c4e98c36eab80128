"""WAL checkpoints run by a thread of their own, so that no commit waits for one.

SQLite's auto-checkpoint runs inside the COMMIT that takes the WAL past 1,000 pages: that commit copies the WAL
back into the database and fsyncs it, and every write queued behind it waits (issue 15 measured p99
enqueue→start 368 ms at 500 tasks/s, 7.2 ms without it). So the driver sets ``wal_autocheckpoint=0`` on its
connections and this thread checkpoints instead, on a connection of its own:

- PASSIVE checkpoints, which wait for no lock and make no reader or writer wait, every ``interval`` seconds
  while the WAL holds frames not yet copied back, and at once when ``BURST_FRAMES`` of them pile up. Whether
  there is anything to copy is read from the WAL-index header in the ``-shm`` file
  (https://www.sqlite.org/walformat.html: ``mxFrame`` at byte 16, ``nBackfill`` at byte 96), so an idle store
  costs one ``pread`` per tick.
- The WAL starts over from its beginning only when a write begins with every frame copied back and no reader
  on an older snapshot. Writes that never pause seldom leave such a moment (the next commit lands before a
  PASSIVE checkpoint is done), and a long read stops PASSIVE checkpoints at its snapshot, so the WAL would grow
  without end. Past ``wal_limit`` bytes the thread escalates to a RESTART checkpoint: it holds the write lock
  while it copies the last frames (a PASSIVE one runs just before, so there are few) and waits at most
  ``ESCALATE_WAIT`` for the readers, so the next write starts the WAL over (measured at 2,000 tasks/s: 1.6-3.8
  ms; TRUNCATE, which also cuts the file to nothing, took ~30 ms and makes the next writes grow it again).
  ``journal_size_limit`` (also ``wal_limit``) on the store's connections cuts a file that grew past the limit
  back to it when the WAL starts over. A RESTART that waited for readers in vain is retried after a pause that
  doubles (up to ``MAX_BACKOFF``), so a reader that holds on for minutes does not stall writers every tick;
  the WAL then grows until the reader lets go, which nothing short of ending the reader prevents.
- On close: one TRUNCATE checkpoint (PASSIVE when others are busy), so a closed store leaves the WAL empty
  where SQLite allows; the last connection to close deletes the WAL anyway.

Every process on the file runs its own checkpointer. That is harmless: SQLite lets one checkpoint run at a
time and answers the others "busy", which is skipped here, not reported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import struct
import threading
import time
from pathlib import Path

log = logging.getLogger("taskstore.sqlite")

TICK = 0.01  # how often the -shm header is read
BURST_FRAMES = 1_000  # SQLite's own auto-checkpoint size: this many waiting frames are copied back at once
ESCALATE_WAIT = 0.02  # busy timeout of a RESTART or TRUNCATE checkpoint: about the longest it holds up writers
MAX_BACKOFF = 5.0
_U32 = struct.Struct("=I")  # the WAL-index is in the machine's byte order
_MX_FRAME, _N_BACKFILL = 16, 96
_WAL_HEADER, _FRAME_HEADER = 32, 24


class Checkpointer:
    """Owns one connection and one thread; ``start`` once, ``stop`` once (it runs the final checkpoint)."""

    def __init__(self, path: str, *, interval: float, wal_limit: int, tick: float = TICK) -> None:
        if interval <= 0:
            raise ValueError("a checkpointer needs a positive interval")  # the driver starts none for 0
        self.path = path
        self.interval = interval
        self.wal_limit = wal_limit
        self._tick = min(tick, interval)
        self._stop = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._shm: int | None = None
        self._thread: threading.Thread | None = None
        self._frame_bytes = 4096 + _FRAME_HEADER
        self._last = time.monotonic()
        self._retry_at = 0.0
        self._backoff = TICK
        self._warned: set[str] = set()
        self._logged: int | None = None  # the WAL's frames as the last checkpoint saw them
        self._restarted: int | None = None  # the WAL's frames when a RESTART last made it start over
        self.checkpoints = 0  # PASSIVE checkpoints run (busy ones included): for tests and curiosity
        self.escalations = 0  # RESTART checkpoints tried past wal_limit

    def start(self) -> None:
        """Open the connection and start the thread; raises ``sqlite3.Error`` when the file cannot be opened."""
        # mode=rw: the store's own connection made the file; this one must never create one.
        target = f"{Path(self.path).as_uri()}?mode=rw"
        conn = sqlite3.connect(target, timeout=ESCALATE_WAIT, isolation_level=None, check_same_thread=False, uri=True)
        try:
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA journal_size_limit={int(self.wal_limit)}")
            self._frame_bytes = int(conn.execute("PRAGMA page_size").fetchone()[0]) + _FRAME_HEADER
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        with contextlib.suppress(OSError):  # without it a checkpoint runs every interval (_step): still correct
            self._shm = os.open(f"{self.path}-shm", os.O_RDONLY)
        self._thread = threading.Thread(target=self._run, name="taskstore-sqlite-checkpoints", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread after one last checkpoint and close the connection; blocks until then."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        if self._shm is not None:
            os.close(self._shm)
            self._shm = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        # The first look is at once: a process that crashed may have left frames nobody copied back.
        first = True
        while not self._stop.wait(0 if first else self._tick):
            try:
                self._step(first)
            except Exception as exc:  # never let the thread die: a store with no checkpoints grows its WAL
                self._warn(exc)
            first = False
        with contextlib.suppress(Exception):
            if not self._checkpoint("TRUNCATE"):
                self._checkpoint("PASSIVE")

    def _step(self, first: bool) -> None:
        now = time.monotonic()
        frames, waiting = self._frames()
        if frames is None:  # no -shm to read: checkpoint every interval, and judge the size by what it says
            due = first or now - self._last >= self.interval
        else:
            # A RESTART holds up writers while it copies what is left: a PASSIVE first leaves it little to copy.
            due = waiting > 0 and (
                first or waiting >= BURST_FRAMES or now - self._last >= self.interval or self._over_limit(frames, now)
            )
        if due:
            self._last = now
            self.checkpoints += 1
            self._checkpoint("PASSIVE")
            frames = self._frames()[0]
        if frames is None:
            frames = self._logged
        if frames is None or not self._over_limit(frames, now):
            return
        self.escalations += 1
        began = time.monotonic()
        done = self._checkpoint("RESTART")
        took = time.monotonic() - began
        if done:
            self._restarted = frames
            self._backoff = TICK
        elif took >= ESCALATE_WAIT / 2:  # it waited for readers (or the writer) in vain: they may hold on a while
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
            self._retry_at = time.monotonic() + self._backoff
        # else another connection was checkpointing (that is answered at once): the next tick looks again.
        log.debug("WAL of %s at %d frames: RESTART %s in %.1f ms", self.path, frames, done or "busy", took * 1000)

    def _over_limit(self, frames: int, now: float) -> bool:
        """Whether a RESTART is wanted now: past the limit, not backing off, and not already done for these frames
        (after a RESTART the WAL keeps its frames until the next write starts it over)."""
        return self._wal_bytes(frames) > self.wal_limit and frames != self._restarted and now >= self._retry_at

    def _frames(self) -> tuple[int | None, int]:
        """Frames in the WAL and how many of them are not yet copied back, from the -shm file (None: unknown)."""
        if self._shm is None:
            return None, 0
        head = os.pread(self._shm, _N_BACKFILL + 4, 0)
        if len(head) < _N_BACKFILL + 4:
            return None, 0
        frames = _U32.unpack_from(head, _MX_FRAME)[0]
        backfilled = _U32.unpack_from(head, _N_BACKFILL)[0]
        return frames, max(frames - backfilled, 0)

    def _wal_bytes(self, frames: int) -> int:
        return _WAL_HEADER + frames * self._frame_bytes if frames else 0

    def _checkpoint(self, mode: str) -> bool:
        """One checkpoint; whether it copied every frame back (and, past PASSIVE, started the WAL over)."""
        conn = self._conn
        if conn is None:
            return False
        try:
            busy, logged, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()  # mode: ours, fixed
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                return False  # another connection is recovering or checkpointing the WAL: next time
            raise
        self._logged = max(int(logged), 0)
        return not busy and copied == logged

    def _warn(self, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text not in self._warned:  # once per distinct failure: the thread retries every tick
            self._warned.add(text)
            log.warning("WAL checkpoint of %s failed (%s); retrying", self.path, text)
        self._stop.wait(self.interval)
