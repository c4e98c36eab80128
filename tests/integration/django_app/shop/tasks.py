"""The project's tasks: a sync one and an async one (Django's async ORM), both touching the database."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import connection
from django.db.models import F

from taskstore.contrib.django import DjangoApp

from .models import Order

app = DjangoApp()


def _backend_pid() -> int | None:
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()
    return int(row[0]) if row else None


@app.task(queue="shop", max_attempts=3)
def process(order_id: int) -> int | None:
    pid = _backend_pid()
    Order.objects.filter(pk=order_id).update(processed=F("processed") + 1, backend_pid=pid)
    return pid


@app.task(queue="shop", max_attempts=3)
async def process_async(order_id: int) -> int | None:
    pid = await sync_to_async(_backend_pid)()  # thread-sensitive, like the async ORM: on the same thread
    await Order.objects.filter(pk=order_id).aupdate(processed=F("processed") + 1, backend_pid=pid)
    return pid
