"""The App of the ``--metrics-port`` worker process test."""

from __future__ import annotations

from taskstore import App

app = App()


@app.task(queue="metrics", kind="metrics.noop")
async def noop() -> None:
    return None
