"""``taskstore.pipe``: feed any sync or async iterable into a queue, in batches."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any

from . import errors
from .model import NewTask, check_queue
from .store import Store


async def pipe(
    source: Iterable[Any] | AsyncIterable[Any],
    store: Store,
    *,
    queue: str,
    kind: str,
    batch: int = 1_000,
    **options: Any,
) -> int:
    """Create one task per item (the item is its ``args``); returns how many were created.

    Items are written ``batch`` at a time, each batch all-or-nothing; ``options`` are passed to every
    ``NewTask`` (``priority=``, ``max_attempts=`` …). An item the codec cannot encode raises
    ``InvalidTask`` before its batch is written; earlier batches stay.
    """
    check_queue(queue)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise errors.InvalidTask(f"batch must be an int >= 1, got {batch!r}")
    total = 0
    pending: list[NewTask] = []

    async def flush() -> None:
        nonlocal total, pending
        if pending:
            await store.create_many(pending)
            total += len(pending)
            pending = []

    if isinstance(source, AsyncIterable):
        async for item in source:
            pending.append(NewTask(queue, kind, item, **options))
            if len(pending) >= batch:
                await flush()
    else:
        for item in source:
            pending.append(NewTask(queue, kind, item, **options))
            if len(pending) >= batch:
                await flush()
    await flush()
    return total
