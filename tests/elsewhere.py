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
    "        await s.create(taskstore.NewTask(sys.argv[2], 'k'))\n"
    "asyncio.run(main())\n"
)


async def create_in_another_process(url: str, queue: str) -> None:
    """One task created in ``queue`` by a Python process of its own; returns once that process has exited."""
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _CREATE, url, queue], check=True, timeout=60)
