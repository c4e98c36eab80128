"""The App that the integration tests run in real worker processes (``taskstore worker``).

Every execution appends one JSON line to ``$WORKLOAD_LOG`` (task id, attempt, pid) before it
works, so a test can tell how often, and where, each task really ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import taskstore
from taskstore import BinaryExponential

app = taskstore.App()  # the URL comes from --url or $TASKSTORE_URL

NO_WAIT = BinaryExponential(base=0.0, cap=0.0)


def _record(kind: str) -> dict[str, object]:
    task = taskstore.current_task()
    line = {"id": task.id, "attempt": task.attempts, "pid": os.getpid(), "kind": kind, "t": time.time()}
    path = os.environ.get("WORKLOAD_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:  # one small O_APPEND write per line
            log.write(json.dumps(line) + "\n")
    return line


# A lease long enough that a worker starved of CPU (a loaded CI machine) still renews it in time: a
# test that counts runs must see a task run again only because its worker was killed.
@app.task(
    queue="work", kind="work.step", max_attempts=3, retry=BinaryExponential(base=0.05, cap=0.2), processing_timeout=5.0
)
async def step(i: int, doomed: bool = False) -> dict[str, object]:
    _record("step")
    await asyncio.sleep(0.02)
    if doomed:
        raise RuntimeError(f"step {i} always fails")
    return {"i": i, "pid": os.getpid()}


@app.task(queue="slow", kind="work.slow", max_attempts=3, retry=NO_WAIT, processing_timeout=1.0)
async def slow(seconds: float) -> dict[str, object]:
    _record("slow")
    await asyncio.sleep(seconds)
    return {"pid": os.getpid()}


@app.task(queue="slow", kind="work.slow_sync", max_attempts=3, retry=NO_WAIT, processing_timeout=1.0)
def slow_sync(seconds: float) -> dict[str, object]:
    _record("slow_sync")
    time.sleep(seconds)
    return {"pid": os.getpid()}


@app.task(queue="cron", kind="work.tick")
async def tick() -> None:
    _record("tick")


if os.environ.get("WORKLOAD_RECURRING"):
    app.recurring("tick-every-second", every="1s", task=tick)


@app.task(queue="chord", kind="work.member", max_attempts=5, retry=NO_WAIT, processing_timeout=1.0)
async def member(i: int, slow: float = 0.0) -> int:
    _record("member")
    await asyncio.sleep(slow)
    return i * 10


@app.task(queue="chord", kind="work.chord_total", max_attempts=3, retry=NO_WAIT)
async def chord_total(results: list[int], tag: str) -> int:
    line = _record("chord_total")
    path = os.environ.get("WORKLOAD_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({**line, "kind": "chord_results", "tag": tag, "results": results}) + "\n")
    return sum(results)


# Leases of a minute: renewed every 20 s, so a cancel that reaches these sooner came by the prompt path.
@app.task(queue="hang", kind="work.hang", max_attempts=1, processing_timeout=60.0)
async def hang() -> None:
    _record("hang")
    await asyncio.sleep(3600)


@app.task(queue="hang", kind="work.hang_sync", max_attempts=1, processing_timeout=60.0)
def hang_sync() -> None:
    _record("hang_sync")
    deadline = time.monotonic() + 3600
    while not taskstore.cancel_requested() and time.monotonic() < deadline:
        time.sleep(0.005)
    _record("hang_sync_stopped")
