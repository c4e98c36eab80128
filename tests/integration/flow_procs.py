"""Processes for tests/integration/test_postgres_flow.py: each acts on one store, as another machine would.

``python -m tests.integration.flow_procs create URL KEY N START OUT``: at wall time START, create N tasks
with unique key KEY at once (one asyncio task each), and write the ids it got back to OUT (one a line).

``python -m tests.integration.flow_procs work URL SECONDS OUT``: claim up to 5 tasks at a time and run
each claimed batch concurrently, each task 20 ms, recording its start and end (JSON lines in OUT); stop
once every task of the queue is done, or after SECONDS.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import taskstore
from taskstore import NewTask, State


async def create(url: str, key: str, n: int, start: float, out: str) -> None:
    async with taskstore.open(url, pool_max=n) as store:
        await asyncio.sleep(max(start - time.time(), 0.0))
        made = await asyncio.gather(
            *(store.create(NewTask(queue="race", kind="k", args=[i], unique_key=key)) for i in range(n))
        )
    with open(out, "w", encoding="utf-8") as f:
        f.write("".join(t.id + "\n" for t in made))


async def work(url: str, cap: float, out: str) -> None:
    async def run(task: taskstore.Task, log: list[dict[str, object]]) -> None:
        started = time.time()
        await asyncio.sleep(0.02)
        log.append({"id": task.id, "key": task.concurrency_key, "start": started, "end": time.time()})
        await store.mark_done(task)  # the slot frees only after "end" is taken

    log: list[dict[str, object]] = []
    deadline = time.monotonic() + cap
    async with taskstore.open(url) as store:
        while time.monotonic() < deadline:
            claimed = await store.claim(f"w{os.getpid()}", "flow", limit=5)
            if claimed:
                await asyncio.gather(*(run(t, log) for t in claimed))
            elif await store.count(queue="flow") == await store.count(state=State.DONE, queue="flow"):
                break
            else:
                await asyncio.sleep(0.01)
    with open(out, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(line) + "\n" for line in log))


def main(argv: list[str]) -> None:
    if argv[0] == "create":
        asyncio.run(create(argv[1], argv[2], int(argv[3]), float(argv[4]), argv[5]))
    else:
        asyncio.run(work(argv[1], float(argv[2]), argv[3]))


if __name__ == "__main__":
    main(sys.argv[1:])
