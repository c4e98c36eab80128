"""App flow-control options reach the store on every backend: one live task per unique key, keys and expiry stored."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskstore import App

pytestmark = pytest.mark.asyncio


async def test_app_options_dedupe_and_are_stored(app: App) -> None:

    @app.task(
        queue="q",
        unique_key=lambda args, kwargs: f"report:{args[0]}",
        concurrency_key=lambda args, kwargs: f"tenant:{kwargs['tenant']}",
    )
    async def report(day: str, *, tenant: str) -> None: ...

    first = await report.options(expires=600).enqueue("2026-12-02", tenant="acme")
    again = await report.enqueue("2026-12-02", tenant="other")
    other = await report.options(unique_key="adhoc").enqueue("2026-12-02", tenant="acme")
    assert again.id == first.id  # the live task comes back; nothing inserted
    assert other.id != first.id
    store = await app.store()
    task = await store.get(first.id)
    assert (task.unique_key, task.concurrency_key) == ("report:2026-12-02", "tenant:acme")
    assert task.expires_at is not None
    # A real clock: expires_at is the App's (Python's) time, created_at PostgreSQL's now(): allow a second either way.
    assert timedelta(seconds=599) < task.expires_at - task.created_at < timedelta(seconds=601)
    assert await store.count() == 2
