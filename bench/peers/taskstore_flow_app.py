"""The App the flow-control drains run with ``taskstore worker taskstore_flow_app:app --url URL``.

A module of its own so the CLI can import it by name, as a user's worker imports theirs. Its one handler is
``keyed``: a no-op that records its start and end per concurrency key (see _spans.py) and yields to the event
loop once in between, so two tasks of one key running at once would show as overlapping.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _spans import Spans

import taskstore

app = taskstore.App()  # the URL comes from the worker's --url
SPANS = Spans(Path(os.environ["BENCH_SPANS"]))


@app.task(queue="bench", kind="keyed")
async def keyed(i: float, key: int) -> None:
    started = SPANS.started(key)
    await asyncio.sleep(0)
    SPANS.finished(key, started)
