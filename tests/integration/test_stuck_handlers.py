"""A real ``taskstore worker`` process with sync handlers that never return, or exit.

A stuck thread cannot be killed: the worker must free the slot it held, and still exit on SIGTERM
within the grace (and a few seconds), giving back the task it could not finish. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import taskstore
from taskstore import State

from .stuck_workload import bounded, exits, forever, offloaded, quick
from .test_worker_processes import wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def start_worker(url: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(concurrency: int, grace: str) -> subprocess.Popen[str]:
        args = [sys.executable, "-m", "taskstore", "worker", "tests.integration.stuck_workload:app", "--url", url]
        args += ["--concurrency", str(concurrency), "--grace", grace, "--log-level", "info", "--no-maintenance"]
        proc = subprocess.Popen(args, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()  # a worker that did not exit is the failure; do not leave it behind
        proc.communicate()


def stop(proc: subprocess.Popen[str], within: float) -> tuple[float, str]:
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=within + 20)  # past this it hangs: fail, do not wait forever
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the worker did not exit within {within + 20}s of SIGTERM:\n{err}") from None
    return time.monotonic() - start, err


def test_a_one_slot_worker_goes_on_past_stuck_and_exiting_sync_handlers(
    url: str, start_worker: Callable[..., subprocess.Popen[str]]
) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            news = [bounded.options(priority=2).new_task(), exits.options(priority=1).new_task(), quick.new_task()]
            stuck, exiting, last = await store.create_many(news)
            proc = start_worker(concurrency=1, grace="1s")

            async def last_done() -> bool:
                return (await store.get(last.id)).state is State.DONE

            await wait_until(last_done, 30, "the task after the stuck one to run")
            stuck_task, exited_task = await store.get(stuck.id), await store.get(exiting.id)
            elapsed, err = stop(proc, within=1)
        assert proc.returncode == 0, err
        assert elapsed < 1 + 10, err  # the abandoned thread still sleeps: it must not hold the exit
        assert stuck_task.state is State.DEAD
        assert stuck_task.result is not None
        assert stuck_task.result.failure is not None
        assert stuck_task.result.failure.type == "HandlerTimeout"
        assert exited_task.state is State.DEAD
        assert exited_task.result is not None
        assert exited_task.result.failure is not None
        assert exited_task.result.failure.type == "SystemExit"
        assert "abandoned" in err

    asyncio.run(scenario())


@pytest.mark.parametrize("handler", [forever, offloaded], ids=["sync", "to_thread"])
def test_sigterm_exits_within_the_grace_and_releases_a_stuck_handler(
    url: str, start_worker: Callable[..., subprocess.Popen[str]], tmp_path: Path, handler: Any
) -> None:
    marker = tmp_path / "started"

    async def scenario() -> None:
        async with taskstore.open(url) as store:
            task = await store.create(handler.new_task(str(marker)))
            proc = start_worker(concurrency=2, grace="1s")

            async def started() -> bool:
                return marker.exists()

            await wait_until(started, 30, "the stuck handler to start")
            elapsed, err = stop(proc, within=1)
            assert proc.returncode == 0, err
            assert elapsed < 1 + 10, err
            released = await store.get(task.id)
            assert (released.state, released.attempts) == (State.QUEUED, 0), err  # released: no attempt spent
            assert os.path.exists(marker)

    asyncio.run(scenario())
