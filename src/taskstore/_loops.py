"""The event loop a long-running command runs on: uvloop where it is installed, else asyncio's own.

A worker spends a large share of its CPU in the event loop (one asyncio task per attempt, socket reads and
writes of every claim and completion). uvloop runs the same code with that share cut, and is what the peers'
own entry points use when present (pgqueuer's ``pgq run``, uvicorn's ``--loop auto``), so ``taskstore
worker`` does the same. ``--loop asyncio`` keeps the standard loop (e.g. to rule uvloop out while debugging).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from . import errors

R = TypeVar("R")
LoopChoice = Literal["auto", "asyncio", "uvloop"]
LOOPS: tuple[LoopChoice, ...] = ("auto", "asyncio", "uvloop")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice`` (None: asyncio's default); ``ConfigError`` when uvloop is asked for and absent."""
    if choice not in LOOPS:
        raise errors.ConfigError(f"unknown event loop {choice!r}: expected one of {', '.join(LOOPS)}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise errors.ConfigError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, R], choice: str = "auto") -> R:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except errors.ConfigError:
        main.close()  # never awaited: say nothing about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """What the worker logs at start: ``uvloop`` or ``asyncio``."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
