"""An empty claim on PostgreSQL is one statement: the one-statement claim tells "nothing claimable" (no row) from
"held back by a key's limit" (a row of NULLs), so only the latter pays for the limits' transaction. A blocked
claimer woken for a task another claimer took paid four round trips for nothing before."""

from __future__ import annotations

from typing import Any

import pytest

import taskstore
from taskstore import NewTask

from ..postgres_server import new_schema, with_schema

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("queues", [[], ["q"], ["q", "r"]], ids=["any", "queue", "queues"])
async def test_only_a_claim_held_back_by_a_limit_takes_the_limits_transaction(
    postgres_db: str, queues: list[str]
) -> None:
    async with taskstore.open(with_schema(postgres_db, new_schema())) as store:
        driver: Any = store._driver
        limited: list[int] = []
        claim_limited = driver._claim_limited

        async def counted(*args: Any) -> Any:
            limited.append(1)
            return await claim_limited(*args)

        driver._claim_limited = counted
        assert await store.claim("w", queues, limit=5) == []
        await store.create(NewTask("q", "k"))
        assert len(await store.claim("w", queues, limit=5)) == 1
        assert await store.claim("w", queues, limit=5) == []
        assert limited == []

        await store.set_limit("K", concurrency=1)
        await store.create_many([NewTask("q", "k", concurrency_key="K") for _ in range(2)])
        assert len(await store.claim("w", queues, limit=5)) == 1  # found by the limits' transaction
        assert limited == [1]
