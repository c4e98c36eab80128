"""``taskstore worker`` exempts what it has loaded once started from later garbage collections (``_gc.py``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import taskstore
from taskstore import NewTask, State

_APP = """
import gc

import taskstore

app = taskstore.App({url!r})


@app.task(queue="q", kind="frozen")
def frozen() -> int:
    return gc.get_freeze_count()
"""


async def _enqueue(url: str) -> str:
    async with taskstore.open(url) as store:
        return (await store.create(NewTask("q", "frozen"))).id


async def _result(url: str, task_id: str) -> object:
    async with taskstore.open(url) as store:
        task = await store.get(task_id)
        assert task.state is State.DONE, task
        assert task.result is not None
        return task.result.value


def test_the_worker_freezes_what_it_loaded_before_running_tasks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gc.db'}"
    (tmp_path / "gc_app.py").write_text(_APP.format(url=url))
    task_id = asyncio.run(_enqueue(url))
    err_path = tmp_path / "worker.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskstore", "worker", "gc_app:app", "--no-maintenance", "--log-level", "info"],
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "TASKSTORE_URL"},
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    try:
        deadline = time.monotonic() + 30
        while f"task {task_id}" not in err_path.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    frozen = asyncio.run(_result(url, task_id))
    assert isinstance(frozen, int)
    assert frozen > 10_000  # the modules, the App and the store: far more than a handful of objects
