"""Handler timestamps shared through a memory-mapped file, for a worker that runs in a process of its own.

The flow-control drains run taskstore's worker as users run it (``taskstore worker``, a separate process), so its
handlers cannot append to the benchmark's in-process counter. They write here instead: a header (tasks done,
first start, last end, overlaps seen live) and one record per finished task (key, start, end). The handlers run
on one event loop, so there is one writer; it writes a record before counting it, so a reader never counts a
record that is not there yet. Times are ``time.perf_counter`` (CLOCK_MONOTONIC: the same clock in every process).
"""

from __future__ import annotations

import mmap
import struct
import time
from pathlib import Path

HEADER = struct.Struct("<qddq")  # done, first_start, last_end, overlaps_seen
RECORD = struct.Struct("<qdd")  # key, start, end


def create(path: Path, capacity: int) -> None:
    path.write_bytes(bytes(HEADER.size + RECORD.size * capacity))


class Spans:
    def __init__(self, path: Path) -> None:
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), 0)
        self._capacity = (len(self._map) - HEADER.size) // RECORD.size
        self._running: dict[int, int] = {}

    # -- the worker's side ----------------------------------------------------------------------

    def started(self, key: int) -> float:
        done, first, last, seen = HEADER.unpack_from(self._map, 0)
        now = time.perf_counter()
        running = self._running.get(key, 0) + 1
        self._running[key] = running
        if running > 1:
            seen += 1
        HEADER.pack_into(self._map, 0, done, first or now, last, seen)
        return now

    def finished(self, key: int, started: float) -> None:
        ended = time.perf_counter()
        self._running[key] -= 1
        done, first, _, seen = HEADER.unpack_from(self._map, 0)
        if done < self._capacity:
            RECORD.pack_into(self._map, HEADER.size + RECORD.size * done, key, started, ended)
        HEADER.pack_into(self._map, 0, done + 1, first, ended, seen)

    # -- the benchmark's side -------------------------------------------------------------------

    def header(self) -> tuple[int, float | None, float | None, int]:
        done, first, last, seen = HEADER.unpack_from(self._map, 0)
        return done, first or None, last or None, seen

    def records(self) -> list[tuple[int, float, float]]:
        done = min(self.header()[0], self._capacity)
        return [RECORD.unpack_from(self._map, HEADER.size + RECORD.size * i) for i in range(done)]

    def close(self) -> None:
        self._map.close()
        self._file.close()
