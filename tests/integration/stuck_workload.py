"""An App of handlers that never give their thread back, for ``test_stuck_handlers`` (``taskstore worker``)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import taskstore
from taskstore import BinaryExponential

app = taskstore.App()  # the URL comes from --url

NO_WAIT = BinaryExponential(base=0.0, cap=0.0)


@app.task(queue="stuck", kind="stuck.forever", max_attempts=3, retry=NO_WAIT, processing_timeout=1.0)
def forever(marker: str) -> None:
    Path(marker).touch()  # tells the test the handler has started
    time.sleep(3600)  # blocking code: no timeout, no cancellation reaches it


@app.task(queue="stuck", kind="stuck.offloaded", max_attempts=3, retry=NO_WAIT, processing_timeout=1.0)
async def offloaded(marker: str) -> None:
    Path(marker).touch()
    await asyncio.to_thread(time.sleep, 3600)  # cancelling the await leaves the loop's default executor busy


@app.task(queue="stuck", kind="stuck.bounded", timeout=0.5, max_attempts=1)
def bounded() -> None:
    time.sleep(3600)


@app.task(queue="stuck", kind="stuck.exits", max_attempts=1)
def exits() -> None:
    sys.exit(3)


@app.task(queue="stuck", kind="stuck.quick")
def quick() -> int:
    return os.getpid()
