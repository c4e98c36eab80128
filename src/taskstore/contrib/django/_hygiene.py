"""Django's database connections around each handler, as Django recycles them around each request.

Django keeps one connection per thread and per alias, and closes a broken or too old one only when a
request starts or ends (``close_old_connections`` on the ``request_started``/``request_finished`` signals).
A worker has no requests: without this, a connection the server dropped stays in its thread, and every
later task run there fails on it (Celery's Django fixup does the same around each task).

- Sync handlers run on the worker's handler threads: ``close_old_connections()`` before and after each
  one, in that thread (``App.thread_context``).
- Async handlers reach the database through ``sync_to_async`` (Django's async ORM included), which in a
  worker runs every thread-sensitive call on one shared thread: the hook runs there, through
  ``sync_to_async(thread_sensitive=True)``, before and after each async handler (an App middleware).

With ``CONN_MAX_AGE = 0`` (Django's default) each handler gets a fresh connection; with persistent
connections set ``CONN_HEALTH_CHECKS = True`` too, so that a connection dropped between two tasks is
found before the next task uses it rather than failing that task's first attempt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from ...client import App
from ...middleware import CallNext, TaskContext


@contextlib.contextmanager
def recycled_connections() -> Iterator[None]:
    """Close this thread's unusable or expired Django connections before and after the block."""
    close_old_connections()
    try:
        yield
    finally:
        close_old_connections()


async def connections_middleware(ctx: TaskContext, call_next: CallNext) -> Any:
    """For async handlers: the same, on the thread where their ``sync_to_async`` database calls run."""
    if not ctx.handler.is_async:  # sync ones are handled in their own thread by recycled_connections
        return await call_next(ctx)
    recycle = sync_to_async(close_old_connections, thread_sensitive=True)
    await recycle()
    try:
        return await call_next(ctx)
    finally:
        await recycle()


def install(app: App) -> App:
    """Recycle Django's connections around every handler ``app``'s workers run (idempotent)."""
    if recycled_connections not in app.thread_contexts:
        app.thread_context(recycled_connections)
    if connections_middleware not in app.middlewares:
        app.middleware(connections_middleware)
    return app
