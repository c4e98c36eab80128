"""Opening a PostgreSQL store: the URL's libpq options reach every connection, and UTC stays."""

from __future__ import annotations

import asyncio

import taskstore

from ..postgres_server import new_schema, with_schema


def test_options_from_the_url_reach_every_connection(postgres_db: str) -> None:
    options = "options=-c%20application_name%3Dts-options-test%20-c%20TimeZone%3DEurope/Paris"
    url = f"{with_schema(postgres_db, new_schema())}&{options}"

    async def go() -> tuple[str, str]:
        async with taskstore.open(url) as store:
            await store.create(taskstore.NewTask("mail", "send"))
            async with store._driver._conn() as conn:  # type: ignore[attr-defined]
                cur = await conn.execute("SELECT current_setting('application_name'), current_setting('TimeZone')")
                row = await cur.fetchone()
                assert row is not None
                return row[0], row[1]

    application_name, zone = asyncio.run(go())
    assert application_name == "ts-options-test"
    assert zone == "UTC"  # the store reads timestamps in UTC, whatever the URL asks


def test_waiting_for_a_busy_pool_is_not_bounded_by_connect_timeout(postgres_db: str) -> None:
    """A full pool is backpressure: an operation queued behind it waits up to pool_timeout, not connect_timeout."""
    url = f"{with_schema(postgres_db, new_schema())}&pool_min=1&pool_max=1&connect_timeout=1&pool_timeout=20"

    async def go() -> str:
        async with taskstore.open(url) as store:
            async with store._driver._conn():  # type: ignore[attr-defined]  # the pool's one connection, held
                waiting = asyncio.ensure_future(store.create(taskstore.NewTask("q", "k")))
                await asyncio.sleep(2.5)  # past connect_timeout
                assert not waiting.done()
            created = await asyncio.wait_for(waiting, 10)
            return created.state.value

    assert asyncio.run(go()) == "queued"
