"""The App of the worker process behind PgBouncer in transaction mode (test_postgres_pooler)."""

from __future__ import annotations

from taskstore import App

app = App()


@app.task(queue="pooler", kind="pooler.noop")
async def noop() -> None:
    return None
