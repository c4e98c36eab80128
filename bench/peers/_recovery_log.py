"""What a recovery run's handlers write: one line per start and per end of an attempt, appended to one file.

Every worker process of a run appends to the file named in ``$BENCH_RECOVERY_LOG``. Each event is a single
``os.write`` to a descriptor opened with ``O_APPEND``, so lines from several processes never interleave, and a
line is on its way to the file as soon as the call returns: a SIGKILL right after a start loses nothing.
Stdlib only, as every peer's venv imports it.

    S <task> <attempt> <pgid> <unix time> <job id>    a handler started
    E <task> <attempt> <pgid> <unix time> <job id>    it returned (its completion is the system's to write)

``pgid`` is the worker's process group: the driver starts each worker in a session of its own and signals the
whole group, so the group id names the worker whatever processes its command line forks. ``attempt`` is the
system's own count where the handler can read it, else 0.
"""

from __future__ import annotations

import os
import time

ENV = "BENCH_RECOVERY_LOG"
_fd: int | None = None


def _write(kind: str, task: int, attempt: int, job: object) -> None:
    global _fd
    if _fd is None:
        _fd = os.open(os.environ[ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{kind} {task} {attempt} {os.getpgrp()} {time.time():.6f} {job}\n".encode())


def started(task: int, attempt: int, job: object) -> None:
    _write("S", task, attempt, job)


def ended(task: int, attempt: int, job: object) -> None:
    _write("E", task, attempt, job)


async def paced(durations: list[float], rate: float, enqueue: object) -> None:
    """Call ``enqueue(first_index, durations)`` for the tasks in batches, open loop: batch ``k`` is due at
    ``k / BATCHES_PER_S`` seconds from the start, whatever the previous calls took (``rate`` tasks a second)."""
    import asyncio

    per_batch = max(1, round(rate / BATCHES_PER_S))
    began = time.monotonic()
    for k, first in enumerate(range(0, len(durations), per_batch)):
        delay = began + k / BATCHES_PER_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await enqueue(first, durations[first : first + per_batch])  # type: ignore[operator]


BATCHES_PER_S = 10
