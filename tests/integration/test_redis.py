"""What the Redis backend promises beyond the conformance suite: AOF durability across a restart, the
server's clock, stores sharing one database under prefixes, and wake-ups across stores by pub/sub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import taskstore
from taskstore import NewTask, State

from ..redis_server import NO_REDIS, RedisProcess, drop_prefix, has_redis_server, new_prefix, with_prefix

pytestmark = pytest.mark.asyncio


@pytest.fixture
def redis(redis_url: str | None) -> str:
    if redis_url is None:
        pytest.skip(NO_REDIS)
    return redis_url


@pytest.fixture
def prefix(redis: str) -> Iterator[str]:
    name = new_prefix()
    yield name
    drop_prefix(redis, name)


async def test_tasks_survive_a_restart_with_appendonly(tmp_path: Path) -> None:
    if not has_redis_server():
        pytest.skip("no redis-server on PATH: the AOF restart test starts its own")
    server = RedisProcess(tmp_path, appendonly=True)
    server.start()
    try:
        async with taskstore.open(server.url) as store:
            created = await store.create_many([NewTask("q", "k", {"n": i}) for i in range(20)])
            (claimed,) = await store.claim("w1", ["q"])
            await store.mark_done(claimed, {"ok": True})
        server.stop()  # SHUTDOWN: what a restart by an operator or a service manager does
        server.start()
        async with taskstore.open(server.url) as store:
            assert await store.count() == 20
            done = await store.get(claimed.id)
            assert done.state is State.DONE
            assert done.result is not None
            assert done.result.value == {"ok": True}
            again = await store.claim("w2", ["q"], limit=100)
            assert {t.id for t in again} == {t.id for t in created} - {claimed.id}
            payloads = {t.id: t.args for t in created}
            assert all(t.args == payloads[t.id] for t in again)
    finally:
        server.stop()
    assert any(p.name.startswith("appendonly") for p in tmp_path.iterdir())


async def test_without_a_clock_the_server_time_decides(redis: str, prefix: str) -> None:
    async with taskstore.open(with_prefix(redis, prefix)) as store:
        later = await store.create(NewTask("q", "later", run_at=store.clock.now() + timedelta(hours=1)))
        now = await store.create(NewTask("q", "now", processing_timeout=30))
        (claimed,) = await store.claim("w", ["q"], limit=10)
        assert claimed.id == now.id
        assert claimed.claim is not None
        lease = (claimed.claim.times_out_at - claimed.claim.claimed_at).total_seconds()
        assert lease == pytest.approx(30, abs=0.001)
        assert abs((claimed.claim.claimed_at - store.clock.now()).total_seconds()) < 5
        assert (await store.get(later.id)).state is State.QUEUED


async def test_stores_under_other_prefixes_do_not_see_each_other(redis: str) -> None:
    first, second = new_prefix(), new_prefix()
    try:
        async with (
            taskstore.open(with_prefix(redis, first)) as a,
            taskstore.open(with_prefix(redis, second)) as b,
        ):
            await a.create(NewTask("q", "k"))
            assert await b.count() == 0
            assert await b.claim("w", ["q"]) == []
            assert len(await a.claim("w", ["q"])) == 1
    finally:
        drop_prefix(redis, first)
        drop_prefix(redis, second)


async def test_a_blocked_claim_wakes_on_another_stores_create(redis: str, prefix: str) -> None:
    # Two URLs for one database: each store has its own wake key, so only pub/sub can carry the wake-up.
    other = redis.replace("127.0.0.1", "localhost") if "127.0.0.1" in redis else redis + "?"
    async with (
        taskstore.open(with_prefix(redis, prefix), poll_interval=30) as waiting,
        taskstore.open(with_prefix(other, prefix)) as creating,
    ):
        assert waiting._driver.wake_key != creating._driver.wake_key
        await waiting.claim("w", ["q"])  # opened and subscribed

        async def create_soon() -> None:
            await asyncio.sleep(0.3)
            await creating.create(NewTask("q", "k"))

        started = time.monotonic()
        creator = asyncio.create_task(create_soon())
        claimed = await waiting.claim("w", ["q"], block_for=10)
        await creator
        assert len(claimed) == 1
        assert time.monotonic() - started < 3
