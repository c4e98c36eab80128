"""The App every taskstore drain runs with ``taskstore worker taskstore_app:app --url URL``, as users run it.

A module of its own so the CLI can import it by name, as a user's worker imports theirs. Its handlers are the
benchmark's kinds (``noop``, ``sleep``, ``timed``, ``keyed``: see _common.py), reporting through the
memory-mapped file the benchmark named in ``$BENCH_SPANS`` (_spans.py).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _spans import Spans, handlers

import taskstore

app = taskstore.App()  # the URL comes from the worker's --url
SPANS = Spans.from_env()
HANDLERS = handlers(SPANS)


@app.task(queue="bench", kind="noop")
async def noop(i: float) -> None:
    await HANDLERS["noop"](i)


@app.task(queue="bench", kind="sleep")
async def sleep(i: float) -> None:
    await HANDLERS["sleep"](i)


@app.task(queue="bench", kind="timed")
async def timed(sent: float) -> None:
    await HANDLERS["timed"](sent)


@app.task(queue="bench", kind="keyed")
async def keyed(i: float, key: int) -> None:
    await HANDLERS["keyed"](i, key)


@app.task(queue="bench", kind="staged")
async def staged(i: float, key: int) -> None:
    """Its start and its claim's time (the store's clock, here on perf_counter's): bench/enqueue_latency.py's stages."""
    claim = taskstore.current_task().claim
    assert claim is not None
    SPANS.stamped(key, Spans.from_wall(claim.claimed_at.timestamp()))
