"""Writes made by another process: what only a backend's cross-process wake-up (LISTEN, the -shm watch) can
bring to a waiter here, when its polling is set too slow to find them in time."""

from __future__ import annotations

import asyncio
import subprocess
import sys

_CREATE = (
    "import asyncio, sys, taskstore\n"
    "async def main():\n"
    "    async with taskstore.open(sys.argv[1]) as s:\n"
    "        await s.create_many([taskstore.NewTask(sys.argv[2], 'k') for _ in range(int(sys.argv[3]))])\n"
    "asyncio.run(main())\n"
)


async def create_in_another_process(url: str, queue: str, n: int = 1) -> None:
    """``n`` tasks created in ``queue``, in one batch, by a Python process of its own; returns once it has exited."""
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _CREATE, url, queue, str(n)], check=True, timeout=60)
