"""PostgreSQL's ``tasks_json`` views (migration 9): payloads stored as the codec's bytes, queried as jsonb."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg import sql

import taskstore
from taskstore import NewTask

from ..postgres_server import new_schema, with_schema


class Latin1Codec:
    """Not JSON, and not UTF-8 either: what another codec might store."""

    name = "latin1"

    def encode(self, value: Any) -> bytes:
        return ("\xff" + str(value)).encode("latin-1")

    def decode(self, data: bytes) -> Any:
        return data.decode("latin-1")[1:]


def _query(postgres_db: str, schema: str, text: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        query = sql.SQL(text).format(schema=sql.Identifier(schema))
        return conn.execute(query, params).fetchall()


def test_args_and_results_are_queried_as_json_and_other_codecs_read_as_null(postgres_db: str) -> None:
    schema = new_schema()
    url = with_schema(postgres_db, schema)

    async def fill() -> tuple[str, str]:
        async with taskstore.open(url) as store:
            a = await store.create(NewTask("mail", "send", {"args": ["a@b"], "kwargs": {"n": 2}}))
            await store.create(NewTask("mail", "send", {"args": ["c@d"], "kwargs": {"n": 3}}))
            [claimed] = await store.claim("w", ["mail"], limit=1)
            await store.mark_done(claimed.claim, result={"sent": True})
        async with taskstore.open(url, codec=Latin1Codec()) as other:
            b = await other.create(NewTask("mail", "odd", "anything"))
        return a.id, b.id

    a_id, b_id = asyncio.run(fill())
    rows = _query(
        postgres_db,
        schema,
        "SELECT id, args->'args'->>0, result_value FROM {schema}.tasks_json WHERE args @> %s::jsonb",
        '{"kwargs": {"n": 2}}',
    )
    assert rows == [(a_id, "a@b", {"sent": True})]
    assert _query(postgres_db, schema, "SELECT args FROM {schema}.tasks_json WHERE id = %s", b_id) == [(None,)]

    async def archive() -> int:
        async with taskstore.open(url) as store:
            return await store.archive(older_than=0)

    assert asyncio.run(archive()) == 1
    archived = _query(postgres_db, schema, "SELECT id, args->'kwargs'->'n' FROM {schema}.tasks_archive_json")
    assert archived == [(a_id, 2)]


@pytest.mark.parametrize("view", ["tasks", "tasks_archive"])
def test_the_views_name_every_column_worth_a_query(postgres_db: str, view: str) -> None:
    schema = new_schema()
    asyncio.run(_open(with_schema(postgres_db, schema)))
    names = {
        row[0]
        for row in _query(
            postgres_db,
            schema,
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            schema,
            f"{view}_json",
        )
    }
    assert {"id", "queue", "kind", "state", "args", "result_value", "created_at", "finished_at"} <= names
    assert "token" not in names  # a lease token is a worker's secret


async def _open(url: str) -> None:
    async with taskstore.open(url):
        pass
