"""PostgreSQL: a claim commits without waiting for its WAL to reach the disk; every other write waits.

The claim statement turns ``synchronous_commit`` off for its own transaction (queries.sql, ``_claim_picked``). A
statement trigger of the test's own notes the setting each write of the tasks table would commit with.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

import taskstore
from taskstore import NewTask

from ..postgres_server import new_schema, with_schema

pytestmark = pytest.mark.asyncio


async def _note_commits(url: str, schema: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        s = sql.Identifier(schema)
        await conn.execute(sql.SQL("CREATE TABLE {}.seen (n serial, op text, sync text)").format(s))
        await conn.execute(
            sql.SQL(
                "CREATE FUNCTION {s}.note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "INSERT INTO {s}.seen (op, sync) VALUES (TG_OP, current_setting('synchronous_commit')); "
                "RETURN NULL; END $$"
            ).format(s=s)
        )
        await conn.execute(
            sql.SQL(
                "CREATE TRIGGER note AFTER INSERT OR UPDATE ON {s}.tasks FOR EACH STATEMENT EXECUTE FUNCTION {s}.note()"
            ).format(s=s)
        )


async def _seen(url: str, schema: str) -> list[tuple[str, str]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(sql.SQL("SELECT op, sync FROM {}.seen ORDER BY n").format(sql.Identifier(schema)))
        rows = await cur.fetchall()
        await conn.execute(sql.SQL("TRUNCATE {}.seen").format(sql.Identifier(schema)))
        return [(str(op), str(sync)) for op, sync in rows]


async def test_claims_commit_without_waiting_for_the_disk_and_other_writes_wait(postgres_db: str) -> None:
    schema = new_schema()
    async with taskstore.open(with_schema(postgres_db, schema)) as store:
        await _note_commits(postgres_db, schema)
        await store.create(NewTask("q", "k"))
        await store.create_many([NewTask("q", "k"), NewTask("q", "k", concurrency_key="key")])
        assert await _seen(postgres_db, schema) == [("INSERT", "on"), ("INSERT", "on")]

        (task,) = await store.claim("w", "q")  # the one-statement claim
        assert await _seen(postgres_db, schema) == [("UPDATE", "off")]
        await store.mark_done(task, 1)
        assert await _seen(postgres_db, schema) == [("UPDATE", "on")]

        await store.set_limit("key", concurrency=1)
        claimed = await store.claim("w", "q", limit=5)  # a key with a limit: the claim's own transaction
        assert len(claimed) == 2
        assert ("UPDATE", "off") in await _seen(postgres_db, schema)
        await store.mark_failed(claimed[0], RuntimeError("boom"))
        await store.mark_done(claimed[1], 2)
        assert {sync for _, sync in await _seen(postgres_db, schema)} == {"on"}
