"""Handler timestamps shared through a memory-mapped file, for a worker that runs in a process of its own.

Every worker on PostgreSQL runs as its users run it: its own CLI (``taskstore worker``, ``pgq run``,
``procrastinate worker``) in a separate process, so its handlers cannot report to the benchmark's in-process
counter. They write here instead: a header (tasks done, first start, last end, overlaps seen live) and one record
per task that needs one: (key, start, end) for the keyed kinds, (TIMED, scheduled, started) in wall-clock time
for the ``timed`` kind, whose lateness is the difference. ``noop`` and ``sleep`` only count. The handlers run on
one event loop, so there is one writer; it writes a record before counting it, so a reader never counts a record
that is not there yet. Start and end times are ``time.perf_counter`` (CLOCK_MONOTONIC: the same clock in every
process).

The worker's side: ``Spans.from_env()`` opens the file named by ``$BENCH_SPANS``; ``handlers(spans)`` are the
handler bodies every worker app wraps in its own task decorator.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

HEADER = struct.Struct("<qddq")  # done, first_start, last_end, overlaps_seen
RECORD = struct.Struct("<qdd")  # key, start, end
TIMED = -1  # the key of a ``timed`` record: (TIMED, scheduled wall-clock time, started wall-clock time)
ENV = "BENCH_SPANS"


def create(path: Path, capacity: int) -> None:
    path.write_bytes(bytes(HEADER.size + RECORD.size * capacity))


class Spans:
    def __init__(self, path: Path) -> None:
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), 0)
        self._capacity = (len(self._map) - HEADER.size) // RECORD.size
        self._running: dict[int, int] = {}

    @classmethod
    def from_env(cls) -> Spans:
        return cls(Path(os.environ[ENV]))

    # -- the worker's side ----------------------------------------------------------------------

    def started(self, key: int | None = None) -> float:
        done, first, last, seen = HEADER.unpack_from(self._map, 0)
        now = time.perf_counter()
        if key is not None:
            running = self._running.get(key, 0) + 1
            self._running[key] = running
            if running > 1:
                seen += 1
        HEADER.pack_into(self._map, 0, done, first or now, last, seen)
        return now

    def finished(self, key: int | None = None, started: float = 0.0) -> None:
        ended = time.perf_counter()
        done, first, _, seen = HEADER.unpack_from(self._map, 0)
        if key is not None:
            self._running[key] -= 1
            self._record(done, key, started, ended)
        HEADER.pack_into(self._map, 0, done + 1, first, ended, seen)

    def timed(self, scheduled: float) -> None:
        now = time.perf_counter()
        started = time.time()
        done, first, _, seen = HEADER.unpack_from(self._map, 0)
        self._record(done, TIMED, scheduled, started)
        HEADER.pack_into(self._map, 0, done + 1, first or now, now, seen)

    @staticmethod
    def from_wall(seconds: float) -> float:
        """A wall-clock time (``time.time``'s: a store's timestamp) on ``perf_counter``'s clock, as records are."""
        return seconds - (time.time() - time.perf_counter())

    def stamped(self, key: int, at: float) -> None:
        """A task's start, recorded as (key, start, ``at``): a time of the task's own on the same clock."""
        now = time.perf_counter()
        done, first, _, seen = HEADER.unpack_from(self._map, 0)
        self._record(done, key, now, at)
        HEADER.pack_into(self._map, 0, done + 1, first or now, now, seen)

    def _record(self, index: int, key: int, a: float, b: float) -> None:
        if index < self._capacity:
            RECORD.pack_into(self._map, HEADER.size + RECORD.size * index, key, a, b)

    # -- the benchmark's side -------------------------------------------------------------------

    def header(self) -> tuple[int, float | None, float | None, int]:
        done, first, last, seen = HEADER.unpack_from(self._map, 0)
        return done, first or None, last or None, seen

    def records(self) -> list[tuple[int, float, float]]:
        """The keyed records (no-op and sleep tasks leave their slot zeroed; timed ones are left out)."""
        done = min(self.header()[0], self._capacity)
        out = []
        for i in range(done):
            key, a, b = RECORD.unpack_from(self._map, HEADER.size + RECORD.size * i)
            if key != TIMED and b:
                out.append((key, a, b))
        return out

    def delays(self) -> list[float]:
        """How late each timed task started, in seconds."""
        done = min(self.header()[0], self._capacity)
        out = []
        for i in range(done):
            key, scheduled, started = RECORD.unpack_from(self._map, HEADER.size + RECORD.size * i)
            if key == TIMED:
                out.append(started - scheduled)
        return out

    def close(self) -> None:
        self._map.close()
        self._file.close()


Handler = Callable[..., Awaitable[None]]


def handlers(spans: Spans) -> dict[str, Handler]:
    """The bodies of the benchmark's handler kinds (see bench/peers/_common.py), reporting to ``spans``."""

    async def noop(payload: float) -> None:
        spans.finished(None, spans.started())

    async def sleep(payload: float) -> None:
        started = spans.started()
        await asyncio.sleep(0.001)
        spans.finished(None, started)

    async def timed(scheduled: float) -> None:
        spans.timed(scheduled)

    async def keyed(payload: float, key: int) -> None:
        started = spans.started(key)
        await asyncio.sleep(0)  # one turn of the loop: another task of this key running now would start here
        spans.finished(key, started)

    return {"noop": noop, "sleep": sleep, "timed": timed, "keyed": keyed}
