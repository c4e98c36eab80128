"""What the Redis backend promises beyond the conformance suite: AOF durability across a restart, the
server's clock, stores sharing one database under prefixes, and wake-ups across stores by pub/sub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as redis_py

import taskstore
from taskstore import NewTask, State
from taskstore.clock import FakeClock

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


class RawCodec:
    """Payloads as the bytes given: what the store keeps is exactly what a claim must hand back."""

    name = "raw"

    def encode(self, value: Any) -> bytes:
        assert isinstance(value, bytes)
        return value

    def decode(self, data: bytes) -> Any:
        return data


async def test_a_claim_hands_back_any_payload_bytes_exactly(redis: str, prefix: str) -> None:
    # claim.lua returns each task as one cjson string (_rows.decode_packed): bytes that are not UTF-8, control
    # characters, quotes, backslashes and slashes must all come back as they went in.
    odd = [bytes(range(256)), b'\xff\xfe"\\/\n\x00', b"\xc3\x28 invalid", "é ∑ 🙂".encode(), b""]
    async with taskstore.open(with_prefix(redis, prefix), codec=RawCodec()) as store:
        created = await store.create_many([NewTask("q", "k", payload) for payload in odd])
        found = await store.find_available(["q"], limit=10)
        claimed = await store.claim("w", ["q"], limit=10)
        assert [t.args for t in found] == odd
        assert [t.args for t in claimed] == odd
        assert [t.id for t in claimed] == [t.id for t in created]


def _task_hash(redis: str, prefix: str, task_id: str) -> dict[bytes, bytes]:
    client = redis_py.Redis.from_url(redis)
    try:
        stored: dict[bytes, bytes] = client.hgetall(f"{prefix}t:{task_id}")  # type: ignore[assignment]
    finally:
        client.close()
    return {k: v for k, v in stored.items() if k not in {b"id", b"seq", b"om"}}


async def test_acknowledge_writes_what_mark_done_writes(redis: str, prefix: str) -> None:
    # The worker's completions take complete.lua, mark_done the general path (read, transitions.mark_done,
    # commit.lua): the same tasks, completed each way, must be stored field for field alike, indexes included.
    clock = FakeClock()
    url = with_prefix(redis, prefix)
    async with taskstore.open(url, clock=clock) as store:
        await store.set_limit("key", concurrency=5)
        news = [NewTask("q", "k", {"i": 1}, concurrency_key="key", context={"c": 1}) for _ in range(2)]
        a, b = await store.create_many(news)
        first = await store.claim("w", ["q"], limit=2)
        for task in first:
            await store.mark_failed(task, RuntimeError("once"), retry_in=1)
        clock.advance(2)
        again = {t.id: t for t in await store.claim("w", ["q"], limit=2)}
        assert set(again) == {a.id, b.id}
        for task in again.values():
            await store.report_in(task, {"progress": 1})
        clock.advance(1)
        await store.mark_done(again[a.id], {"r": 1})
        assert await store.acknowledge_many([(again[b.id], {"r": 1})]) == [None]
        done_a, done_b = await store.get(a.id), await store.get(b.id)
        assert done_a.state is done_b.state is State.DONE
        assert await store.count(State.DONE, "q") == 2
        assert await store.count(State.CLAIMED, "q") == 0
        gate = await store._driver.key_gate("key")  # type: ignore[attr-defined]
        assert gate is not None
        assert gate.running == 0
    assert _task_hash(redis, prefix, a.id) == _task_hash(redis, prefix, b.id)
    client = redis_py.Redis.from_url(redis)
    try:
        for index in ("s:claimed", "leases:q"):
            assert client.zscore(f"{prefix}{index}", a.id) is None
            assert client.zscore(f"{prefix}{index}", b.id) is None
        for index in ("s:done", "fin", "ids"):
            assert client.zscore(f"{prefix}{index}", a.id) is not None
            assert client.zscore(f"{prefix}{index}", b.id) is not None
        assert client.zscore(f"{prefix}fin", a.id) == client.zscore(f"{prefix}fin", b.id)
        assert client.hgetall(f"{prefix}count:q") == {b"done": b"2"}
        assert sum(int(n) for n in client.hvals(f"{prefix}finished")) == 2  # type: ignore[union-attr]
    finally:
        client.close()


async def test_a_burst_of_single_creates_shares_commits_and_connections(redis: str, prefix: str) -> None:
    # An open-loop producer: each create alone took a connection for its round trips, and past redis-py's 100
    # connections the rest failed ("Too many connections"). Queued meanwhile, they now go together.
    async with taskstore.open(with_prefix(redis, prefix)) as store:
        created = await asyncio.gather(*(store.create(NewTask("q", "k", {"i": i})) for i in range(300)))
        assert len({t.id for t in created}) == 300
        assert [t.seq for t in created] == sorted(t.seq for t in created)
        assert await store.count(State.QUEUED, "q") == 300
        coalescer = store._driver._coalescer  # type: ignore[attr-defined]
        assert coalescer.rows == 300
        assert coalescer.batches < 30


async def test_insert_script_writes_what_the_general_insert_writes(redis: str, prefix: str) -> None:
    # Plain creates take insert.lua; unique ones, groups and chord callbacks the general path (_plan_insert,
    # commit.lua). Each task made both ways must be stored alike, field for field and index for index.
    from taskstore.backends.redis._rows import order_member
    from taskstore.backends.redis.driver import Tx

    clock = FakeClock()
    later = clock.now() + timedelta(hours=1)
    news = [
        NewTask("q", "k", {"i": 1}, priority=3, context={"c": 1}, reference_id="ref"),
        NewTask("q", "k", {"i": 2}, run_at=later, expires_at=later + timedelta(hours=1), concurrency_key="key"),
        NewTask("q2", "k", None, max_attempts=7, processing_timeout=12.5),
    ]
    async with taskstore.open(with_prefix(redis, prefix), clock=clock) as store:
        driver = store._driver  # type: ignore[attr-defined]
        plain = await driver._insert_scripted(store._rows(news, None), [None] * len(news))
        rows = store._rows(news, None)
        tx = Tx()
        _, general = await driver._plan_insert(tx, rows, None)
        await driver._commit(tx)
    assert [t.seq for t in plain] == [1, 2, 3]
    assert [t.seq for t in general] == [4, 5, 6]
    client = redis_py.Redis.from_url(redis)
    try:
        for a, b in zip(plain, general, strict=True):
            assert a.replace(id=b.id, seq=b.seq) == b
            assert _task_hash(redis, prefix, a.id) == _task_hash(redis, prefix, b.id)
            for index in ("ids", "s:queued", "expiring", f"delayed:{a.queue}"):
                assert (client.zscore(f"{prefix}{index}", a.id) is None) == (
                    client.zscore(f"{prefix}{index}", b.id) is None
                )
            ready = f"{prefix}ready:{a.queue}"
            assert client.zscore(ready, order_member(a)) == client.zscore(ready, order_member(b))
        assert client.hgetall(f"{prefix}count:q") == {b"queued": b"4"}
        assert client.smembers(f"{prefix}queues") == {b"q", b"q2"}
    finally:
        client.close()


async def test_unique_creates_by_the_script_are_stored_as_by_the_general_insert(redis: str) -> None:
    # Unique creates whose keys are free take insert.lua too (each key once in the batch); a held key, or one
    # repeated in the batch, takes the general path. The same batch made both ways, each in a store of its own
    # at the same time, must be stored alike: the task hashes (unique_until included), the indexes and the keys.
    from taskstore.backends.redis.driver import Tx

    later = FakeClock().now() + timedelta(hours=1)
    news = [
        NewTask("q", "k", {"i": 1}, unique_key="a"),
        NewTask("q", "k", {"i": 2}, unique_key="b", unique_for=90.5, run_at=later),
        NewTask("q", "k", {"i": 3}),
        NewTask("q2", "k", {"i": 4}, unique_key="a", unique_for=timedelta(minutes=5), unique_states={"queued"}),
    ]
    scripted_prefix, general_prefix = new_prefix(), new_prefix()
    client = redis_py.Redis.from_url(redis)
    try:
        async with taskstore.open(with_prefix(redis, scripted_prefix), clock=FakeClock()) as store:
            driver = store._driver  # type: ignore[attr-defined]
            rows = store._rows(news, None)
            scripted = await driver._insert_scripted(
                rows, [f"{n.queue}\x00{n.unique_key}" if n.unique_key else None for n in news]
            )
            # A key now held: the script writes nothing and says so.
            again = store._rows([NewTask("q3", "k"), NewTask("q", "k", unique_key="b")], None)
            assert await driver._insert_scripted(again, [None, "q\x00b"]) is None
            assert await store.count(State.QUEUED) == 4
        async with taskstore.open(with_prefix(redis, general_prefix), clock=FakeClock()) as store:
            driver = store._driver  # type: ignore[attr-defined]
            tx = Tx()
            _, general = await driver._plan_insert(tx, store._rows(news, None), None)
            await driver._commit(tx)
        assert [t.seq for t in scripted] == [t.seq for t in general] == [1, 2, 3, 4]
        ids = {a.id: b.id for a, b in zip(scripted, general, strict=True)}
        for a, b in zip(scripted, general, strict=True):
            assert a.replace(id=b.id) == b
            assert _task_hash(redis, scripted_prefix, a.id) == _task_hash(redis, general_prefix, b.id)
        assert scripted[1].unique_until == scripted[1].created_at + timedelta(seconds=90.5)
        for index in ("ids", "s:queued", "delayed:q", "ready:q", "ready:q2", "count:q", "count:q2", "queues"):
            assert client.type(f"{scripted_prefix}{index}") == client.type(f"{general_prefix}{index}")
        assert client.zcard(f"{scripted_prefix}ready:q") == client.zcard(f"{general_prefix}ready:q") == 2
        assert client.zcard(f"{scripted_prefix}delayed:q") == client.zcard(f"{general_prefix}delayed:q") == 1
        held = {k: ids[v.decode()] for k, v in client.hgetall(f"{scripted_prefix}unique").items()}
        assert held == {k: v.decode() for k, v in client.hgetall(f"{general_prefix}unique").items()}
        assert set(held) == {b"q\x00a", b"q\x00b", b"q2\x00a"}
    finally:
        client.close()
        drop_prefix(redis, scripted_prefix)
        drop_prefix(redis, general_prefix)


async def test_a_unique_create_past_a_held_key_still_returns_the_holder(redis: str, prefix: str) -> None:
    # Through the store: a batch of fresh keys goes in at once; a batch with a held key, or a key twice, is decided
    # on the general path, which returns the holder for the held key and inserts the rest.
    async with taskstore.open(with_prefix(redis, prefix)) as store:
        first = await store.create_many([NewTask("q", "k", {"i": i}, unique_key=f"u{i}") for i in range(3)])
        second = await store.create_many(
            [NewTask("q", "k", {"i": 9}, unique_key="u1"), NewTask("q", "k", unique_key="new")]
        )
        assert second[0] == first[1]
        assert second[1].unique_key == "new"
        assert second[1].id not in {t.id for t in first}
        twice = await store.create_many([NewTask("q", "k", unique_key="x"), NewTask("q", "k", unique_key="x")])
        assert twice[0] == twice[1]
        alone = await store.create(NewTask("q", "k", unique_key="u2"))
        assert alone == first[2]
        assert await store.count(State.QUEUED, "q") == 5


async def test_a_claimed_task_is_the_task_then_stored(redis: str, prefix: str) -> None:
    # claim.lua hands back each task as it patched it while writing, not as read back: what it hands back
    # must be what a read finds, a released unique key and a report dropped included.
    clock = FakeClock()
    async with taskstore.open(with_prefix(redis, prefix), clock=clock) as store:
        unique = NewTask("q", "k", {"u": 1}, unique_key="u", unique_states={"queued"})
        await store.create_many([NewTask("q", "k", {"i": i}, concurrency_key="key") for i in range(3)] + [unique])
        first = await store.claim("w", ["q"], limit=1)
        await store.report_in(first[0], {"step": 1})
        await store.mark_failed(first[0], RuntimeError("again"), retry_in=0)
        claimed = await store.claim("w2", ["q"], limit=10)
        assert len(claimed) == 4
        assert any(t.attempts == 2 for t in claimed)
        for task in claimed:
            assert await store.get(task.id) == task
        assert any(t.unique_key == "u" and t.unique_hold is None for t in claimed)


async def test_status_and_cancel_wake_ups_cross_stores(redis: str, prefix: str) -> None:
    # One message per write on <prefix>events, its letters saying what it means: another store's write wakes
    # status watchers here, and its cancel of a claimed task wakes cancel checks, but not claimers.
    from taskstore._wakeup import HUB, cancel_key

    other = redis.replace("127.0.0.1", "localhost") if "127.0.0.1" in redis else redis + "?"
    async with (
        taskstore.open(with_prefix(redis, prefix)) as here,
        taskstore.open(with_prefix(other, prefix)) as there,
    ):
        key = here._driver.wake_key  # type: ignore[attr-defined]
        await here.claim("w", ["q"])  # opened
        task = await there.create(NewTask("q", "k"))
        (claimed,) = await there.claim("w", ["q"])
        # Waiters here start the store's subscription (a store subscribes only once someone waits); once it is up
        # it wakes them all to read again, which is what the waits for 1 s take away.
        status, cancel, wake = HUB.subscribe(("status", key)), HUB.subscribe(cancel_key(key)), HUB.subscribe(key)
        for waiter in (status, cancel, wake):
            await waiter.wait(1)
        await there.cancel(task.id)
        assert await cancel.wait(3)
        assert await status.wait(3)
        assert not await wake.wait(0.3)  # a cancel request makes no work claimable
        assert (await here.get(claimed.id)).cancel_requested


@pytest.mark.skipif(not has_redis_server(), reason=NO_REDIS)
async def test_a_server_gone_away_is_backend_unavailable_on_every_call(tmp_path: Path) -> None:
    """Every call meets the same typed error while the server is down, and works again once it is back."""
    server = RedisProcess(tmp_path)
    server.start()
    try:
        async with taskstore.open(server.url) as store:
            await store.create(NewTask("q", "k"))
            (task,) = await store.claim("w", "q")
            server.stop()
            calls = {
                "create": lambda: store.create(NewTask("q", "k")),
                "create_many": lambda: store.create_many([NewTask("q", "k"), NewTask("q", "k")]),
                "claim": lambda: store.claim("w", "q"),
                "get": lambda: store.get(task.id),
                "list": lambda: store.list(),
                "count": lambda: store.count(),
                "mark_done": lambda: store.mark_done(task, 1),
                "pause_queue": lambda: store.pause_queue("q"),
                "list_queues": lambda: store.list_queues(),
                "reap": lambda: store.reap(),
            }
            for call in calls.values():
                with pytest.raises(taskstore.errors.BackendUnavailable):
                    await call()
            server.start()
            await store.create(NewTask("q", "k"))
            assert len(await store.claim("w", "q")) == 1
    finally:
        server.stop()


# Runs on the server for SECONDS, answering nothing else meanwhile (as a create_many of 200,000 tasks does).
_BUSY_SCRIPT = """
local start = redis.call('TIME')
while true do
    local now = redis.call('TIME')
    if (now[1] - start[1]) * 1000000 + (now[2] - start[2]) >= tonumber(ARGV[1]) * 1000000 then return 1 end
end
"""


@pytest.mark.skipif(not has_redis_server(), reason=NO_REDIS)
async def test_a_call_waits_for_a_server_busy_longer_than_redis_pys_read_timeout(tmp_path: Path) -> None:
    """redis-py 8 gives up on a reply after 5 s: a long script (a big create_many) then failed in the caller while
    the server went on to commit it. The store waits for the reply; only a silent server ends the wait."""
    server = RedisProcess(tmp_path)
    server.start()
    try:
        # Let the others' commands wait for the busy script instead of being answered BUSY after 5 s.
        redis_py.Redis(port=server.port).config_set("busy-reply-threshold", 20_000)
        async with taskstore.open(server.url) as store:
            task = await store.create(NewTask("q", "k"))
            busy_client = redis_py.asyncio.Redis(port=server.port, socket_timeout=None)
            busy = asyncio.ensure_future(busy_client.eval(_BUSY_SCRIPT, 0, 8))
            await asyncio.sleep(0.5)  # the script runs (it has 8 s: even a slow start leaves it past 5 s)
            began = time.monotonic()
            assert (await store.get(task.id)).id == task.id
            assert time.monotonic() - began > 5
            assert await busy == 1
            await busy_client.aclose()
    finally:
        server.stop()


async def test_a_refusal_no_retry_changes_is_a_config_error(redis: str) -> None:
    base = redis.split("?")[0].rsplit("/", 1)[0]
    sep = "&" if "?" in redis else "?"
    refused = [f"{base}/9999", f"{redis}{sep}no_such_option=1"]
    refused += [
        f"{redis}{sep}{name}={value}"
        for name in ("socket_timeout", "socket_connect_timeout")
        for value in (0, -1, "nan")
    ]
    for url in refused:
        with pytest.raises(taskstore.errors.ConfigError):
            async with taskstore.open(url):
                pass


async def test_an_enqueuing_store_subscribes_to_nothing_until_a_claim_waits(redis: str, prefix: str) -> None:
    """As PostgreSQL's LISTEN: a process that only enqueues is not sent every write's message (its own creates and
    the workers' claims and completions), each read and parsed in Python."""
    import redis as redis_py

    def subscribers() -> int:
        client = redis_py.Redis.from_url(redis)
        try:
            return int(dict(client.pubsub_numsub(f"{prefix}events"))[f"{prefix}events".encode()])
        finally:
            client.close()

    other = redis.replace("127.0.0.1", "localhost") if "127.0.0.1" in redis else redis + "?"
    async with (
        taskstore.open(with_prefix(redis, prefix), poll_interval=30) as store,
        taskstore.open(with_prefix(other, prefix)) as creating,
    ):
        for _ in range(3):
            await store.create(NewTask("q", "k"))
        await creating.create(NewTask("q", "k"))
        await asyncio.sleep(0.2)
        assert subscribers() == 0

        claim = asyncio.create_task(store.claim("w", "other", block_for=20))
        deadline = time.monotonic() + 5
        while subscribers() == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert subscribers() == 1, "a blocked claim started no subscription"
        started = time.monotonic()
        await creating.create(NewTask("other", "k"))  # only the subscription can wake it: polling is every 30 s
        claimed = await asyncio.wait_for(claim, 15)
        assert [t.queue for t in claimed] == ["other"]
        assert time.monotonic() - started < 3


async def test_claims_and_completions_reach_only_the_processes_that_watch_statuses(redis: str, prefix: str) -> None:
    """A write that wakes no claimer (a claim, a completion) publishes on ``<prefix>statuses``, which a store hears
    only once a status watch of its process waits: a worker's process is not sent every claim and completion."""
    from taskstore._wakeup import HUB

    def subscribers(channel: str) -> int:
        client = redis_py.Redis.from_url(redis)
        try:
            return int(dict(client.pubsub_numsub(prefix + channel))[(prefix + channel).encode()])
        finally:
            client.close()

    async def until(check: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + 5
        while not check() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return check()

    other = redis.replace("127.0.0.1", "localhost") if "127.0.0.1" in redis else redis + "?"
    async with (
        taskstore.open(with_prefix(redis, prefix), poll_interval=30) as here,
        taskstore.open(with_prefix(other, prefix)) as there,
    ):
        claim = asyncio.create_task(here.claim("w", "q", block_for=20))
        assert await until(lambda: subscribers("events") == 1)
        await asyncio.sleep(0.1)
        assert subscribers("statuses") == 0  # claims wait for work, not for statuses

        status = HUB.subscribe(("status", here._driver.wake_key))  # type: ignore[attr-defined]
        assert await until(lambda: subscribers("statuses") == 1), "a status watch did not subscribe to statuses"
        assert subscribers("events") == 1  # subscribed again, not twice
        await status.wait(1)  # subscribing again wakes everyone to look again
        await there.create(NewTask("q", "k"))
        claimed = await asyncio.wait_for(claim, 5)
        assert len(claimed) == 1  # the claim waiting here heard the create through the new subscription
        await status.wait(1)
        await there.create(NewTask("other", "k"))
        (taken,) = await there.claim("w2", "other")
        await status.wait(0.5)  # the create's and the claim's messages
        await there.mark_done(taken, 1)
        assert await status.wait(3)  # a completion elsewhere, heard on statuses
        HUB.unsubscribe(("status", here._driver.wake_key), status)  # type: ignore[attr-defined]
