"""Store-level flow control on the memory backend: blocked claimers wait, they never spin."""

from __future__ import annotations

from typing import Any

import pytest

import taskstore
from taskstore import NewTask, Task


@pytest.mark.asyncio
async def test_a_claim_held_back_by_a_full_key_waits_instead_of_spinning() -> None:
    async with taskstore.open("memory://", poll_interval=0.1) as store:
        await store.set_limit("K", concurrency=0)
        await store.create(NewTask("q", "k", concurrency_key="K"))
        driver: Any = store._driver  # type: ignore[attr-defined]
        real, calls = driver.claim, 0

        async def counting(*args: Any) -> list[Task]:
            nonlocal calls
            calls += 1
            result: list[Task] = await real(*args)
            return result

        driver.claim = counting
        assert await store.claim("w", limit=1, block_for=0.5) == []
        assert 1 <= calls <= 10  # about one claim per poll interval, not a busy loop


@pytest.mark.asyncio
async def test_the_same_create_sent_twice_returns_the_holder_decoded() -> None:
    async with taskstore.open("memory://") as store:
        first = await store.create(NewTask("q", "k", {"a": 1}, id="same", unique_key="u"))
        again = await store.create(NewTask("q", "k", {"a": 2}, id="same", unique_key="u"))
        assert again == first
        assert again.args == {"a": 1}
