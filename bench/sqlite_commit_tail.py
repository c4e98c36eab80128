"""The slowest single creates on SQLite with nothing else running: where a commit pays for a WAL checkpoint.

    python -m bench.sqlite_commit_tail [--tasks 20000] [--sqlite-options checkpoint_interval=0]

One process, one store on a fresh file, ``--tasks`` ``store.create`` calls one after another (closed loop, no
worker). A commit that copies the WAL back into the database (SQLite's auto-checkpoint, every 1,000 pages)
shows as one of the slow ones; with checkpoints on the store's own thread no commit does. Prints p50, p99,
p99.9 and max of the call, and how many calls took over 5 ms. Not a test: figures for a person to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import taskstore
from taskstore import NewTask


async def run(url: str, tasks: int) -> list[float]:
    took = []
    async with taskstore.open(url) as store:
        for i in range(tasks):
            began = time.perf_counter()
            await store.create(NewTask("bench", "noop", {"i": i}))
            took.append((time.perf_counter() - began) * 1000)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--sqlite-options", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-commit-tail-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'tasks.db'}" + (f"?{args.sqlite_options}" if args.sqlite_options else "")
        took = sorted(asyncio.run(run(url, args.tasks)))

    def at(q: float) -> float:
        return took[min(len(took) - 1, int(q * len(took)))]

    print(
        f"taskstore {taskstore.__version__} ({Path(taskstore.__file__).parent}), SQLite {sqlite3.sqlite_version}, "
        f"load {os.getloadavg()[0]:.2f}: {args.tasks} creates, p50 {at(0.5):.2f} p99 {at(0.99):.2f} "
        f"p99.9 {at(0.999):.2f} max {took[-1]:.2f} ms, {sum(t > 5 for t in took)} over 5 ms"
    )


if __name__ == "__main__":
    main()
