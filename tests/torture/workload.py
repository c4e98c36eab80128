"""The App the torture suite runs in real ``taskstore worker`` processes.

Every handler writes a write-ahead log (WAL) line when it starts and when it ends, fsynced before it
goes on, to ``$TORTURE_WAL_DIR/wal-<pid>.jsonl``: one file per process, so a SIGKILL can tear at most
the last line of its own file. Each line carries the task id, the attempt and the lease token the
handler ran under; a successful handler also returns them, so the checker can tell which run's
completion the store accepted.

Which of these handlers a run enqueues, and how many, is the driver's choice (``driver.Mix``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

import taskstore
from taskstore import BinaryExponential

app = taskstore.App()  # the URL comes from --url

QUEUE = "torture"
LEASE = 3.0  # seconds; the driver stops workers for longer than this
FAST_RETRY = BinaryExponential(base=0.05, cap=0.2)

_wal_lock = threading.Lock()
_wal_fd: int | None = None


def _wal(event: str, **extra: Any) -> dict[str, Any]:
    """Append one line for the running task and fsync it: it is on disk before the handler goes on."""
    global _wal_fd
    task = taskstore.current_task()
    assert task.claim is not None
    line = {
        "ev": event,
        "id": task.id,
        "kind": task.kind,
        "attempt": task.attempts,
        "token": task.claim.token,
        "pid": os.getpid(),
        "t": time.time(),
        **extra,
    }
    data = (json.dumps(line) + "\n").encode()
    with _wal_lock:
        if _wal_fd is None:
            path = os.path.join(os.environ["TORTURE_WAL_DIR"], f"wal-{os.getpid()}.jsonl")
            _wal_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(_wal_fd, data)
        os.fsync(_wal_fd)
    return line


def _outcome(**extra: Any) -> dict[str, Any]:
    """The handler's return value: it names the run, so the stored result says whose completion won."""
    line = _wal("end", **extra)
    return {"token": line["token"], "attempt": line["attempt"], "pid": line["pid"], **extra}


def _tag() -> str:
    task = taskstore.current_task()
    assert task.claim is not None
    return f"[token={task.claim.token} attempt={task.attempts}]"


def _fail(exc: BaseException) -> BaseException:
    _wal("fail", error=type(exc).__qualname__)
    return exc


@app.task(queue=QUEUE, kind="torture.work", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE)
async def work(ms: int) -> dict[str, Any]:
    _wal("start")
    await asyncio.sleep(ms / 1000)
    return _outcome()


@app.task(queue=QUEUE, kind="torture.work_sync", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE)
def work_sync(ms: int) -> dict[str, Any]:
    _wal("start")
    time.sleep(ms / 1000)
    return _outcome()


@app.task(queue=QUEUE, kind="torture.flaky", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE)
async def flaky(fail_until: int) -> dict[str, Any]:
    """Raises on attempts below ``fail_until``, then succeeds."""
    _wal("start")
    if taskstore.current_task().attempts < fail_until:
        raise _fail(RuntimeError(f"flaky {_tag()}"))
    return _outcome()


@app.task(queue=QUEUE, kind="torture.doomed", max_attempts=3, retry=FAST_RETRY, processing_timeout=LEASE)
def doomed() -> None:
    """Always raises: ends ``dead`` after its three attempts."""
    _wal("start")
    raise _fail(ValueError(f"doomed {_tag()}"))


@app.task(queue=QUEUE, kind="torture.hang", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE, timeout=1.0)
async def hang(seconds: float) -> dict[str, Any]:
    """The first attempt runs past its 1 s timeout (the worker cancels it), the next one finishes."""
    _wal("start")
    if taskstore.current_task().attempts == 1:
        await asyncio.sleep(seconds)
    return _outcome()


@app.task(
    queue=QUEUE, kind="torture.sync_hang", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE, timeout=1.0
)
def sync_hang(seconds: float) -> dict[str, Any]:
    """As ``hang``, in a thread that cannot be cancelled: it must not keep its worker slot."""
    _wal("start")
    if taskstore.current_task().attempts == 1:
        time.sleep(seconds)
    return _outcome()


@app.task(queue=QUEUE, kind="torture.exit", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE)
async def exits(code: int) -> dict[str, Any]:
    """The first attempt calls ``sys.exit``: that attempt fails, the worker must keep running."""
    _wal("start")
    if taskstore.current_task().attempts == 1:
        _wal("fail", error="SystemExit")
        sys.exit(code)
    return _outcome()


@app.task(queue=QUEUE, kind="torture.interrupt", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE)
def interrupts() -> dict[str, Any]:
    """The first attempt raises ``KeyboardInterrupt`` in a worker thread."""
    _wal("start")
    if taskstore.current_task().attempts == 1:
        raise _fail(KeyboardInterrupt())
    return _outcome()


@app.task(queue=QUEUE, kind="torture.nul", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE)
async def nul() -> dict[str, Any]:
    """The first attempt fails with text PostgreSQL cannot store as is: a NUL byte and a lone surrogate."""
    _wal("start")
    if taskstore.current_task().attempts == 1:
        raise _fail(RuntimeError(f"bad\x00text\ud800 {_tag()}"))
    return _outcome()


# Chords go first (priority): on PostgreSQL the database faults wait until they fired (driver.FEATURES).
@app.task(queue=QUEUE, kind="torture.member", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE, priority=10)
async def member(i: int, ms: int) -> dict[str, Any]:
    _wal("start")
    await asyncio.sleep(ms / 1000)
    return _outcome(value=i * 10)


@app.task(
    queue=QUEUE, kind="torture.chord_total", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE, priority=10
)
async def chord_total(results: list[Any], tag: str) -> dict[str, Any]:
    _wal("start")
    values = [r.get("value") if isinstance(r, dict) else r for r in results]
    return _outcome(tag=tag, values=values)


# A chain's links (driver feature ``chains``): each adds its value to those of the links before it, so
# the last link's result shows the whole chain ran in order, each link's accepted result feeding the next.
@app.task(
    queue=QUEUE, kind="torture.chain_start", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE, priority=10
)
async def chain_start(ms: int) -> dict[str, Any]:
    _wal("start")
    await asyncio.sleep(ms / 1000)
    return _outcome(values=[0])


@app.task(
    queue=QUEUE, kind="torture.chain_link", max_attempts=10, retry=FAST_RETRY, processing_timeout=LEASE, priority=10
)
async def chain_link(previous: Any, i: int, ms: int) -> dict[str, Any]:
    _wal("start")
    await asyncio.sleep(ms / 1000)
    before = previous.get("values") if isinstance(previous, dict) else None
    return _outcome(values=[*(before if isinstance(before, list) else [None]), i * 10])
